"""The optimal weight update on a fixed mask (dsnot_ref.methods.weight_update, docs/weight_update.md).

Independent evidence: the minimum is computed from the calibration tokens X by NumPy's
least squares (SVD, no Gram matrix): min over v of ‖X_S v − X w‖² + λ‖v − w_S‖², as the
stacked system [X_S; √λ I] v = [X w; √λ w_S]. Errors are ‖X(w − ŵ)‖² from X.

Tolerances: the solves are O(κ · 2⁻⁵²) accurate, κ the condition number of G_SS + λI; the
problems below keep κ below about 1e5, so 1e-9 relative (of the largest weight, or of the
dense output energy for errors) is far above rounding and far below any real difference.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsnot_ref.errors import UserError
from dsnot_ref.methods.scores import nm_mask, unstructured_mask
from dsnot_ref.methods.weight_update import (
    WeightUpdateSettings,
    exact_update,
    update_grouped,
    update_plain,
    update_row,
)


def problem(seed, rows=6, cols=16, tokens=48, sparsity=0.5, nm=None, ragged=False):
    """Correlated tokens X [T, C] with uneven column scales, weights W [R, C], a mask.

    ``ragged``: a different number of pruned weights in every row (as SparseGPT's masks)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tokens, cols)) @ (np.eye(cols) + rng.standard_normal((cols, cols)) / 3)
    x *= rng.uniform(0.3, 3.0, size=cols)[None, :]
    w = rng.standard_normal((rows, cols))
    score = np.abs(w) * np.sqrt((x**2).sum(axis=0))[None, :]
    if ragged:
        pruned = score < np.quantile(score, sparsity)  # one threshold for the whole layer
    else:
        pruned = unstructured_mask(score, sparsity) if nm is None else nm_mask(score, *nm)
    return x, w, pruned


def errors(x, w, w_new):
    """‖X(w_r − ŵ_r)‖² per row, from the tokens: -> [R]."""
    return np.sum((x @ (w - w_new).T) ** 2, axis=0)


def damping(hessian, percdamp):
    """λ as SparseGPT takes it (no dead columns in these problems)."""
    return percdamp * np.mean(np.diag(hessian))


def least_squares(x, w_row, pruned_row, lam):
    """The independent minimiser: ŵ_S from lstsq on [X_S; √λ I] v = [X w; √λ w_S]; ŵ_P = 0."""
    kept = ~pruned_row
    k = int(kept.sum())
    a = np.vstack([x[:, kept], np.sqrt(lam) * np.eye(k)])  # [T + k, k]
    b = np.concatenate([x @ w_row, np.sqrt(lam) * w_row[kept]])  # [T + k]
    out = np.zeros_like(w_row)
    out[kept] = np.linalg.lstsq(a, b, rcond=None)[0]
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), sparsity=st.sampled_from([0.3, 0.5, 0.7]),
       percdamp=st.sampled_from([1e-6, 1e-2, 0.3]), nm=st.sampled_from([None, (2, 4), (1, 4)]),
       ragged=st.booleans())
def test_update_is_the_least_squares_minimum(seed, sparsity, percdamp, nm, ragged):
    """Mask unchanged, pruned exactly zero, error never above the mask alone's, and ŵ equal to
    the least-squares solution computed from X."""
    x, w, pruned = problem(seed, sparsity=sparsity, nm=None if ragged else nm, ragged=ragged)
    hessian = 2.0 / 3 * (x.T @ x)  # LinearStats.hessian for S = 3: any positive multiple of G
    new = exact_update(w, pruned, hessian, WeightUpdateSettings("exact", percdamp))
    assert new.dtype == w.dtype
    assert np.all(new[pruned] == 0.0)
    assert np.all(new[~pruned] != 0.0)  # generic data: no kept weight lands on zero
    lam = damping(x.T @ x, percdamp)
    expected = np.stack([least_squares(x, w[r], pruned[r], lam) for r in range(w.shape[0])])
    np.testing.assert_allclose(new, expected, rtol=0, atol=1e-9 * np.abs(w).max())
    alone, after = errors(x, w, np.where(pruned, 0.0, w)), errors(x, w, new)
    energy = np.sum((x @ w.T) ** 2)
    assert np.all(after <= alone + 1e-12 * energy)  # never increases, row by row
    penalty = lam * np.sum((new - w)[:, :] ** 2 * ~pruned, axis=1)  # the ridge term of §1
    assert np.all(after + penalty <= alone + 1e-12 * energy)


@pytest.mark.parametrize("seed", range(4))
def test_undamped_solve_reaches_the_closed_form_minimum(seed):
    """update_row on G itself (λ = 0, G_SS nonsingular as T > C) gives min_v ‖X_S v − X w‖²."""
    x, w, pruned = problem(seed, rows=4, cols=12, tokens=40, sparsity=0.6)
    gram = x.T @ x
    for r in range(w.shape[0]):
        new = update_row(w[r], pruned[r], gram)
        expected = least_squares(x, w[r], pruned[r], 0.0)
        np.testing.assert_allclose(new, expected, rtol=0, atol=1e-9 * np.abs(w).max())
        kept = ~pruned[r]
        residual = x[:, kept] @ expected[kept] - x @ w[r]
        assert errors(x, w[r:r + 1], new[None])[0] == pytest.approx(residual @ residual, rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_a_mask_that_can_represent_the_dense_output_reaches_zero_error(seed):
    """Pruned inputs that are combinations of kept ones, X_P = X_S M: the dense output X w is
    X_S (w_S + M w_P), so the update reaches zero error with exactly those weights."""
    rng = np.random.default_rng(seed)
    kept_cols, cut_cols, tokens, rows = 8, 5, 30, 4
    x_s = rng.standard_normal((tokens, kept_cols))
    mix = rng.standard_normal((kept_cols, cut_cols))  # M [k, C − k]
    x = np.hstack([x_s, x_s @ mix])  # [T, C]; columns k.. are pruned in every row
    w = rng.standard_normal((rows, kept_cols + cut_cols))
    pruned = np.zeros(w.shape, dtype=bool)
    pruned[:, kept_cols:] = True
    expected = np.hstack([w[:, :kept_cols] + w[:, kept_cols:] @ mix.T, np.zeros((rows, cut_cols))])
    energy = np.sum((x @ w.T) ** 2)
    undamped = np.stack([update_row(w[r], pruned[r], x.T @ x) for r in range(rows)])
    np.testing.assert_allclose(undamped, expected, rtol=0, atol=1e-9 * np.abs(expected).max())
    assert errors(x, w, undamped).sum() <= 1e-18 * energy
    # with damping the ridge term keeps ŵ near w: the error is small, of the order of λ, not zero
    damped = update_grouped(w, pruned, x.T @ x, percdamp=1e-9)
    assert errors(x, w, damped).sum() <= 1e-12 * energy


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), nm=st.sampled_from([None, (2, 4)]), ragged=st.booleans(),
       block_bytes=st.sampled_from([1, 8 * 30, 2**26]))
def test_grouped_equals_plain(seed, nm, ragged, block_bytes):
    """The batched form (any block height, rows of many support sizes) against the per-row
    Cholesky solves: equal to 1e-9 of the largest weight (LU against Cholesky rounding)."""
    x, w, pruned = problem(seed, rows=9, cols=16, sparsity=0.55, nm=None if ragged else nm, ragged=ragged)
    pruned[0] = True  # a row with nothing kept
    pruned[1] = False  # a row with nothing pruned
    hessian = x.T @ x
    plain = update_plain(w, pruned, hessian, 0.01)
    fast = update_grouped(w, pruned, hessian, 0.01, block_bytes=block_bytes)
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-9 * np.abs(w).max())
    assert np.all(plain[0] == 0.0) and np.array_equal(plain[1], w[1])


def test_damping_is_sparsegpts():
    """λ = percdamp · mean(diag H) with dead diagonal entries counted as 1, as SparseGPT; a dead
    input (its column of X is zero) keeps its weight when kept, and the solve does not fail."""
    x, w, pruned = problem(7, rows=5, cols=10, sparsity=0.5)
    x[:, 3] = 0.0  # a dead input
    pruned[:, 3] = [True, False, True, False, False]
    hessian = x.T @ x
    new = update_grouped(w, pruned, hessian, 0.05)
    assert np.all(new[~pruned[:, 3], 3] == w[~pruned[:, 3], 3])
    diag = np.diag(hessian).copy()
    diag[3] = 1.0
    lam = 0.05 * diag.mean()
    expected = np.stack([least_squares(x, w[r], pruned[r], lam) for r in range(w.shape[0])])
    np.testing.assert_allclose(new, expected, rtol=0, atol=1e-9 * np.abs(w).max())


def test_float32_weights_come_back_float32_with_exact_zeros():
    x, w, pruned = problem(3, rows=4, cols=8, nm=(2, 4))
    new = exact_update(w.astype(np.float32), pruned, x.T @ x, WeightUpdateSettings("exact"))
    assert new.dtype == np.float32
    assert np.all(new[pruned] == 0.0)
    assert np.array_equal(new != 0, ~pruned)


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "optimal"}, "unknown weight update 'optimal'"),
    ({"mode": "exact", "percdamp": 0.0}, "damping must be in (0, 1]"),
    ({"mode": "exact", "percdamp": float("nan")}, "damping must be in (0, 1]"),
    ({"mode": "exact", "percdamp": 2.0}, "damping must be in (0, 1]"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        WeightUpdateSettings(**kwargs)


def test_bad_problems_are_refused():
    x, w, pruned = problem(0, rows=3, cols=8)
    with pytest.raises(UserError, match="mask has shape"):
        update_grouped(w, pruned[:, :4], x.T @ x)
    with pytest.raises(UserError, match="Hessian has shape"):
        update_grouped(w, pruned, np.eye(4))
    w[0, 0] = np.nan
    with pytest.raises(UserError, match="NaN or inf"):
        update_grouped(w, pruned, x.T @ x)
    with pytest.raises(ValueError, match="non-finite"):
        update_grouped(np.ones((3, 8)), pruned, np.full((8, 8), np.inf))
