"""Every bad input of `dsnot-ref prune` (and of report / compare-masks): exit status 2, one line
on stderr, no traceback, and nothing written (no output directory, results file or run dir)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from dsnot_ref.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
TINY = FIXTURES / "tiny-llama"


def run_cli(argv, capsys):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's own errors (e.g. a float flag given "abc")
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_refused(argv, capsys, tmp_path, match: str):
    outputs = ["--save-model", tmp_path / "out", "--results", tmp_path / "r.json", "--run-dir", tmp_path / "run"]
    before = sorted(p.name for p in tmp_path.iterdir())
    rc, out, err = run_cli(["prune", *argv, *outputs, "--quiet"], capsys)
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert match in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    return lines[0]


BASE = ["--model", TINY, "--nsamples", "2", "--seqlen", "16", "--eval-dataset", "none"]


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--prune-method", "obs", "--sparsity-ratio", "0.5"], "unknown --prune-method 'obs'"),
        (["--prune-method", "wanda", "--sparsity-ratio", "1.0"], "must be in [0, 1)"),
        (["--prune-method", "wanda", "--sparsity-ratio", "-0.1"], "must be in [0, 1)"),
        (["--prune-method", "wanda"], "--sparsity-ratio is required"),
        (["--prune-method", "wanda", "--sparsity-type", "2:4", "--sparsity-ratio", "0.6"], "does not match"),
        (["--prune-method", "wanda", "--sparsity-type", "4:2"], "need 1 <= N < M"),
        (["--prune-method", "wanda", "--sparsity-type", "4:4"], "need 1 <= N < M"),
        (["--prune-method", "wanda", "--sparsity-type", "2-4"], "unknown --sparsity-type"),
        (["--prune-method", "wanda", "--sparsity-ratio", "0.5", "--initial-method", "magnitude"], "only applies to --prune-method dsnot"),
        (["--prune-method", "dsnot", "--initial-method", "random", "--sparsity-ratio", "0.5"], "unknown --initial-method"),
        (["--sparsity-ratio", "0.5", "--dsnot-variant", "fast"], "unknown --dsnot-variant"),
        (["--sparsity-ratio", "0.5", "--without-same-sign", "maybe"], "takes true or false"),
        (["--sparsity-ratio", "0.5", "--skip-layer", "attn"], "unknown --skip-layer"),
        (["--sparsity-ratio", "0.5", "--skip-sub-layer", "w_proj"], "unknown --skip-sub-layer"),
        (["--sparsity-ratio", "0.5", "--dtype", "float16"], "unknown --dtype"),
        (["--sparsity-ratio", "0.5", "--dsnot-variant", "exact", "--lookahead", "0"], "--lookahead must be >= 1"),
        (["--sparsity-ratio", "0.5", "--dsnot-variant", "exact", "--cycle-fraction", "2"], "--cycle-fraction must be in [0, 1]"),
        (["--sparsity-ratio", "0.5", "--dsnot-variant", "exact", "--on-reject", "retry"], "unknown --on-reject"),
        (["--sparsity-ratio", "0.5", "--nsamples", "0"], "--nsamples must be >= 1"),
        (["--sparsity-ratio", "0.5", "--recon-error", "--recon-error-tokens", "0"], "--recon-error-tokens must be >= 1"),
        (["--sparsity-ratio", "0.5", "--recon-error", "--recon-error-tokens", "most"], "positive integer or 'all'"),
        (["--sparsity-ratio", "0.5", "--seqlen", "512"], "exceeds the model's 256 positions"),
        (["--sparsity_ratio", "abc"], "invalid float value"),
    ],
)
def test_bad_flags(tmp_path, capsys, extra, match):
    argv = list(BASE)
    if "--seqlen" in extra:
        i = argv.index("--seqlen")
        del argv[i : i + 2]
    assert_refused(argv + extra, capsys, tmp_path, match)


def test_missing_model(tmp_path, capsys):
    assert_refused(["--model", tmp_path / "nope", "--sparsity-ratio", "0.5"], capsys, tmp_path, "does not exist")


def test_missing_calibration_and_eval_files(tmp_path, capsys):
    assert_refused([*BASE, "--sparsity-ratio", "0.5", "--calibration", tmp_path / "c.txt"], capsys, tmp_path, "--calibration file")
    argv = [a for a in BASE if a not in ("--eval-dataset", "none")]
    assert_refused([*argv, "--sparsity-ratio", "0.5", "--eval-dataset", tmp_path / "e.txt"], capsys, tmp_path, "--eval-dataset file")


def test_calibration_too_short(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("a few words")
    try:
        assert_refused([*BASE, "--sparsity-ratio", "0.5", "--calibration", short], capsys, tmp_path, "too short")
    finally:
        short.unlink()


def test_both_calibration_sources(tmp_path, capsys):
    tokens = tmp_path / "t.npy"
    np.save(tokens, np.zeros((2, 16), dtype=np.int64))
    text = tmp_path / "c.txt"
    text.write_text("hello " * 100)
    try:
        assert_refused(
            [*BASE, "--sparsity-ratio", "0.5", "--calibration", text, "--calibration-tokens", tokens], capsys, tmp_path, "not both"
        )
    finally:
        tokens.unlink()
        text.unlink()


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros(16, dtype=np.int64), "must have shape [S, L]"),
        (np.zeros((2, 16), dtype=np.float32), "must be integers"),
        (np.full((2, 16), 256, dtype=np.int64), "outside the vocabulary"),
        (np.zeros((2, 300), dtype=np.int64), "more than the model's 256 positions"),
    ],
)
def test_bad_calibration_tokens(tmp_path, capsys, array, match):
    tokens = tmp_path / "t.npy"
    np.save(tokens, array)
    try:
        # no --nsamples or --seqlen: a tokens file brings its own S and L
        assert_refused(["--model", TINY, "--eval-dataset", "none", "--sparsity-ratio", "0.5",
                        "--calibration-tokens", tokens], capsys, tmp_path, match)
    finally:
        tokens.unlink()


def test_output_equal_to_or_inside_input(tmp_path, capsys):
    for out in (TINY, TINY / "pruned"):
        rc, _, err = run_cli(["prune", *BASE, "--sparsity-ratio", "0.5", "--save-model", out, "--quiet"], capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "input model directory" in err
    assert not (TINY / "pruned").exists()


def test_existing_output_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    rc, _, err = run_cli(["prune", *BASE, "--sparsity-ratio", "0.5", "--save-model", out, "--quiet"], capsys)
    assert rc == 2 and "not empty (use --overwrite)" in err
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_results_parent_not_a_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, _, err = run_cli(["prune", *BASE, "--sparsity-ratio", "0.5", "--results", blocker / "r.json", "--quiet"], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "no write permission" in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_results_parent_not_writable(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc, _, err = run_cli(["prune", *BASE, "--sparsity-ratio", "0.5", "--save-model", locked / "out", "--quiet"], capsys)
        assert rc == 2 and "no write permission" in err
    finally:
        locked.chmod(0o700)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_cupy_without_cupy(tmp_path, capsys):
    line = assert_refused([*BASE, "--sparsity-ratio", "0.5", "--backend", "cupy"], capsys, tmp_path, "backend 'cupy'")
    assert "CuPy" in line


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_backend_default_follows_the_environment(tmp_path, capsys, monkeypatch):
    """Without --backend, prune and demo take $DSNOT_REF_BACKEND (here cupy, so refused)."""
    monkeypatch.setenv("DSNOT_REF_BACKEND", "cupy")
    line = assert_refused([*BASE, "--sparsity-ratio", "0.5"], capsys, tmp_path, "backend 'cupy'")
    assert "CuPy" in line
    rc, _, err = run_cli(["demo", "--model", TINY, "--quiet"], capsys)
    assert rc == 2 and "backend 'cupy'" in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("DSNOT_REF_BACKEND", "numpy")  # an explicit flag still wins over it
    assert_refused([*BASE, "--sparsity-ratio", "0.5", "--backend", "cupy"], capsys, tmp_path, "backend 'cupy'")


def test_report_errors(tmp_path, capsys):
    rc, _, err = run_cli(["report", tmp_path / "missing.json"], capsys)
    assert rc == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    rc, _, err = run_cli(["report", bad], capsys)
    assert rc == 2 and "cannot read results file" in err


def test_compare_masks_missing_dir(tmp_path, capsys):
    rc, _, err = run_cli(["compare-masks", TINY, tmp_path / "nope"], capsys)
    assert rc == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_foreign_run_dir(tmp_path, capsys):
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("not a run")
    rc, _, err = run_cli(["prune", *BASE, "--sparsity-ratio", "0.5", "--run-dir", run_dir, "--quiet"], capsys)
    assert rc == 2 and "has no" in err and len(err.strip().splitlines()) == 1
    assert [p.name for p in run_dir.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("home", [None, ""])
def test_no_home_directory(tmp_path, capsys, monkeypatch, home):
    """A container with no passwd entry and HOME unset (or empty): one line, not a traceback."""
    import pwd

    for name in ("HOME", "DSNOT_REF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    if home is not None:
        monkeypatch.setenv("HOME", home)

    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    monkeypatch.chdir(tmp_path)
    for argv in (["prune", *BASE, "--sparsity-ratio", "0.5", "--prune-method", "wanda", "--quiet"],  # default run dir
                 ["fetch-model"]):
        rc, out, err = run_cli(argv, capsys)
        assert rc == 2, (out, err)
        assert err.count("\n") == 1 and "HOME is not set" in err and "DSNOT_REF_HOME" in err, err
    assert list(tmp_path.iterdir()) == []
