"""`dsnot-ref prune --sparsity-profile owl` end to end on the tiny fixtures and a 4-layer LLaMA.

Independent evidence: the outlier ratios recomputed here from one in-memory dense forward of the
whole calibration batch (no cache, no chunking) and ``np.argsort``-free counting; the zeros of
every row of the saved checkpoint counted here against int(C · p_layer); the per-layer
sparsities recomputed from the ratios with the released code's lines (tests/test_owl.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_owl import released_reference
from test_resume import make_deep_llama

from dsnot_ref import model as model_lib
from dsnot_ref.cli import main
from dsnot_ref.layer_profile import PROFILE_NAME
from dsnot_ref.methods import PruneSpec
from dsnot_ref.methods.owl import OwlSettings
from dsnot_ref.pipeline import PipelineSettings, prune_model
from dsnot_ref.weights import WeightStore

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "data" / "fixtures"
S, L = 4, 32


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    path = tmp_path_factory.mktemp("owl") / "calib.npy"
    np.save(path, np.random.default_rng(0).integers(3, 256, size=(S, L), dtype=np.int64))
    return path


def run_prune(tmp_path, capsys, model, calib, *extra):
    out, results = tmp_path / "out", tmp_path / "r.json"
    argv = ["prune", "--model", FIXTURES / model, "--calibration-tokens", calib, "--eval-dataset", "none",
            "--save-model", out, "--results", results, "--quiet", *extra]
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return out, json.loads(results.read_text()), captured.out


def dense_outlier_ratios(model_dir: Path, tokens: np.ndarray, m: float) -> list[float]:
    """D_ℓ from one in-memory float64 forward of all S sequences through the dense model."""
    model = model_lib.load_model(model_dir)
    config = model.config
    x = model_lib.embed(model, tokens, dtype=np.float64)  # [S, L, D]
    ratios = []
    for i in range(config.num_layers):
        layer = model_lib.load_layer(model, i, dtype=np.float64)
        inputs = {}
        x = model_lib.block_forward(config, layer, x, capture=lambda name, h: inputs.__setitem__(name, h))
        scores = [np.abs(layer[f"{n}.weight"]) * np.sqrt(np.sum(inputs[n] ** 2, axis=(0, 1)))[None, :]
                  for n in model_lib.linear_names(config)]
        flat = np.concatenate([s.ravel() for s in scores])
        ratios.append(np.count_nonzero(flat > m * flat.mean()) / flat.size)
    return ratios


METHODS = [("magnitude",), ("wanda",), ("sparsegpt",), ("dsnot", "--dsnot-variant", "reference"),
           ("dsnot", "--dsnot-variant", "official", "--max-cycle-time", "5"), ("dsnot", "--dsnot-variant", "exact"),
           ("dsnot", "--initial-method", "sparsegpt")]


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-opt"])
@pytest.mark.parametrize("method", METHODS, ids=lambda m: "-".join(m))
def test_owl_every_method(tmp_path, capsys, calib, model, method):
    out, results, stdout = run_prune(tmp_path, capsys, model, calib, "--prune-method", *method,
                                     "--sparsity-ratio", "0.6", "--sparsity-profile", "owl", "--owl-lambda", "0.1")
    profile = results["profile"]
    assert (profile["kind"], profile["m"], profile["lambda"], profile["budget"]) == ("owl", 5.0, 0.1, "released")
    n_layers = len(profile["outlier_ratios"])
    # The ratios of the dense model, recomputed here (a tie at the threshold may flip one score).
    tokens = np.load(calib)
    expected = dense_outlier_ratios(FIXTURES / model, tokens, 5.0)
    np.testing.assert_allclose(profile["outlier_ratios"], expected, rtol=0, atol=2.0 / profile["layer_params"][0])
    np.testing.assert_allclose(profile["layer_sparsities"],
                               released_reference(profile["outlier_ratios"], 0.6, 0.1), rtol=0, atol=1e-12)
    check = results["sparsity"]
    assert check["requested_per_decoder_layer"] == profile["layer_sparsities"]
    assert len(check["per_decoder_layer"]) == n_layers
    assert "per decoder layer (requested -> achieved)" in stdout
    # Every row of every sublayer of layer ℓ has int(C · p_ℓ) zeros (SparseGPT: its own blocks,
    # so only the layer's fraction is checked).
    store = WeightStore(out)
    config = model_lib.load_model(out).config
    for i, p in enumerate(profile["layer_sparsities"]):
        prefix = model_lib.layer_prefix(config, i)
        zeros, total = 0, 0
        for name in model_lib.linear_names(config):
            w = store.get(f"{prefix}{name}.weight", np.float32)  # [R, C]
            per_row = np.count_nonzero(w == 0, axis=1)
            if "sparsegpt" not in method:
                assert np.all(per_row == int(w.shape[1] * p)), (i, name)
            zeros, total = zeros + per_row.sum(), total + w.size
        assert check["per_decoder_layer"][i] == pytest.approx(zeros / total, abs=0)
        assert abs(zeros / total - p) < 0.02


def test_lambda_zero_equals_uniform(tmp_path, capsys, calib):
    argv = ("--prune-method", "dsnot", "--sparsity-ratio", "0.5")
    uniform, r_uniform, _ = run_prune(tmp_path / "u", capsys, "tiny-llama", calib, *argv)
    owl, r_owl, _ = run_prune(tmp_path / "o", capsys, "tiny-llama", calib, *argv,
                              "--sparsity-profile", "owl", "--owl-lambda", "0")
    assert r_owl["profile"]["layer_sparsities"] == [0.5, 0.5]
    assert r_uniform["profile"] == {"kind": "uniform"}
    a, b = WeightStore(uniform), WeightStore(owl)
    for name in a.names():
        np.testing.assert_array_equal(a.get(name, np.float32), b.get(name, np.float32), err_msg=name)


def test_exact_budget(tmp_path, capsys, calib):
    _, results, _ = run_prune(tmp_path, capsys, "tiny-opt", calib, "--prune-method", "wanda", "--sparsity-ratio", "0.6",
                              "--sparsity-profile", "owl", "--owl-budget", "exact", "--owl-lambda", "0.2", "--owl-m", "3")
    profile = results["profile"]
    assert (profile["budget"], profile["m"]) == ("exact", 3.0)
    n = np.asarray(profile["layer_params"], dtype=np.float64)
    assert abs(np.dot(n, profile["layer_sparsities"]) - 0.6 * n.sum()) < 1.0


def test_report_shows_and_plots_the_profile(tmp_path, capsys, calib):
    pytest.importorskip("matplotlib")
    _, _, _ = run_prune(tmp_path, capsys, "tiny-llama", calib, "--prune-method", "wanda", "--sparsity-ratio", "0.6",
                        "--sparsity-profile", "owl")
    png = tmp_path / "profile.png"
    assert main(["report", str(tmp_path / "r.json"), "--plot-profile", str(png)]) == 0
    out = capsys.readouterr().out
    assert "OWL profile (M 5, lambda 0.08, budget released" in out
    assert "outliers (%)" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_plot_profile_of_a_uniform_run(tmp_path, capsys, calib):
    run_prune(tmp_path, capsys, "tiny-llama", calib, "--prune-method", "wanda", "--sparsity-ratio", "0.6")
    assert main(["report", str(tmp_path / "r.json"), "--plot-profile", str(tmp_path / "p.png")]) == 2
    assert "has no OWL profile" in capsys.readouterr().err


@pytest.mark.parametrize("extra, match", [
    (("--sparsity-type", "2:4", "--sparsity-profile", "owl"), "N:M patterns stay uniform"),
    (("--sparsity-ratio", "0.5", "--owl-m", "3"), "--owl-m only applies to --sparsity-profile owl"),
    (("--sparsity-ratio", "0.5", "--sparsity-profile", "layerwise"), "unknown --sparsity-profile"),
    (("--sparsity-ratio", "0.5", "--sparsity-profile", "owl", "--owl-budget", "half"), "unknown --owl-budget"),
    (("--sparsity-ratio", "0.5", "--sparsity-profile", "owl", "--owl-lambda", "0.5"), "--owl-lambda"),
    (("--sparsity-ratio", "0.5", "--sparsity-profile", "owl", "--owl-m", "0"), "--owl-m"),
    (("--sparsity-ratio", "0.995", "--sparsity-profile", "owl", "--owl-budget", "exact"), "caps every layer"),
    (("--prune-method", "dense", "--sparsity-profile", "owl"), "not dense"),
])
def test_refused(tmp_path, capsys, calib, extra, match):
    argv = ["prune", "--model", FIXTURES / "tiny-llama", "--calibration-tokens", calib, "--eval-dataset", "none",
            "--quiet", *extra]
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dsnot-ref: error:") and match in err[0], err


# --- resume and the run directory ----------------------------------------------------------------


def owl_settings(lam=0.1):
    return PipelineSettings(spec=PruneSpec(method="wanda", sparsity=0.6), chunk_size=2,
                            profile=OwlSettings(lam=lam), recon_error=False)


class Stop(Exception):
    pass


def test_resume_reuses_the_profile(tmp_path):
    model = model_lib.load_model(make_deep_llama(tmp_path / "m"))
    tokens = np.random.default_rng(7).integers(0, 256, size=(6, 16), dtype=np.int64)
    whole = prune_model(model, tokens, owl_settings(), tmp_path / "whole", keep_cache=True)

    def stop_after_layer_1(event):
        if event.done == 2:
            raise Stop

    with pytest.raises(Stop):
        prune_model(model, tokens, owl_settings(), tmp_path / "killed", progress=stop_after_layer_1)
    first = json.loads((tmp_path / "killed" / PROFILE_NAME).read_text())
    resumed = prune_model(model, tokens, owl_settings(), tmp_path / "killed", keep_cache=True)
    assert resumed.profile == first  # read back, not measured again (same 'seconds')
    assert resumed.profile["layer_sparsities"] == whole.profile["layer_sparsities"]
    assert len(set(whole.profile["layer_sparsities"])) > 1
    for a, b in zip(whole.mask_files, resumed.mask_files):
        assert a.read_bytes() == b.read_bytes()


def test_run_dir_refuses_another_profile(tmp_path):
    from dsnot_ref.errors import UserError  # noqa: PLC0415

    model = model_lib.load_model(make_deep_llama(tmp_path / "m", n_layers=2))
    tokens = np.random.default_rng(7).integers(0, 256, size=(4, 16), dtype=np.int64)
    prune_model(model, tokens, owl_settings(0.1), tmp_path / "run", keep_cache=True)
    with pytest.raises(UserError, match="other inputs"):
        prune_model(model, tokens, owl_settings(0.2), tmp_path / "run", keep_cache=True)
    uniform = PipelineSettings(spec=PruneSpec(method="wanda", sparsity=0.6), chunk_size=2, recon_error=False)
    with pytest.raises(UserError, match="other inputs"):
        prune_model(model, tokens, uniform, tmp_path / "run", keep_cache=True)


def test_default_run_dir_key_includes_the_profile(tmp_path):
    from dsnot_ref.cli.prune import default_run_dir  # noqa: PLC0415

    model = model_lib.load_model(FIXTURES / "tiny-llama")
    tokens = np.zeros((2, 8), dtype=np.int64)
    uniform = PipelineSettings(spec=PruneSpec(method="wanda", sparsity=0.6))
    keys = {default_run_dir(model, tokens, s) for s in
            (uniform, owl_settings(0.1), owl_settings(0.2))}
    assert len(keys) == 3
