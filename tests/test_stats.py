"""Streaming statistics equal one-pass statistics, whatever the chunking (dsnot_ref.stats)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsnot_ref.stats import StatsAccumulator


def direct_stats(x):
    """Plain one-pass statistics of x [S, L, C], written from the definitions in docs/dsnot.md §1."""
    x = x.astype(np.float64)
    s, seq_len, c = x.shape
    flat = x.reshape(s * seq_len, c)
    hessian = np.zeros((c, c), dtype=np.float64)
    for seq in x:  # (2/S) Σ_s X_sᵀ X_s, one sequence at a time
        hessian += seq.T @ seq
    return {
        "seq_sum": flat.sum(axis=0) / s,
        "seq_sq": (flat**2).sum(axis=0) / s,
        "var_pooled": np.var(flat, axis=0),
        "var_within": np.mean([np.var(seq, axis=0) for seq in x], axis=0),
        "hessian": 2.0 * hessian / s,
    }


def accumulate(x, chunk_sizes, with_hessian=True):
    acc = StatsAccumulator(x.shape[2], with_hessian=with_hessian)
    start = 0
    for b in chunk_sizes:
        acc.update(x[start : start + b])
        start += b
    assert start == x.shape[0]
    return acc.finalize()


def split_sizes(n, cuts):
    """Chunk sizes from a sorted set of cut points in (0, n)."""
    points = [0, *sorted(set(c for c in cuts if 0 < c < n)), n]
    return [b - a for a, b in zip(points, points[1:])]


def test_matches_direct_computation_on_random_data():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((6, 9, 5)) * [1, 2, 3, 0.5, 10] + [0, 1, -2, 5, 0]).astype(np.float32)
    got = accumulate(x, [2, 1, 3])
    want = direct_stats(x)
    assert got.n_seq == 6 and got.seq_len == 9
    for name, value in want.items():
        np.testing.assert_allclose(getattr(got, name), value, rtol=1e-12, atol=1e-12, err_msg=name)


def test_variances_differ_as_defined():
    # Two sequences with different means: pooled variance sees the between-sequence spread,
    # the within-sequence variance (released code) does not.
    x = np.zeros((2, 4, 1), dtype=np.float64)
    x[0, :, 0] = [0, 1, 0, 1]  # mean 0.5, var 0.25
    x[1, :, 0] = [10, 11, 10, 11]  # mean 10.5, var 0.25
    got = accumulate(x, [1, 1])
    assert got.var_within[0] == pytest.approx(0.25, abs=1e-15)
    assert got.var_pooled[0] == pytest.approx(0.25 + 25.0, rel=1e-14)
    assert got.seq_sum[0] == pytest.approx((2 + 42) / 2)


# Tolerance: each statistic is a float64 sum of at most S·L·C ≈ 10³ terms of size ≤ ~10²
# (the data below), re-associated differently by different chunkings. Re-association changes a
# sum by at most ~n·ε·Σ|terms| (ε = 2.2e-16), i.e. ~1e-13 relative to the magnitude of the
# terms; 1e-10 leaves a wide margin while still failing for any real bookkeeping error (a lost
# chunk or a wrong weight changes the results at the 1e-2 level).
@given(
    s=st.integers(1, 8),
    seq_len=st.integers(1, 6),
    c=st.integers(1, 4),
    cuts=st.lists(st.integers(1, 7), max_size=7),
    seed=st.integers(0, 2**32 - 1),
    offset=st.floats(-50, 50),
)
def test_any_chunking_equals_one_pass(s, seq_len, c, cuts, seed, offset):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((s, seq_len, c)) * rng.uniform(0.01, 5, c) + offset).astype(np.float32)
    one_pass = accumulate(x, [s])
    chunked = accumulate(x, split_sizes(s, cuts))
    scale = float(np.max(np.abs(x.astype(np.float64)))) ** 2 * seq_len + 1e-300
    for name in ("seq_sum", "seq_sq", "var_pooled", "var_within", "hessian"):
        a, b = getattr(one_pass, name), getattr(chunked, name)
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12 * scale, err_msg=name)
    # And both agree with the direct definition.
    for name, value in direct_stats(x).items():
        np.testing.assert_allclose(getattr(chunked, name), value, rtol=1e-10, atol=1e-12 * scale, err_msg=name)


def test_pooled_variance_survives_a_large_offset():
    # Mean 1e8, spread 1: E[x²] − E[x]² in float64 loses everything here (x² ≈ 1e16 has a
    # rounding step of ~2), the Chan merge of two-pass chunk moments keeps ~1e-7 relative.
    rng = np.random.default_rng(1)
    x = 1e8 + rng.standard_normal((16, 8, 3))
    got = accumulate(x, [3, 5, 1, 7], with_hessian=False)
    want = np.var(x.reshape(-1, 3) - 1e8, axis=0)  # shifted first: exact reference
    np.testing.assert_allclose(got.var_pooled, want, rtol=1e-6)
    naive = got.seq_sq / x.shape[1] - (got.seq_sum / x.shape[1]) ** 2
    assert np.max(np.abs(naive - want) / want) > 1e-3  # the formula we avoid really fails


def test_hessian_only_when_asked():
    x = np.ones((2, 3, 4), dtype=np.float32)
    assert accumulate(x, [2], with_hessian=False).hessian is None
    assert accumulate(x, [2], with_hessian=True).hessian.shape == (4, 4)


def test_rejects_bad_updates():
    acc = StatsAccumulator(3)
    with pytest.raises(ValueError):
        acc.finalize()
    with pytest.raises(ValueError):
        acc.update(np.zeros((1, 2, 4), dtype=np.float32))
    acc.update(np.zeros((1, 2, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        acc.update(np.zeros((1, 5, 3), dtype=np.float32))


def test_dtype_is_float64():
    got = accumulate(np.ones((1, 2, 2), dtype=np.float32), [1])
    for name in ("seq_sum", "seq_sq", "var_pooled", "var_within", "hessian"):
        assert getattr(got, name).dtype == np.float64


def test_float32_hessian_products_agree_with_float64():
    """hessian_products="input": each chunk's XᵀX in float32 (the diagnostic's Hessian), summed in
    float64; equal to the float64 Hessian up to float32 rounding of a T-term sum (tolerance
    ~50 ε·√T relative to the largest entry), and the other statistics are unchanged."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((6, 64, 8)) * [1, 2, 3, 0.5, 10, 1, 1, 4] + 3).astype(np.float32)
    exact = accumulate(x, [2, 4])
    acc = StatsAccumulator(8, with_hessian=True, hessian_products="input")
    acc.update(x[:2])
    acc.update(x[2:])
    got = acc.finalize()
    assert got.hessian.dtype == np.float64
    scale = np.abs(exact.hessian).max()
    np.testing.assert_allclose(got.hessian, exact.hessian, rtol=0, atol=50 * np.finfo(np.float32).eps * np.sqrt(256) * scale)
    for name in ("seq_sum", "seq_sq", "var_pooled", "var_within"):
        np.testing.assert_array_equal(getattr(got, name), getattr(exact, name), err_msg=name)
    with pytest.raises(ValueError, match="hessian_products"):
        StatsAccumulator(8, with_hessian=True, hessian_products="float16")
