"""The reconstruction-error observer (dsnot_ref/diagnostics.py): its token sample, its errors
against the definition, and that watching changes nothing the pipeline computes."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dsnot_ref import pipeline
from dsnot_ref.diagnostics import ErrorSample, ReconObserver, gram_form, relative_errors
from dsnot_ref.methods import DSnoTSettings, PruneSpec, prune_linear
from dsnot_ref.model import load_model
from dsnot_ref.stats import StatsAccumulator

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"


def gram(x):
    flat = x.reshape(-1, x.shape[-1])
    return flat.T @ flat                                                  # [C, C]


def test_every_token_kept_as_rows_or_as_gram():
    """Every token kept: as F (FᵀF = G, no C×C array) when T' ≤ C, as G itself when C < T'."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 4, 20))                                   # T = 12 < C = 20
    rows = ErrorSample(20, kept=12, n_tokens=12)
    rows.update(x[:2], 0)
    rows.update(x[2:], 1)
    assert not rows.as_gram and rows.gram is None and rows.factor().shape == (12, 20)
    np.testing.assert_allclose(rows.factor().T @ rows.factor(), gram(x), rtol=1e-12, atol=1e-12)
    small = ErrorSample(5, kept=12, n_tokens=12)                          # C = 5 < T = 12
    small.update(x[:2, :, :5], 0)
    small.update(x[2:, :, :5], 1)
    assert small.as_gram and small.factor() is None
    np.testing.assert_allclose(small.gram, gram(x[:, :, :5]), rtol=1e-12)
    d = rng.standard_normal((3, 20))
    assert rows.form(d) == pytest.approx(np.sum((x.reshape(-1, 20) @ d.T) ** 2), rel=1e-6)  # float64 input
    with pytest.raises(ValueError, match="kept tokens"):
        ErrorSample(5, kept=0, n_tokens=12)


def test_sampled_factor_is_an_unbiased_norm_sampling_estimate():
    """T' < S·L: round(f·T) tokens per chunk drawn with probability ∝ ‖x_t‖², weighted by
    1/√(m·q_t), so FᵀF estimates G: seeded, unbiased (the mean over many seeds converges to G),
    and a token that dominates XᵀX (an outlier, as LLaMA-family massive activations) is caught."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 256, 5)) * [1, 2, 3, 0.5, 4]
    x[3, 0] *= 200.0                                                      # one heavy token: ~90% of XᵀX
    exact = gram(x)

    def sampled(seed):
        sample = ErrorSample(5, kept=128, n_tokens=2048, seed=seed)      # f = 1/16
        sample.update(x[:4], 0)
        sample.update(x[4:], 1)
        f = sample.factor()
        assert f.shape == (2 * 64, 5)
        return f.T @ f

    estimate = sampled(0)
    np.testing.assert_array_equal(estimate, sampled(0))                  # seeded: reproducible
    assert not np.array_equal(estimate, sampled(1))
    assert np.all(np.linalg.eigvalsh(estimate) > 0)
    np.testing.assert_allclose(np.diag(estimate), np.diag(exact), rtol=0.25)
    mean = np.mean([sampled(seed) for seed in range(200)], axis=0)
    np.testing.assert_allclose(mean, exact, rtol=0, atol=0.03 * np.abs(exact).max())


def test_sampling_weights_survive_float32_overflow():
    """‖x_t‖² is summed in float32; a token whose squares overflow (|x| ~ 1e20) falls back to
    float64 sums, so the draw still favours it and every weight stays finite."""
    x = np.ones((1, 64, 8), dtype=np.float32)
    x[0, 5] = 1e20
    sample = ErrorSample(8, kept=16, n_tokens=64)
    sample.update(x, 0)
    assert sample.factor().shape == (16, 8) and np.isfinite(sample.factor()).all()


def test_relative_errors_are_the_output_errors():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 16, 32)) + 0.5
    w = rng.standard_normal((6, 32))
    acc = StatsAccumulator(32)
    acc.update(x)
    result = prune_linear(w, acc.finalize(), PruneSpec("dsnot", 0.5))
    flat = x.reshape(-1, 32)
    dense = np.sum((flat @ w.T) ** 2)
    errors = relative_errors(w, result.initial, result.weight, gram_form(gram(x)))
    assert errors["recon_before"] == pytest.approx(np.sum((flat @ np.where(result.initial, w, 0).T) ** 2) / dense)
    assert errors["recon_after"] == pytest.approx(np.sum((flat @ (w - result.weight).T) ** 2) / dense)
    zero = relative_errors(np.zeros_like(w), result.initial, np.zeros_like(w), gram_form(gram(x)))
    assert zero == {"recon_before": 0.0, "recon_after": 0.0}


@pytest.mark.parametrize("spec", [PruneSpec("dsnot", 0.5), PruneSpec("dsnot", 0.5, dsnot=DSnoTSettings("exact"))])
def test_watching_changes_nothing_and_reports_the_definition(tmp_path, spec):
    """The statistics and the masks with the observer on are those with it off, bit for bit; with
    every token kept its errors are the output errors on the calibration tokens."""
    model = load_model(FIXTURES / "tiny-llama")
    tokens = np.random.default_rng(1).integers(3, 200, size=(4, 24), dtype=np.int64)
    runs = {}
    for on in (False, True):
        settings = pipeline.PipelineSettings(spec=spec, chunk_size=2, recon_error=on, recon_error_tokens=None)
        with pipeline.prune_model(model, tokens, settings, tmp_path / f"run{on}") as run:
            runs[on] = (list(run.masks()), run.diagnostics)
    for (name, off_mask), (_, on_mask) in zip(runs[False][0], runs[True][0]):
        np.testing.assert_array_equal(off_mask, on_mask, err_msg=name)
    for off_layer, on_layer in zip(runs[False][1], runs[True][1]):
        for name, off in off_layer["sublayers"].items():
            on = on_layer["sublayers"][name]
            assert {k: v for k, v in on.items() if not k.startswith("recon")} == off
            assert "recon_before" not in off and 0 <= on["recon_after"] and 0 <= on["recon_before"] <= 1
        assert on_layer["timings"]["diagnostics"] > 0 and off_layer["timings"]["diagnostics"] == 0


def test_observer_reads_the_methods_gram_and_keeps_nothing():
    """When the method gathered G (method_gram), the observer samples nothing and uses that G."""
    leaders = {"a": "a", "b": "a"}
    observer = ReconObserver(leaders, {"a": 8, "b": 8}, n_tokens=64, tokens=None, method_gram=True)
    assert observer.samples == {}
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 32, 8))
    assert observer.reduce("a", x, chunk=0) is None                      # nothing kept
    acc = StatsAccumulator(8, with_hessian=True)
    acc.update(x)
    stats = acc.finalize()
    w = rng.standard_normal((4, 8))
    result = prune_linear(w, stats, PruneSpec("wanda", 0.5))
    got = observer.after_pruning("b", w, result, stats)
    want = relative_errors(w, result.initial, result.weight, gram_form(gram(x)))
    assert got == pytest.approx(want, rel=1e-12)
    with pytest.raises(KeyError):                                         # no G and no sample: a bug, loudly
        observer.after_pruning("b", w, result, dataclasses.replace(stats, hessian=None))
