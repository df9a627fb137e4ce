"""OWL layerwise sparsity (dsnot_ref.methods.owl): the outlier ratio and the two allocations.

Independent evidence: a hand-worked example (arithmetic written out below), the released code's
three lines re-typed literally (``released_reference``), a bisection for the exact budget's shift,
and properties that follow from the definitions (budget, bounds, ordering, λ = 0).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsnot_ref.errors import UserError
from dsnot_ref.methods.owl import (
    EXACT_CAP,
    OwlSettings,
    band_offsets,
    exact_sparsities,
    layer_sparsities,
    outlier_ratio,
    released_sparsities,
)


def released_reference(ratios, sparsity, lam):
    """lib/prune_all.py (luuyin/OWL), prune_wanda_outlier, after the outlier pass, verbatim math."""
    all_layer_ratio = np.array(ratios, dtype=np.float64)
    all_layer_ratio = (all_layer_ratio - all_layer_ratio.min()) * (1 / (all_layer_ratio.max() - all_layer_ratio.min()) * lam * 2)
    all_layer_ratio = all_layer_ratio - np.mean(all_layer_ratio) + (1 - sparsity)
    out = []
    for density in all_layer_ratio:
        layer_sparsity_ratio = 1 - density
        if layer_sparsity_ratio <= 0:
            layer_sparsity_ratio = 0.01
        out.append(layer_sparsity_ratio)
    return np.array(out)


# --- the outlier ratio ---------------------------------------------------------------------------


def test_outlier_ratio_hand_worked():
    # Scores 1 (x9) and 10 (x1) over two sublayers: mean 1.9; M = 5 -> threshold 9.5; one outlier of 10.
    a = np.ones((3, 2))
    b = np.array([[1.0, 1.0], [1.0, 10.0]])
    assert outlier_ratio([a, b], 5.0) == pytest.approx(0.1, abs=0)
    # M = 6 -> threshold 11.4: none.
    assert outlier_ratio([a, b], 6.0) == 0.0


def test_outlier_ratio_pools_sublayers_by_size():
    # The mean is over all scores together, not a mean of sublayer means:
    # 100 scores of 1 and one sublayer [[50]] -> mean 150/101 ≈ 1.485; 50 > 5·1.485.
    big = np.ones((10, 10))
    assert outlier_ratio([big, np.array([[50.0]])], 5.0) == pytest.approx(1 / 101)
    # Each alone has no score above 5x its own mean.
    assert outlier_ratio([big], 5.0) == 0.0 and outlier_ratio([np.array([[50.0]])], 5.0) == 0.0


def test_outlier_ratio_strictly_above():
    # A score equal to M·mean is not an outlier (the released code uses '>').
    s = np.array([[0.0, 0.0, 0.0, 4.0]])  # mean 1, M = 4 -> threshold 4
    assert outlier_ratio([s], 4.0) == 0.0
    assert outlier_ratio([s], 3.999) == 0.25


@given(st.lists(st.floats(0, 1e3), min_size=1, max_size=40), st.floats(0.1, 20), st.floats(1e-3, 1e3))
def test_outlier_ratio_scale_invariant_and_bounded(values, m, scale):
    s = np.array(values, dtype=np.float64)[None, :]
    d = outlier_ratio([s], m)
    assert 0.0 <= d <= 1.0
    # Wanda's norm may be taken per token or per sequence: a common factor changes nothing
    # (powers of two keep every product exact).
    assert outlier_ratio([s * 2.0**10], m) == d


# --- the allocation ------------------------------------------------------------------------------


def test_hand_worked_example():
    # D = [1%, 2%, 5%, 3%], λ = 0.08: u = 0.16·(D − 1%)/4% = [0, 0.04, 0.16, 0.08], mean 0.07;
    # p_ℓ = 0.7 − (u − 0.07) = [0.77, 0.73, 0.61, 0.69]: most outliers, least pruned.
    ratios = [0.01, 0.02, 0.05, 0.03]
    np.testing.assert_allclose(band_offsets(ratios, 0.08), [0, 0.04, 0.16, 0.08], rtol=0, atol=1e-15)
    expected = [0.77, 0.73, 0.61, 0.69]
    np.testing.assert_allclose(released_sparsities(ratios, 0.7, 0.08), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(exact_sparsities(ratios, 0.7, 0.08, [5] * 4), expected, rtol=0, atol=1e-15)
    # Unequal sizes: the exact budget shifts the band so that Σ n p = 0.7 Σ n.
    # Sizes [1, 1, 2, 1]: c = Σ n u / Σ n = (0 + .04 + .32 + .08) / 5 = 0.088, p_ℓ = 0.7 + c − u_ℓ.
    # Check: 0.788 + 0.748 + 2·0.628 + 0.708 = 3.5 = 0.7 · 5.
    np.testing.assert_allclose(exact_sparsities(ratios, 0.7, 0.08, [1, 1, 2, 1]),
                               [0.788, 0.748, 0.628, 0.708], rtol=0, atol=1e-12)


def test_released_matches_the_released_lines():
    rng = np.random.default_rng(0)
    for _ in range(50):
        ratios = rng.uniform(0, 10, size=rng.integers(2, 40))
        p, lam = rng.uniform(0.1, 0.8), rng.uniform(0, 0.1)
        np.testing.assert_allclose(released_sparsities(ratios, p, lam), released_reference(ratios, p, lam),
                                   rtol=0, atol=1e-12)


def test_released_floor_and_ceiling():
    # 10% with λ = 0.2: the layer with most outliers would go to 0.1 − 0.4 + 0.2 < 0 -> 0.01.
    out = released_sparsities([0.0, 1.0], 0.1, 0.2)
    np.testing.assert_allclose(out, [0.3, 0.01])
    np.testing.assert_allclose(out, released_reference([0.0, 1.0], 0.1, 0.2))
    with pytest.raises(UserError, match=">= 1"):
        released_sparsities([0.0, 1.0], 0.9, 0.2)


def test_equal_ratios_give_uniform():
    for budget in ("released", "exact"):
        out = layer_sparsities([0.02] * 5, 0.6, OwlSettings(lam=0.08, budget=budget), [10] * 5)
        np.testing.assert_array_equal(out, np.full(5, 0.6))


def test_exact_clips_and_redistributes():
    # 5%, λ = 0.1, equal sizes: u = [0, 0.1, 0.2], unclipped p = 0.05 + 0.1 − u = [0.15, 0.05, −0.05].
    # The last layer clips at 0; the other two carry the budget: (0.05 + c) + (−0.05 + c) = 0.15,
    # c = 0.075, p = [0.125, 0.025, 0].
    ratios, sizes = [0.0, 0.5, 1.0], [100, 100, 100]
    out = exact_sparsities(ratios, 0.05, 0.1, sizes)
    assert out.min() == 0.0
    assert np.dot(out, sizes) == pytest.approx(0.05 * 300, abs=1e-9)
    np.testing.assert_allclose(out, [0.125, 0.025, 0.0], atol=1e-12)


@pytest.mark.parametrize("bad", [dict(m=0), dict(m=float("nan")), dict(lam=-0.1), dict(lam=0.5), dict(budget="x")])
def test_settings_refused(bad):
    with pytest.raises(UserError):
        OwlSettings(**bad)


# --- properties ----------------------------------------------------------------------------------

ratios_st = st.lists(st.floats(0, 100, allow_subnormal=False), min_size=1, max_size=48)
sizes_st = st.integers(1, 10**9)


def bisect_shift(ratios, p, lam, sizes):
    """Oracle for the exact budget: the shift c by bisection on Σ n clip(p + c − u, 0, cap)."""
    u, n = band_offsets(ratios, lam), np.asarray(sizes, dtype=np.float64)
    lo, hi = -2.0, 2.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.dot(n, np.clip(p + mid - u, 0, EXACT_CAP)) < p * n.sum():
            lo = mid
        else:
            hi = mid
    return np.clip(p + hi - u, 0, EXACT_CAP)


@given(ratios_st, st.floats(0, EXACT_CAP), st.floats(0, 0.49), st.data())
def test_exact_budget_properties(ratios, p, lam, data):
    sizes = data.draw(st.lists(sizes_st, min_size=len(ratios), max_size=len(ratios)))
    out = exact_sparsities(ratios, p, lam, sizes)
    n = np.asarray(sizes, dtype=np.float64)
    # The weighted mean is the requested sparsity, to less than one weight per layer.
    assert abs(np.dot(out, n) - p * n.sum()) < 1.0
    assert np.all(out >= 0) and np.all(out < 1)
    # More outliers, never more pruned.
    order = np.argsort(np.asarray(ratios), kind="stable")
    assert np.all(np.diff(out[order]) <= 1e-12)
    np.testing.assert_allclose(out, bisect_shift(ratios, p, lam, sizes), atol=1e-9)


@given(ratios_st, st.floats(0.1, 0.75), st.floats(0, 0.1))
def test_released_properties(ratios, p, lam):
    out = released_sparsities(ratios, p, lam)
    assert np.all(out > 0) and np.all(out < 1)
    # Where no layer hit the floor, the mean over layers (not over parameters) is p.
    if np.all(out > 0.01):
        assert out.mean() == pytest.approx(p, abs=1e-12)
    # The spread is the band: max − min = 2λ unless all ratios are equal or the floor applies.
    if np.ptp(ratios) > 0 and np.all(out > 0.01):
        assert np.ptp(out) == pytest.approx(2 * lam, abs=1e-12)


@given(ratios_st, st.floats(0, 0.98), st.data())
def test_lambda_zero_is_uniform(ratios, p, data):
    sizes = data.draw(st.lists(sizes_st, min_size=len(ratios), max_size=len(ratios)))
    np.testing.assert_allclose(exact_sparsities(ratios, p, 0.0, sizes), p, rtol=0, atol=1e-12)
    if p > 0:
        np.testing.assert_allclose(released_sparsities(ratios, p, 0.0), p, rtol=0, atol=1e-15)


@given(ratios_st, st.floats(0.05, 0.9), st.floats(0, 0.3), st.integers(1, 10**6))
def test_equal_sizes_the_two_budgets_agree_unless_clipped(ratios, p, lam, size):
    released = np.asarray(p - (band_offsets(ratios, lam) - band_offsets(ratios, lam).mean()))
    if released.min() < 0 or released.max() > EXACT_CAP:
        return
    exact = exact_sparsities(ratios, p, lam, [size] * len(ratios))
    np.testing.assert_allclose(exact, released, atol=1e-9)
