"""`dsnot-ref prune` end to end on the tiny fixtures, in process (dsnot_ref.cli.main) and once
through the real entry point (python -m dsnot_ref).

Independent evidence used: the saved checkpoint read back with WeightStore (zeros per row and per
N:M group, counted here), a magnitude mask recomputed here with np.argsort, the perplexity of the
saved-and-reloaded model, and the released code's rule that DSnoT leaves the MLP masks alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dsnot_ref import data, evaluate, save
from dsnot_ref.cli import main
from dsnot_ref.model import load_model
from dsnot_ref.weights import WeightStore

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "data" / "fixtures"
S, L = 4, 32


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Calibration token ids [S, L] and a short evaluation text (fast to tokenise)."""
    d = tmp_path_factory.mktemp("inputs")
    tokens = np.random.default_rng(0).integers(3, 256, size=(S, L), dtype=np.int64)
    np.save(d / "calib.npy", tokens)
    text = data.read_texts(data.BUNDLED_EVAL)
    (d / "eval.txt").write_text("\n\n".join(text)[:4000], encoding="utf-8")
    return d


def prune(tmp_path, capsys, model="tiny-llama", *extra, inputs):
    out, results = tmp_path / "out", tmp_path / "r.json"
    dense = "dense" in extra  # reads no calibration, so a calibration flag cannot apply
    argv = [
        "prune", "--model", FIXTURES / model, *([] if dense else ["--calibration-tokens", inputs / "calib.npy"]),
        "--eval-dataset", inputs / "eval.txt", "--eval-seqlen", "32", "--eval-max-windows", "3",
        "--save-model", out, "--results", results, "--quiet", *extra,
    ]
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return out, json.loads(results.read_text()), captured.out


def linear_weights(store: WeightStore) -> list[str]:
    return [n for n in store.names() if ".layers." in n and n.endswith(".weight") and len(store.shape(n)) == 2]


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-opt"])
@pytest.mark.parametrize("method", ["magnitude", "wanda", "sparsegpt", "dsnot"])
def test_unstructured_each_method(tmp_path, capsys, inputs, model, method):
    out, results, stdout = prune(tmp_path, capsys, model, "--prune-method", method, "--sparsity_ratio", "0.5",
                                  "--recon-error", inputs=inputs)
    saved = WeightStore(out)
    names = linear_weights(saved)
    assert sorted(save.read_saved_masks(out)) == sorted(names)
    masks = save.read_saved_masks(out)
    for name in names:
        w = saved.get(name)  # [R, C]
        np.testing.assert_array_equal(masks[name], w == 0, err_msg=name)
        if method == "sparsegpt":  # masks chosen per block of 128 columns over all rows at once
            assert (w == 0).sum() == int(w.size * 0.5), name
        else:
            assert np.all((w == 0).sum(axis=1) == int(w.shape[1] * 0.5)), name  # floor(C·p) per row
        assert results["sparsity"]["per_layer"][name] == pytest.approx((w == 0).mean())

    # Results file: the fields the README promises.
    assert results["settings"]["prune_method"] == method and results["settings"]["sparsity_ratio"] == 0.5
    assert set(results["versions"]) == {"dsnot_ref", "numpy", "python"}
    assert results["calibration"]["tokens_sha256"] == data.tokens_hash(np.load(inputs / "calib.npy"))
    assert len(results["layers"]) == len(names)
    expected_keys = {"name", "sparsity", "dsnot", "swaps", "recon_before", "recon_after"}
    if method != "sparsegpt":  # SparseGPT's diagnostics have no mean |eps|
        expected_keys |= {"eps_before", "eps_after"}
    assert expected_keys <= set(results["layers"][0])
    assert any(r["dsnot"] for r in results["layers"]) == (method == "dsnot")
    assert {"load", "prune", "eval", "save", "total"} <= set(results["times"])

    # Perplexity of the saved model, reloaded from disk, matches the reported one.
    tokens = data.eval_tokens(data.load_tokenizer(out), inputs / "eval.txt")
    again = evaluate.perplexity(load_model(out), tokens, 32, max_windows=3)
    assert results["perplexity"]["pruned"]["perplexity"] == pytest.approx(again["perplexity"], rel=1e-5)
    assert f"perplexity (pruned): {again['perplexity']:.4f}" in stdout
    assert "sparsity check: 0.5000" in stdout


@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
@pytest.mark.parametrize("method", ["wanda", "dsnot"])
def test_nm_patterns(tmp_path, capsys, inputs, pattern, method):
    n, m = map(int, pattern.split(":"))
    out, results, _ = prune(tmp_path, capsys, "tiny-llama", "--prune-method", method, "--sparsity-type", pattern, inputs=inputs)
    assert results["settings"]["sparsity_ratio"] == n / m  # derived from the pattern
    saved = WeightStore(out)
    for name in linear_weights(saved):
        w = saved.get(name)
        groups = (w == 0).reshape(w.shape[0], w.shape[1] // m, m).sum(axis=-1)  # [R, C/M]
        assert np.all(groups == n), name


def test_magnitude_mask_matches_argsort(tmp_path, capsys, inputs):
    """Magnitude pruning needs no calibration: recompute its mask here and compare."""
    out, _, _ = prune(tmp_path, capsys, "tiny-llama", "--prune-method", "magnitude", "--sparsity-ratio", "0.6", inputs=inputs)
    original, masks = WeightStore(FIXTURES / "tiny-llama"), save.read_saved_masks(out)
    for name, pruned in masks.items():
        w = original.get(name)
        k = int(w.shape[1] * 0.6)
        expected = np.zeros(w.shape, dtype=bool)
        np.put_along_axis(expected, np.argsort(np.abs(w), axis=1, kind="stable")[:, :k], True, axis=1)
        np.testing.assert_array_equal(pruned, expected, err_msg=name)
        kept = ~pruned
        np.testing.assert_array_equal(WeightStore(out).get(name)[kept], w[kept])  # kept values untouched


def test_dsnot_changes_attention_only(tmp_path, capsys, inputs):
    """With the default --skip-layer mlp, DSnoT keeps Wanda's MLP masks and changes attention's;
    with --skip-layer none it changes MLP masks too. Layer 0 sees the same inputs in both runs."""
    common = ("--sparsity-ratio", "0.6")
    wanda, _, _ = prune(tmp_path / "w", capsys, "tiny-llama", "--prune-method", "wanda", *common, inputs=inputs)
    dsnot, res, _ = prune(tmp_path / "d", capsys, "tiny-llama", "--prune-method", "dsnot", *common, inputs=inputs)
    every, _, _ = prune(tmp_path / "n", capsys, "tiny-llama", "--prune-method", "dsnot", "--skip_layer", "none", *common, inputs=inputs)
    mw, md, mn = save.read_saved_masks(wanda), save.read_saved_masks(dsnot), save.read_saved_masks(every)
    prefix = "model.layers.0."
    for sub in ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
        np.testing.assert_array_equal(md[prefix + sub + ".weight"], mw[prefix + sub + ".weight"])
    assert any((md[prefix + s + ".weight"] != mw[prefix + s + ".weight"]).any() for s in ("self_attn.q_proj", "self_attn.o_proj"))
    assert any((mn[prefix + s + ".weight"] != mw[prefix + s + ".weight"]).any() for s in ("mlp.gate_proj", "mlp.down_proj"))
    rows = {r["name"]: r for r in res["layers"]}
    assert rows["0.mlp.up_proj"]["dsnot"] is False and rows["0.self_attn.q_proj"]["dsnot"] is True


def test_official_variant_and_boolean_flag(tmp_path, capsys, inputs):
    _, results, _ = prune(
        tmp_path, capsys, "tiny-opt", "--prune-method", "DSnoT", "--sparsity-ratio", "0.5",
        "--dsnot-variant", "official", "--without_same_sign", "false", "--max-cycle-time", "5", inputs=inputs,
    )
    assert results["settings"]["without_same_sign"] is False
    assert results["settings"]["dsnot_variant"] == "official" and results["settings"]["prune_method"] == "dsnot"


def test_exact_variant_options_reach_the_method(tmp_path, capsys, inputs):
    """--lookahead / --on-reject are recorded and change the exact variant's masks; every
    attention sublayer's calibration error is at most Wanda's (the exact variant's guarantee)."""
    common = ("--prune-method", "dsnot", "--dsnot-variant", "exact", "--sparsity-ratio", "0.6", "--recon-error")
    plain, res1, _ = prune(tmp_path / "a", capsys, "tiny-llama", *common, inputs=inputs)
    wide, res2, _ = prune(tmp_path / "b", capsys, "tiny-llama", *common, "--lookahead", "4",
                          "--on-reject", "skip", inputs=inputs)
    assert (res2["settings"]["lookahead"], res2["settings"]["on_reject"]) == (4, "skip")
    for res in (res1, res2):
        for row in res["layers"]:
            if row["dsnot"]:
                assert row["recon_after"] <= row["recon_before"] * (1 + 1e-12), row
    m1, m2 = save.read_saved_masks(plain), save.read_saved_masks(wide)
    assert any((m1[k] != m2[k]).any() for k in m1)


def test_dense_keeps_weights(tmp_path, capsys, inputs, monkeypatch):
    monkeypatch.setenv("DSNOT_REF_BACKEND", "NumPy")  # the default backend comes from here
    out, results, stdout = prune(tmp_path, capsys, "tiny-llama", "--prune-method", "dense", inputs=inputs)
    original, saved = WeightStore(FIXTURES / "tiny-llama"), WeightStore(out)
    for name in original.names():
        np.testing.assert_array_equal(saved.get(name), original.get(name))
    assert "dense" in results["perplexity"] and results["layers"] == []
    assert results["settings"]["backend"] == "numpy"
    tokens = data.eval_tokens(data.load_tokenizer(FIXTURES / "tiny-llama"), inputs / "eval.txt")
    dense = evaluate.perplexity(load_model(FIXTURES / "tiny-llama"), tokens, 32, max_windows=3)
    assert results["perplexity"]["dense"]["perplexity"] == pytest.approx(dense["perplexity"], rel=1e-6)


def test_bundled_calibration_default(tmp_path, capsys, inputs):
    """Without --calibration the bundled corpus is sampled (paper protocol, seed 0)."""
    argv = ["prune", "--model", FIXTURES / "tiny-llama", "--prune-method", "wanda", "--sparsity-ratio", "0.5",
            "--nsamples", "2", "--seqlen", "16", "--eval-dataset", "none", "--results", tmp_path / "r.json", "--quiet"]
    assert main([str(a) for a in argv]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    expected = data.calibration_windows(data.load_tokenizer(FIXTURES / "tiny-llama"), data.BUNDLED_CALIBRATION, 2, 16, 0)
    assert results["calibration"]["tokens_sha256"] == data.tokens_hash(expected)
    assert results["perplexity"] == {} and not (tmp_path / "out").exists()


def test_entry_point_subprocess(tmp_path, inputs):
    proc = subprocess.run(
        [sys.executable, "-m", "dsnot_ref", "prune", "--model", str(FIXTURES / "tiny-llama"), "--prune-method", "dsnot",
         "--sparsity-ratio", "0.5", "--calibration-tokens", str(inputs / "calib.npy"), "--eval-dataset",
         str(inputs / "eval.txt"), "--eval-seqlen", "32", "--results", str(tmp_path / "r.json")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "layer 1: mean |eps|" in proc.stderr  # per-layer lines with progress, on stderr
    assert "perplexity (pruned)" in proc.stdout and "sparsity check" in proc.stdout
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["dsnot_variant"] == "reference"


# --- demo ---------------------------------------------------------------------------------------


def run_demo(tmp_path, capsys, *argv):
    results = tmp_path / "demo.json"
    rc = main(["demo", *map(str, argv), "--results", str(results), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    return out, json.loads(results.read_text())


def test_demo_on_tiny_model(tmp_path, capsys):
    out, results = run_demo(tmp_path, capsys, "--model", FIXTURES / "tiny-llama", "--nsamples", "2", "--seqlen", "32",
                            "--eval-max-windows", "2")
    assert "calibration S=2 sequences of L=32 tokens" in out and "the first 2 windows of 32 tokens" in out
    rows = {r["model"]: r for r in results["demo"]}
    pruned = ["wanda", "wanda + DSnoT", "wanda + SparseSwaps", "wanda + SparseSwaps + update"]
    assert list(rows) == ["dense", *pruned]
    assert rows["dense"]["sparsity"] == 0.0
    assert results["total_seconds"] >= sum(r["prune_seconds"] + r["eval_seconds"] for r in rows.values())
    for label in pruned:
        assert rows[label]["sparsity"] == pytest.approx(0.59375), label
    runs = results["runs"]
    # One calibration set for every prune; the dense row is the unpruned model's perplexity.
    for label in pruned[1:]:
        assert runs["wanda"]["calibration"]["tokens_sha256"] == runs[label]["calibration"]["tokens_sha256"]
    for label in ("wanda + SparseSwaps", "wanda + SparseSwaps + update"):
        assert runs[label]["settings"]["skip_layer"] in (None, "none", "no_skip")  # every sublayer
        assert runs[label]["settings"]["prune_method"] == "swaps"
    assert runs["wanda + SparseSwaps"]["settings"]["weight_update"] == "none"
    assert runs["wanda + SparseSwaps + update"]["settings"]["weight_update"] == "exact"
    tokens = data.eval_tokens(data.load_tokenizer(FIXTURES / "tiny-llama"), data.BUNDLED_EVAL)
    dense = evaluate.perplexity(load_model(FIXTURES / "tiny-llama"), tokens, 32, max_windows=2)
    assert rows["dense"]["perplexity"] == pytest.approx(dense["perplexity"], rel=1e-6)
    for label, row in rows.items():
        assert f"{row['perplexity']:.3f}" in out, label


@pytest.mark.slow
def test_demo_on_smollm2(tmp_path, capsys):
    """The real demo model, small settings: pruning 60% costs perplexity, both prunes measured."""
    out, results = run_demo(tmp_path, capsys, "--nsamples", "4", "--seqlen", "128", "--eval-max-windows", "4")
    rows = {r["model"]: r for r in results["demo"]}
    assert 5 < rows["dense"]["perplexity"] < rows["wanda"]["perplexity"]
    assert rows["dense"]["perplexity"] < rows["wanda + DSnoT"]["perplexity"]
    assert 0.59 < rows["wanda + DSnoT"]["sparsity"] <= 0.6
    assert rows["wanda + SparseSwaps"]["perplexity"] > rows["dense"]["perplexity"]


def test_run_dir_kept_and_reused(tmp_path, capsys, inputs):
    """--run-dir with --keep-cache keeps the run; the same command again reuses it (all layers
    done) and saves identical masks; without --keep-cache the run directory is removed."""
    run_dir = tmp_path / "run"
    args = ("--prune-method", "dsnot", "--sparsity-ratio", "0.5", "--run-dir", run_dir)
    first, _, _ = prune(tmp_path / "a", capsys, "tiny-llama", *args, "--keep-cache", inputs=inputs)
    assert (run_dir / "manifest.json").exists() or any(run_dir.iterdir())
    second, results, _ = prune(tmp_path / "b", capsys, "tiny-llama", *args, inputs=inputs)
    assert results["pipeline_times"]["forward"] == 0.0  # nothing recomputed: every layer was done
    assert not run_dir.exists()
    ma, mb = save.read_saved_masks(first), save.read_saved_masks(second)
    assert ma.keys() == mb.keys()
    for name in ma:
        np.testing.assert_array_equal(ma[name], mb[name])


def test_default_run_dir_is_found_again_and_reported(tmp_path, capsys, inputs, monkeypatch):
    """Without --run-dir the run lives under $DSNOT_REF_HOME/runs/<key of model, tokens, settings>:
    the same command finds it again (reported with its size) and ends with the same masks; a
    finished run without --keep-cache leaves nothing there."""
    monkeypatch.setenv("DSNOT_REF_HOME", str(tmp_path / "home"))
    args = ("--prune-method", "dsnot", "--sparsity-ratio", "0.5")
    first, _, _ = prune(tmp_path / "a", capsys, "tiny-llama", *args, "--keep-cache", inputs=inputs)
    runs = list((tmp_path / "home" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "manifest.json").is_file()

    out, results = tmp_path / "b" / "out", tmp_path / "b" / "r.json"
    argv = ["prune", "--model", FIXTURES / "tiny-llama", "--calibration-tokens", inputs / "calib.npy",
            "--eval-dataset", "none", "--save-model", out, "--results", results, *args]
    assert main([str(a) for a in argv]) == 0
    err = capsys.readouterr().err
    assert f"found a run directory left by an earlier run: {runs[0]}" in err and "2 of 2 layers done" in err
    m1, m2 = save.read_saved_masks(first), save.read_saved_masks(out)
    assert m1.keys() == m2.keys() and all(np.array_equal(m1[k], m2[k]) for k in m1)
    assert not runs[0].exists()   # the resumed run finished without --keep-cache: cleaned up


def test_recon_error_token_sample_changes_only_the_diagnostic(tmp_path, capsys, inputs):
    """--recon-error-tokens: the diagnostics' Hessian from a token sample; the masks (which never
    read that Hessian) are the same as with every token, the reported errors are estimates."""
    runs = {}
    for count in ("all", str(S * L // 4)):
        (tmp_path / count).mkdir()
        out, results, _ = prune(tmp_path / count, capsys, "tiny-llama", "--prune-method", "dsnot",
                                "--sparsity-ratio", "0.5", "--recon-error", "--recon-error-tokens", count,
                                inputs=inputs)
        runs[count] = (save.read_saved_masks(out), results)
    (all_masks, everything), (sampled_masks, sampled) = runs.values()
    assert everything["settings"]["recon_error_tokens"] is None
    assert sampled["settings"]["recon_error_tokens"] == S * L // 4
    for name, mask in all_masks.items():
        np.testing.assert_array_equal(sampled_masks[name], mask, err_msg=name)
    exact = np.array([r["recon_after"] for r in everything["layers"]])
    estimate = np.array([r["recon_after"] for r in sampled["layers"]])
    assert not np.array_equal(exact, estimate)
    assert np.all(estimate > 0) and np.all(np.abs(np.log(estimate / exact)) < 1.0)  # an estimate, same order
