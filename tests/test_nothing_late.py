"""Nothing late, and the record is the truth.

Everything `prune` can check from its inputs and flags is refused before the first layer is
computed (each test here makes pruning itself fail the test if it is reached): an evaluation
text shorter than one window or holding an id outside the vocabulary, an N:M pattern the row
widths cannot take, files that will not fit on disk, a flag that cannot apply. And the results
file records the values the run used: a tokens file's S and L, recorded as derived from it.
"""

from __future__ import annotations

import json
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from dsnot_ref import pipeline
from dsnot_ref.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
TINY = FIXTURES / "tiny-llama"
TEXT = "The quick brown fox jumps over the lazy dog. " * 40


@pytest.fixture
def no_pruning(monkeypatch):
    def reached(*args, **kwargs):
        raise AssertionError("a layer was pruned before the refusal")

    monkeypatch.setattr(pipeline, "prune_model", reached)


def refused(tmp_path, capsys, argv, match) -> str:
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    return lines[0]


def prune_argv(tmp_path, *extra):
    (tmp_path / "calib.txt").write_text(TEXT)
    return ["prune", "--model", TINY, "--prune-method", "wanda", "--sparsity-ratio", "0.5", "--nsamples", "2",
            "--seqlen", "16", "--calibration", tmp_path / "calib.txt", "--quiet",
            "--save-model", tmp_path / "out", "--results", tmp_path / "r.json", "--run-dir", tmp_path / "run", *extra]


def test_short_evaluation_text_is_refused_before_pruning(tmp_path, capsys, no_pruning):
    (tmp_path / "short.txt").write_text("too short")
    argv = prune_argv(tmp_path, "--eval-dataset", tmp_path / "short.txt", "--eval-seqlen", "64")
    line = refused(tmp_path, capsys, argv, "fewer than one window of 64")
    assert "short.txt" in line


def test_evaluation_id_outside_the_vocabulary_is_refused_before_pruning(tmp_path, capsys, no_pruning):
    model = tmp_path / "model"
    shutil.copytree(TINY, model)
    tokenizer = json.loads((model / "tokenizer.json").read_text())
    tokenizer["added_tokens"].append({"id": 300, "content": "<beyond>", "single_word": False, "lstrip": False,
                                      "rstrip": False, "normalized": False, "special": True})
    (model / "tokenizer.json").write_text(json.dumps(tokenizer))
    (tmp_path / "eval.txt").write_text(TEXT + "<beyond>" + TEXT)
    argv = prune_argv(tmp_path, "--eval-dataset", tmp_path / "eval.txt")
    argv[argv.index(TINY)] = model
    refused(tmp_path, capsys, argv, "outside")


def test_nm_width_is_refused_before_pruning(tmp_path, capsys, no_pruning):
    """tiny-llama's rows are 64 and 128 wide: 3:5 groups cannot tile them, for every method."""
    for method in ("magnitude", "wanda", "sparsegpt", "dsnot", "swaps"):
        argv = prune_argv(tmp_path, "--eval-dataset", "none")
        argv[argv.index("wanda")] = method
        i = argv.index("--sparsity-ratio")
        argv[i:i + 2] = ["--sparsity-type", "3:5"]
        refused(tmp_path, capsys, argv, "multiple of 5")


def test_disk_space_of_every_file_is_checked_before_pruning(tmp_path, capsys, no_pruning, monkeypatch):
    usage = namedtuple("usage", "total used free")
    real = shutil.disk_usage
    saved_bytes = (TINY / "model.safetensors").stat().st_size
    # room for the run directory, not for the run directory and the saved model together
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(real(p).total, 0, saved_bytes))
    refused(tmp_path, capsys, prune_argv(tmp_path, "--eval-dataset", "none"), "--save-model: the pruned model")


@pytest.mark.parametrize("extra, match", [
    (["--eval-dataset", "none", "--eval-seqlen", "16"], "--eval-seqlen cannot apply with --eval-dataset none"),
    (["--eval-dataset", "none", "--eval-max-windows", "2"], "cannot apply with --eval-dataset none"),
    (["--eval-dataset", "none", "--max-cycle-time", "5"], "--max-cycle-time only apply to --prune-method dsnot"),
    (["--eval-dataset", "none", "--dsnot-variant", "exact"], "only apply to --prune-method dsnot, not wanda"),
])
def test_flags_that_cannot_apply_are_refused(tmp_path, capsys, no_pruning, extra, match):
    refused(tmp_path, capsys, prune_argv(tmp_path, *extra), match)


def test_exact_variant_flags_need_the_exact_variant(tmp_path, capsys, no_pruning):
    argv = prune_argv(tmp_path, "--eval-dataset", "none", "--lookahead", "4")
    argv[argv.index("wanda")] = "dsnot"
    refused(tmp_path, capsys, argv, "--lookahead only apply to --dsnot-variant exact")


def test_overwrite_without_save_model_is_refused(tmp_path, capsys, no_pruning):
    argv = prune_argv(tmp_path, "--eval-dataset", "none", "--overwrite")
    i = argv.index("--save-model")
    del argv[i:i + 2]
    refused(tmp_path, capsys, argv, "--overwrite only applies with --save-model")


def write_tokens(tmp_path: Path, shape=(3, 12)) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "tokens.npy"
    np.save(path, rng.integers(0, 256, size=shape, dtype=np.int64))
    return path


@pytest.mark.parametrize("flag, value, match", [("--nsamples", "2", "--nsamples 2 does not match"),
                                                ("--seqlen", "16", "--seqlen 16 does not match"),
                                                ("--seed", "1", "--seed cannot apply")])
def test_tokens_file_flags_must_agree(tmp_path, capsys, no_pruning, flag, value, match):
    tokens = write_tokens(tmp_path)
    argv = ["prune", "--model", TINY, "--prune-method", "wanda", "--sparsity-ratio", "0.5",
            "--calibration-tokens", tokens, "--eval-dataset", "none", "--quiet", flag, value,
            "--results", tmp_path / "r.json", "--run-dir", tmp_path / "run"]
    refused(tmp_path, capsys, argv, match)


def test_tokens_file_settings_are_recorded_as_derived(tmp_path, capsys):
    tokens = write_tokens(tmp_path)
    (tmp_path / "eval.txt").write_text(TEXT)
    rc = main([str(a) for a in ["prune", "--model", TINY, "--prune-method", "wanda", "--sparsity-ratio", "0.5",
                                "--calibration-tokens", tokens, "--eval-dataset", tmp_path / "eval.txt",
                                "--eval-max-windows", "2", "--quiet", "--results", tmp_path / "r.json",
                                "--run-dir", tmp_path / "run"]])
    assert rc == 0, capsys.readouterr().err
    results = json.loads((tmp_path / "r.json").read_text())
    settings = results["settings"]
    assert (settings["nsamples"], settings["seqlen"], settings["seed"]) == (3, 12, None)
    assert settings["derived_from_calibration_tokens"] == ["nsamples", "seqlen"]
    assert settings["eval_seqlen"] == 12  # the evaluation window defaults to the calibration L
    assert results["perplexity"]["pruned"]["seqlen"] == 12
    assert (results["calibration"]["n_samples"], results["calibration"]["seqlen"]) == (3, 12)


def test_dense_run_records_no_calibration(tmp_path, capsys):
    (tmp_path / "eval.txt").write_text(TEXT)
    rc = main([str(a) for a in ["prune", "--model", TINY, "--prune-method", "dense", "--eval-dataset",
                                tmp_path / "eval.txt", "--eval-seqlen", "16", "--eval-max-windows", "2", "--quiet",
                                "--results", tmp_path / "r.json"]])
    assert rc == 0, capsys.readouterr().err
    settings = json.loads((tmp_path / "r.json").read_text())["settings"]
    assert (settings["nsamples"], settings["seqlen"], settings["seed"], settings["eval_seqlen"]) == (None, None, None, 16)


def test_evaluation_temporary_file_is_counted_before_pruning(tmp_path, capsys, no_pruning, monkeypatch):
    """Hidden states too large for memory go to a temporary file: its size joins the disk check."""
    from dsnot_ref import evaluate
    from dsnot_ref.cli import prune as prune_cli
    from dsnot_ref.errors import UserError

    monkeypatch.setattr(evaluate, "MEMMAP_BYTES", 0)
    seen = []

    def record(needs):
        seen.append(needs)
        if any("hidden states" in what for _, _, what in needs):
            raise UserError("disk check reached with the evaluation's temporary file")

    monkeypatch.setattr(prune_cli, "check_disk", record)
    (tmp_path / "eval.txt").write_text(TEXT)
    argv = prune_argv(tmp_path, "--eval-dataset", tmp_path / "eval.txt", "--eval-max-windows", "3")
    refused(tmp_path, capsys, argv, "temporary file")
    (_, nbytes, what), = [n for n in seen[-1] if "hidden states" in n[2]]
    assert nbytes == 3 * 16 * 64 * 4 and "3 windows" in what  # W x L x D float32 (tiny-llama: D = 64)


def test_eval_refuses_a_temporary_file_that_cannot_fit(tmp_path, capsys, monkeypatch):
    from dsnot_ref import evaluate, model as model_lib

    def reached(*args, **kwargs):
        raise AssertionError("a layer was computed before the refusal")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(evaluate, "MEMMAP_BYTES", 0)
    monkeypatch.setattr(model_lib, "block_forward", reached)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 0, 1000))
    (tmp_path / "eval.txt").write_text(TEXT)
    line = refused(tmp_path, capsys, ["eval", "--model", TINY, "--dataset", tmp_path / "eval.txt", "--seqlen", "16",
                                      "--max-windows", "4", "--quiet"], "hidden states of 4 windows")
    assert "1000 B free" in line


@pytest.mark.parametrize("flag", [["--run-dir", "RUN"], ["--keep-cache"]])
def test_dense_refuses_run_directory_flags(tmp_path, capsys, flag):
    argv = ["prune", "--model", TINY, "--prune-method", "dense", "--eval-dataset", "none", "--quiet",
            *[str(tmp_path / "run") if a == "RUN" else a for a in flag]]
    refused(tmp_path, capsys, argv, f"{flag[0]} cannot apply to --prune-method dense")


def test_diagnostic_sample_is_recorded_as_used(tmp_path, capsys):
    """2 x 16 = 32 calibration tokens: a sample of 2048 (the default) is every token, recorded so."""
    rc = main([str(a) for a in prune_argv(tmp_path, "--eval-dataset", "none", "--recon-error")])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["recon_error_tokens"] is None
    rc = main([str(a) for a in prune_argv(tmp_path, "--eval-dataset", "none", "--recon-error",
                                          "--recon-error-tokens", "8", "--overwrite")])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["recon_error_tokens"] == 8


def test_recon_error_tokens_without_the_diagnostic_is_refused(tmp_path, capsys, no_pruning):
    argv = prune_argv(tmp_path, "--eval-dataset", "none", "--recon-error-tokens", "8")
    refused(tmp_path, capsys, argv, "--recon-error-tokens applies only with --recon-error")
