"""DSnoT's reference variant on hand-worked examples (docs/dsnot.md §3-§4), input checks and
prune_linear's dispatch (the official variant: tests/test_dsnot_official.py).

In the small examples seq_sum = seq_sq = var = 1, so the contribution c equals the weight and
the Wanda score equals |W|; every expected value below was traced by hand from the spec.
"""

from dataclasses import dataclass

import numpy as np
import pytest

import dsnot_ref.methods.selection as selection  # by_row_chunks reads its constants there
from dsnot_ref.errors import UserError
from dsnot_ref.diagnostics import gram_form, relative_errors
from dsnot_ref.methods import DSnoTSettings, PruneSpec, prune_linear, reconstruction_error, statistics_needed
from dsnot_ref.methods.dsnot.per_row import dsnot_per_row
from dsnot_ref.methods.refiners import dsnot
from dsnot_ref.methods.scores import nm_mask, unstructured_mask, wanda_score
from dsnot_ref.released.averages import ReleasedAverages

ONES8 = np.ones(8)


def run(w, pruned0, settings, nm=None, seq_sum=None, initial_score=None, fn=dsnot):
    w = np.asarray(w, dtype=np.float64)[None, :] if np.ndim(w) == 1 else np.asarray(w, np.float64)
    ones = np.ones(w.shape[1])
    return fn(w, np.asarray(pruned0, bool).reshape(w.shape), ones if seq_sum is None else seq_sum,
              ones, ones, settings, nm=nm, initial_score=initial_score, trace=True)


# ----------------------------------------------------------------------------- reference

def test_reference_accepts_then_rejects_a_sign_change():
    # ε = 1 + 3 = 4 > 0. Growth (pruned, c > 0, largest first): [2, 0]. Pruning (kept, c < 0,
    # smallest |W| first): [1, 4]. Cycle 1: 4 − 0.5 − 3 = 0.5 kept sign: accept. Cycle 2:
    # 0.5 − 1 − 1 = −1.5 changes sign: reject, row stops.
    for fn in (dsnot, dsnot_per_row):
        r = run([1, -0.5, 3, 0.5, -1], [1, 0, 1, 0, 0], DSnoTSettings(), fn=fn)
        np.testing.assert_array_equal(r.pruned[0], [1, 1, 0, 0, 0])
        np.testing.assert_allclose(r.trace.eps[:, 0], [4.0, 0.5, 0.5])
        np.testing.assert_array_equal(r.trace.active[:, 0], [True, True, False])
        np.testing.assert_array_equal(r.trace.swaps, [[0, 2, 1, 1]])
        assert r.cycles == 2 and r.n_swaps == 1


def test_reference_stops_below_threshold_and_when_lists_run_out():
    # ε = 0.05 <= 0.1: nothing happens.
    r = run([0.05, 1, -2, 3], [1, 0, 0, 0], DSnoTSettings())
    np.testing.assert_array_equal(r.pruned[0], [1, 0, 0, 0])
    # ε = 0.5 + 1.5 = 2. Growth [1, 0]; pruning (kept, c < 0) only [2]. Cycle 1: g=1, q=2:
    # 2 − 0.2 − 1.5 = 0.3, accept. Cycle 2: the pruning list is exhausted, the row stops.
    for fn in (dsnot, dsnot_per_row):
        r = run([0.5, 1.5, -0.2, 0.3, 3], [1, 1, 0, 0, 0], DSnoTSettings(), fn=fn)
        np.testing.assert_array_equal(r.pruned[0], [1, 0, 1, 0, 0])
        np.testing.assert_allclose(r.trace.eps[:, 0], [2.0, 0.3, 0.3])
        assert r.cycles == 2


def test_reference_nm_picks_smallest_initial_score_in_group():
    # 1:4. Wanda prunes col 0. c = [1, 0.4, 3, 4] (seq_sum[1] = 0.2). g = 0, q = col 1
    # (smallest score among kept): ε 1 -> 0.4, |ε| decreased, sign kept: accept. Then the growth
    # list is exhausted and the row stops.
    seq_sum = np.array([1, 0.2, 1, 1])
    for fn in (dsnot, dsnot_per_row):
        r = run([1, 2, 3, 4], [1, 0, 0, 0], DSnoTSettings(), nm=(1, 4), seq_sum=seq_sum, fn=fn)
        np.testing.assert_array_equal(r.pruned[0], [0, 1, 0, 0])
        np.testing.assert_allclose(r.trace.eps[:, 0], [1.0, 0.4, 0.4])


def test_max_cycle_time_zero_is_identity():
    r = run([1, -0.5, 3, 0.5, -1], [1, 0, 1, 0, 0], DSnoTSettings(max_cycle_time=0))
    np.testing.assert_array_equal(r.pruned[0], [1, 0, 1, 0, 0])
    assert r.trace.eps.shape == (1, 1) and r.cycles == 0 and r.trace.swaps.shape == (0, 4)


def test_dsnot_input_errors():
    w, p = np.ones((2, 4)), np.zeros((2, 4), bool)
    with pytest.raises(UserError, match="var has shape"):
        dsnot(w, p, np.ones(4), np.ones(4), np.ones(3))
    with pytest.raises(UserError, match="initial mask"):
        dsnot(w, p.astype(int), np.ones(4), np.ones(4), np.ones(4))
    with pytest.raises(UserError, match="seq_sum has NaN"):
        dsnot(w, p, np.full(4, np.nan), np.ones(4), np.ones(4))
    with pytest.raises(UserError, match="variant"):
        DSnoTSettings(variant="fast")
    with pytest.raises(UserError, match="max_cycle_time"):
        DSnoTSettings(max_cycle_time=-1)


# ----------------------------------------------------------------------------- prune_linear

@dataclass(frozen=True)
class FakeStats:
    """Stand-in with the fields of stats.LinearStats (docs/design.md), built from raw inputs."""

    n_seq: int
    seq_len: int
    seq_sum: np.ndarray
    seq_sq: np.ndarray
    var_pooled: np.ndarray
    var_within: np.ndarray
    hessian: np.ndarray | None = None


def fake_stats(x, with_hessian=True):
    """x [S, L, C] -> statistics computed directly from their definitions (docs/dsnot.md §1)."""
    s, l, c = x.shape
    h = 2.0 / s * np.einsum("slc,sld->cd", x, x) if with_hessian else None
    return FakeStats(s, l, x.sum(axis=1).mean(axis=0), (x**2).sum(axis=1).mean(axis=0),
                     x.reshape(-1, c).var(axis=0), x.var(axis=1).mean(axis=0), h)


def layer(seed=0, r=12, c=64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 16, c)) + rng.standard_normal(c)
    return rng.standard_normal((r, c)).astype(np.float32), x


def test_reconstruction_error_equals_output_error():
    w, x = layer()
    st = fake_stats(x)
    pruned = unstructured_mask(wanda_score(w, st.seq_sq), 0.5)
    x2 = x.reshape(-1, x.shape[2])
    w64 = w.astype(np.float64)
    direct = np.sum((x2 @ np.where(pruned, w64, 0).T) ** 2) / np.sum((x2 @ w64.T) ** 2)
    assert reconstruction_error(w, pruned, st.hessian) == pytest.approx(direct, rel=1e-10)


def recon(w, result, st) -> dict:
    """The observer's relative errors of a PruneResult, from the Hessian of ``st``."""
    return relative_errors(w, result.initial, result.weight, gram_form(st.hessian))


def test_prune_linear_wanda_and_dsnot():
    w, x = layer()
    st = fake_stats(x)
    base = prune_linear(w, st, PruneSpec("wanda", 0.5))
    assert base.weight.dtype == np.float32
    np.testing.assert_array_equal(base.weight, np.where(base.pruned, 0, w))
    assert base.diagnostics["swaps"] == 0
    res = prune_linear(w, st, PruneSpec("dsnot", 0.5))
    np.testing.assert_array_equal(res.pruned.sum(1), base.pruned.sum(1))
    assert res.diagnostics["eps_after"] <= res.diagnostics["eps_before"]
    np.testing.assert_array_equal(res.initial, base.pruned)
    assert recon(w, res, st)["recon_before"] == pytest.approx(recon(w, base, st)["recon_after"])
    ref = dsnot(w, base.pruned, st.seq_sum, st.seq_sq, st.var_pooled)
    np.testing.assert_array_equal(res.pruned, ref.pruned)
    assert res.diagnostics["swaps"] == ref.n_swaps
    skipped = prune_linear(w, st, PruneSpec("dsnot", 0.5), apply_refiner=False)
    np.testing.assert_array_equal(skipped.pruned, base.pruned)


def test_prune_linear_official_uses_within_sequence_variance():
    w, x = layer(1, c=256)
    st = fake_stats(x, with_hessian=False)
    spec = PruneSpec("dsnot", 0.5, dsnot=DSnoTSettings(variant="official", max_cycle_time=10))
    res = prune_linear(w, st, spec)
    p0 = unstructured_mask(wanda_score(w, st.seq_sq), 0.5)
    ref = dsnot(w, p0, st.seq_sum, st.seq_sq, st.var_within, spec.dsnot)
    np.testing.assert_array_equal(res.pruned, ref.pruned)
    assert not any(key.startswith("recon") for key in res.diagnostics)  # the observer's, not prune_linear's


def test_prune_linear_nm_magnitude_and_dense():
    w, x = layer(2)
    st = fake_stats(x)
    res = prune_linear(w, st, PruneSpec("dsnot", 0.5, (2, 4), initial_method="magnitude"))
    assert (res.pruned.reshape(12, -1, 4).sum(2) == 2).all()
    dense = prune_linear(w, st, PruneSpec("dense", 0.0))
    assert not dense.pruned.any() and dense.weight is w


def test_statistics_needed_and_spec_validation():
    """Each refiner declares its statistics; the initial pruner's needs are added (SparseGPT: G)."""
    assert statistics_needed(PruneSpec("sparsegpt", 0.5)).gram == "float64"
    assert statistics_needed(PruneSpec("dsnot", 0.5, initial_method="sparsegpt")).gram == "float64"
    assert statistics_needed(PruneSpec("dsnot", 0.5, dsnot=DSnoTSettings(variant="exact"))).gram == "float64"
    assert statistics_needed(PruneSpec("dsnot", 0.5)).gram is None
    assert statistics_needed(PruneSpec("wanda", 0.5)).gram is None
    official = statistics_needed(PruneSpec("dsnot", 0.5, dsnot=DSnoTSettings(variant="official")))
    assert official.moments is ReleasedAverages and official.variance == "within" and official.gram is None
    assert statistics_needed(PruneSpec("dsnot", 0.5)).moments is None
    with pytest.raises(UserError):
        PruneSpec("wanda", 0.6, (2, 4))
    with pytest.raises(UserError, match="unknown pruning method"):
        PruneSpec("random", 0.5)
    w, x = layer()
    with pytest.raises(UserError, match="Hessian"):
        prune_linear(w, fake_stats(x, with_hessian=False), PruneSpec("sparsegpt", 0.5))


def test_prune_linear_sparsegpt_paths():
    pytest.importorskip("dsnot_ref.methods.sparsegpt")
    w, x = layer(3)
    st = fake_stats(x)
    res = prune_linear(w, st, PruneSpec("sparsegpt", 0.5))
    assert res.pruned.mean() == pytest.approx(0.5, abs=0.05)
    errors = recon(w, res, st)  # recon_before: SparseGPT's mask alone; after: with its weight update
    assert errors["recon_after"] < errors["recon_before"]
    assert errors["recon_before"] == pytest.approx(reconstruction_error(w, res.pruned, st.hessian), rel=1e-12)
    ds = prune_linear(w, st, PruneSpec("dsnot", 0.5, initial_method="sparsegpt"))
    np.testing.assert_array_equal(ds.weight, np.where(ds.pruned, 0, w))   # values unchanged
    assert (ds.pruned.sum(1) == 32).all()


@pytest.mark.parametrize("variant,nm", [("reference", None), ("official", None),
                                        ("reference", (2, 4)), ("official", (2, 4))])
def test_row_chunking_does_not_change_results(monkeypatch, variant, nm):
    w, x = layer(5, r=40, c=256)
    seq_sum, seq_sq, var = x.sum(1).mean(0), (x**2).sum(1).mean(0), x.reshape(-1, 256).var(0)
    score = wanda_score(w, seq_sq)
    p0 = unstructured_mask(score, 0.6) if nm is None else nm_mask(score, *nm)
    s = DSnoTSettings(variant=variant, max_cycle_time=20)
    whole = dsnot(w, p0, seq_sum, seq_sq, var, s, nm=nm, trace=True)
    monkeypatch.setattr(selection, "ROW_CHUNK_ENTRIES", 3 * 256)        # blocks of 3 rows
    chunked = dsnot(w, p0, seq_sum, seq_sq, var, s, nm=nm, trace=True)
    np.testing.assert_array_equal(whole.pruned, chunked.pruned)
    np.testing.assert_array_equal(whole.trace.eps, chunked.trace.eps)
    assert whole.n_swaps > 0
