"""SparseGPT against an independent, slow Optimal Brain Surgeon implementation.

The oracle below does not use a Cholesky factor: it keeps the inverse Hessian of the columns
not yet processed and removes column i from it with the explicit OBS formula
``Hinv <- Hinv - Hinv[:, i] Hinv[i, :] / Hinv[i, i]``, updating each row's remaining weights
with ``w[i:] -= (w_i - q_i) / Hinv[i, i] · Hinv[i, i:]`` one row at a time. The saliency of a
column j it has not reached yet uses ``inv(H[j:, j:])[0, 0]`` (the inverse Hessian of columns
``j:``), computed directly.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsnot_ref.methods.sparsegpt import (
    block_mask_unstructured,
    inverse_hessian_factor,
    prune_block,
    sparsegpt_prune,
    sparsegpt_score,
)


def correlated_inputs(rng, tokens, cols):
    """``[T, C]`` inputs with strongly correlated columns and uneven scales (like LLM activations)."""
    mixing = rng.standard_normal((cols, cols)) / np.sqrt(cols)
    x = rng.standard_normal((tokens, cols)) @ (np.eye(cols) + 2.0 * mixing)
    return x * rng.uniform(0.2, 3.0, size=cols)[None, :]


def hessian_of(x, n_seq=1):
    """``H = (2/S) Xᵀ X`` as ``LinearStats.hessian`` defines it."""
    return 2.0 / n_seq * (x.T @ x)


def obs_oracle(w, hessian, sparsity, nm=None, blocksize=128, percdamp=0.01, selection="count"):
    """Slow SparseGPT: explicit inverse-Hessian updates, row by row, column by column."""
    w = np.array(w, dtype=np.float64)
    rows, cols = w.shape
    h = np.array(hessian, dtype=np.float64)
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += percdamp * np.mean(np.diag(h)) * np.eye(cols)
    d2_ahead = np.array([np.linalg.inv(h[j:, j:])[0, 0] for j in range(cols)])
    h_inv = np.linalg.inv(h)
    pruned = np.zeros((rows, cols), dtype=bool)
    for i in range(cols):
        block_start = i - i % blocksize
        if nm is None and i == block_start:
            block = slice(i, min(i + blocksize, cols))
            saliency = w[:, block] ** 2 / d2_ahead[None, block]
            flat = saliency.reshape(-1)
            k = int(flat.size * sparsity)
            if selection == "count":
                chosen = np.zeros(flat.size, dtype=bool)
                chosen[np.argsort(flat, kind="stable")[:k]] = True
            else:
                chosen = flat <= np.sort(flat)[k]
            pruned[:, block] = chosen.reshape(saliency.shape)
        assert np.isclose(h_inv[i, i], d2_ahead[i], rtol=1e-9)  # the OBS identity the oracle relies on
        for r in range(rows):
            if nm is not None and (i - block_start) % nm[1] == 0:
                group = slice(i, i + nm[1])
                saliency = w[r, group] ** 2 / d2_ahead[group]
                pruned[r, i + np.argsort(saliency, kind="stable")[: nm[0]]] = True
            q = 0.0 if pruned[r, i] else w[r, i]
            w[r, i:] -= (w[r, i] - q) / h_inv[i, i] * h_inv[i, i:]
            w[r, i] = q  # exactly q (the update above leaves rounding noise)
        h_inv = h_inv - np.outer(h_inv[:, i], h_inv[i, :]) / h_inv[i, i]
    return w, pruned


def problem(seed, rows=6, cols=24, tokens=200, dead=()):
    rng = np.random.default_rng(seed)
    x = correlated_inputs(rng, tokens, cols)
    x[:, list(dead)] = 0.0
    w = rng.standard_normal((rows, cols))
    return w, hessian_of(x, n_seq=4), x


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**31),
    sparsity=st.sampled_from([0.0, 0.3, 0.5, 0.6, 0.7, 0.9]),
    blocksize=st.sampled_from([4, 8, 10, 24, 128]),
    selection=st.sampled_from(["count", "reference"]),
    dead=st.sampled_from([(), (3,), (0, 7, 23)]),
)
def test_unstructured_matches_oracle(seed, sparsity, blocksize, selection, dead):
    w, h, _ = problem(seed, dead=dead)
    new_w, pruned = sparsegpt_prune(w, h, sparsity, blocksize=blocksize, selection=selection)
    want_w, want_pruned = obs_oracle(w, h, sparsity, blocksize=blocksize, selection=selection)
    np.testing.assert_array_equal(pruned, want_pruned)
    np.testing.assert_allclose(new_w, want_w, rtol=0, atol=1e-10 * np.abs(w).max())
    assert np.all(new_w[pruned] == 0.0)


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**31),
    nm=st.sampled_from([(1, 2), (2, 4), (4, 8), (3, 4)]),
    blocksize=st.sampled_from([8, 16, 128]),
    dead=st.sampled_from([(), (5,)]),
)
def test_nm_matches_oracle(seed, nm, blocksize, dead):
    w, h, _ = problem(seed, cols=32, dead=dead)
    new_w, pruned = sparsegpt_prune(w, h, nm[0] / nm[1], nm=nm, blocksize=blocksize)
    want_w, want_pruned = obs_oracle(w, h, 0.0, nm=nm, blocksize=blocksize)
    np.testing.assert_array_equal(pruned, want_pruned)
    np.testing.assert_allclose(new_w, want_w, rtol=0, atol=1e-10 * np.abs(w).max())
    groups = pruned.reshape(w.shape[0], -1, nm[1]).sum(axis=2)
    assert np.all(groups == nm[0])
    assert np.all(new_w[pruned] == 0.0)


def test_nm_result_does_not_depend_on_blocksize():
    """N:M masks are chosen from the fully updated weights, so the lazy update is invisible."""
    w, h, _ = problem(11, rows=5, cols=64)
    results = [sparsegpt_prune(w, h, 0.5, nm=(2, 4), blocksize=b) for b in (4, 16, 64, 128)]
    for new_w, pruned in results[1:]:
        np.testing.assert_array_equal(pruned, results[0][1])
        np.testing.assert_allclose(new_w, results[0][0], rtol=0, atol=1e-11)


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.7])
def test_unstructured_counts_per_block(sparsity):
    """"count": exactly int(n·p) per block of n entries; "reference": one more (no ties here)."""
    w, h, _ = problem(3, rows=7, cols=40)
    for selection, extra in (("count", 0), ("reference", 1)):
        _, pruned = sparsegpt_prune(w, h, sparsity, blocksize=16, selection=selection)
        for start in range(0, 40, 16):
            block = pruned[:, start : start + 16]
            assert block.sum() == int(block.size * sparsity) + extra


def test_rows_are_not_balanced_in_unstructured_mode():
    """The reference's threshold is per block, not per row: rows end up with different counts."""
    rng = np.random.default_rng(0)
    w, h, _ = problem(4, rows=8, cols=32)
    w *= rng.uniform(0.1, 3.0, size=(8, 1))  # rows of very different scale
    _, pruned = sparsegpt_prune(w, h, 0.5)
    assert pruned.sum() == int(w.size * 0.5)
    assert len(set(pruned.sum(axis=1).tolist())) > 1


def test_score_uses_the_inverse_hessian_of_the_remaining_columns():
    w, h, _ = problem(5, cols=12, dead=(2,))
    score = sparsegpt_score(w, h)
    hd = h.copy()
    hd[2, 2] = 1.0
    hd += 0.01 * np.mean(np.diag(hd)) * np.eye(12)
    d2 = np.array([np.linalg.inv(hd[j:, j:])[0, 0] for j in range(12)])
    want = w**2 / d2[None, :]
    want[:, 2] = 0.0
    np.testing.assert_allclose(score, want, rtol=1e-10)
    u = inverse_hessian_factor(h)
    np.testing.assert_allclose(u.T @ u, np.linalg.inv(hd), rtol=1e-9, atol=1e-12)
    assert np.allclose(u, np.triu(u))


def test_obs_losses_add_up_to_the_damped_error():
    """Σ_i err_i² per row equals (w - ŵ)ᵀ (H + λI) (w - ŵ): each step is an exact OBS step."""
    w, h, _ = problem(6, rows=4, cols=20)
    u = inverse_hessian_factor(h)
    q, err, _ = prune_block(w.copy(), u, 0.6, None, "count")
    hd = h + 0.01 * np.mean(np.diag(h)) * np.eye(20)
    delta = w - q
    np.testing.assert_allclose((err**2).sum(axis=1), np.einsum("rc,cd,rd->r", delta, hd, delta), rtol=1e-9)


def magnitude_or_wanda_mask(score, sparsity):
    """Stand-in for scores.unstructured_mask: per row, prune the floor(C·p) smallest."""
    k = int(score.shape[1] * sparsity)
    order = np.argsort(score, axis=1, kind="stable")[:, :k]
    pruned = np.zeros(score.shape, dtype=bool)
    np.put_along_axis(pruned, order, True, axis=1)
    return pruned


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("sparsity", [0.5, 0.7])
def test_reconstruction_beats_masking_without_update(seed, sparsity):
    """‖(W − Ŵ) Xᵀ‖² of SparseGPT is below Wanda's and magnitude's at the same total sparsity."""
    w, h, x = problem(seed, rows=16, cols=64, tokens=400)
    new_w, pruned = sparsegpt_prune(w, h, sparsity, blocksize=32)
    assert pruned.sum() == int(w.size * sparsity)

    def error(w_hat):
        return float(np.sum(((w - w_hat) @ x.T) ** 2))

    wanda = magnitude_or_wanda_mask(np.abs(w) * np.sqrt((x**2).sum(axis=0))[None, :], sparsity)
    magnitude = magnitude_or_wanda_mask(np.abs(w), sparsity)
    assert error(new_w) < error(np.where(wanda, 0.0, w))
    assert error(new_w) < error(np.where(magnitude, 0.0, w))
    assert error(new_w) < error(np.where(pruned, 0.0, w))  # the update itself helps


def test_dtype_preserved_and_inputs_untouched():
    w, h, _ = problem(7, cols=16, dead=(1,))
    w32 = w.astype(np.float32)
    h_copy, w_copy = h.copy(), w32.copy()
    new_w, pruned = sparsegpt_prune(w32, h, 0.5, nm=(2, 4))
    assert new_w.dtype == np.float32 and pruned.dtype == bool
    np.testing.assert_array_equal(h, h_copy)
    np.testing.assert_array_equal(w32, w_copy)
    assert np.all(new_w[:, 1] == 0.0)  # dead column


def test_all_dead_hessian_and_zero_sparsity():
    w = np.random.default_rng(8).standard_normal((3, 8))
    new_w, pruned = sparsegpt_prune(w, np.zeros((8, 8)), 0.0)
    assert not pruned.any()
    assert np.all(new_w == 0.0)  # every column dead: weights zeroed, no update from them


def test_bad_inputs_raise():
    w, h, _ = problem(9, cols=16)
    bad = h.copy()
    bad[0, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        sparsegpt_prune(w, bad, 0.5)
    with pytest.raises(ValueError, match="sparsity"):
        sparsegpt_prune(w, h, 1.0)
    with pytest.raises(ValueError, match="multiples of M"):
        sparsegpt_prune(w, h, 0.5, nm=(2, 4), blocksize=6)
    with pytest.raises(ValueError, match="selection"):
        block_mask_unstructured(np.ones((2, 2)), 0.5, "per-row")
