"""SparseGPT (Frantar & Alistarh, 2023): one-shot pruning with an OBS weight update.

SparseGPT prunes the columns of ``W [R, C]`` left to right. When column i is pruned (or kept),
the error it leaves, ``w_i - q_i``, is compensated on the columns not yet processed with the
Optimal Brain Surgeon update computed from the inverse Hessian of the layer's squared error,
``H = (2/S) Σ_s X_sᵀ X_s`` (``LinearStats.hessian``). After column i is processed it is removed
from the problem, and the inverse Hessian of the remaining columns is what the OBS formula needs
next. All those successive inverse Hessians are rows of one matrix: the upper Cholesky factor U
of ``(H + λI)⁻¹`` (U row i = row i of the inverse Hessian with columns < i eliminated, divided by
the square root of its diagonal). That is the whole trick of the paper; this module follows the
authors' ``fasterprune`` (IST-DASLab/sparsegpt, also copied in zyxxmu/DSnoT lib/sparsegpt.py):

- dead columns (``H[j, j] == 0``, an input that is always zero) get ``H[j, j] = 1`` and their
  weights set to 0 before anything else;
- damping ``λ = percdamp · mean(diag H)`` (percdamp 0.01);
- columns are processed in blocks of ``blocksize`` (128): inside a block the update is applied
  column by column, to the rest of the block at once; the block's accumulated errors update the
  columns to its right in one matrix product at the end of the block ("lazy batch" update, the
  same numbers as updating everything at every column);
- the mask is chosen per block from the OBS saliency ``W² / d²``, ``d = diag(U)``:
  * unstructured: at the start of each block, from the block's current (already updated)
    weights, over the whole ``[R, blocksize]`` block flattened: rows do NOT get equal counts.
    The reference takes the threshold ``t = sorted(score.flatten())[int(n · p)]`` and prunes
    ``score <= t``, i.e. ``int(n · p) + 1`` entries (more on ties) per block of n entries.
    ``selection="count"`` (our default) prunes exactly ``int(n · p)`` entries per block, the
    smallest by a stable sort of the row-major flattened block (ties: lower row, then lower
    column first); ``selection="reference"`` reproduces the ``<= t`` rule bit for bit.
  * N:M: when column i starts a group of M (i counted from the block start; ``blocksize`` must
    be a multiple of M), the N smallest ``W²/d²`` in each row of that group, from the weights
    as updated so far, are pruned (stable: ties to the lower column).

Everything is computed in float64; the result has the input's dtype. Pruned weights are exactly
zero; kept weights are changed by the update.
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module

SELECTIONS = ("count", "reference")


def dead_columns(hessian):
    """``[C, C] -> [C]`` bool: the columns whose input is always zero (``H[j, j] == 0``)."""
    xp = array_module(hessian)
    return xp.diagonal(hessian) == 0


def damped_hessian(hessian, percdamp: float = 0.01):
    """``H [C, C] -> H + λI`` in float64, dead diagonal entries set to 1 first.

    ``λ = percdamp · mean(diag H)`` is taken after the dead entries are set to 1, as in the
    reference. Raises ValueError when H has non-finite entries: with 1% damping a finite
    positive semi-definite H always has a Cholesky factor in float64.
    """
    xp = array_module(hessian)
    h = xp.array(hessian, dtype=xp.float64)  # a copy: the caller's statistics stay untouched
    if not bool(xp.all(xp.isfinite(h))):
        raise ValueError("SparseGPT: the Hessian has non-finite entries (NaN/inf activations?)")
    columns = xp.arange(h.shape[0])
    dead = dead_columns(h)
    h[columns[dead], columns[dead]] = 1.0
    damp = percdamp * float(xp.mean(xp.diagonal(h)))
    h[columns, columns] += damp
    return h


def inverse_hessian_factor(hessian, percdamp: float = 0.01):
    """``H [C, C] -> U [C, C]``: upper Cholesky factor of ``(H + λI)⁻¹`` (``Uᵀ U = (H + λI)⁻¹``).

    ``U[i, i:] = Hinv_i[i, i:] / sqrt(Hinv_i[i, i])`` where ``Hinv_i`` is the inverse of the
    damped Hessian restricted to columns ``i:`` -- the OBS inverse Hessian after columns ``< i``
    have been eliminated. Computed as the reference does: Cholesky, inverse, upper Cholesky.
    """
    xp = array_module(hessian)
    h = damped_hessian(hessian, percdamp)
    lower = _cholesky(h, "H + λI")
    n = h.shape[0]
    # L⁻¹ through a general solve: NumPy has no triangular solver and CuPy mirrors this call.
    lower_inv = xp.linalg.solve(lower, xp.eye(n, dtype=xp.float64))
    h_inv = lower_inv.T @ lower_inv  # (L Lᵀ)⁻¹ = L⁻ᵀ L⁻¹
    h_inv = (h_inv + h_inv.T) / 2  # exact symmetry for the second factorisation
    return _cholesky(h_inv, "(H + λI)⁻¹").T  # upper factor = transpose of the lower one


def _cholesky(a, what: str):
    """Lower Cholesky factor, with one clear error on failure (CuPy returns NaN instead)."""
    xp = array_module(a)
    try:
        lower = xp.linalg.cholesky(a)
    except np.linalg.LinAlgError as exc:
        raise ValueError(f"SparseGPT: Cholesky factorisation of {what} failed ({exc})") from None
    if not bool(xp.all(xp.isfinite(lower))):
        raise ValueError(f"SparseGPT: Cholesky factorisation of {what} failed (non-finite)")
    return lower


def sparsegpt_score(w, hessian, percdamp: float = 0.01):
    """``W [R, C], H [C, C] -> score [R, C]`` float64: the OBS saliency ``W² / d²``.

    ``d = diag(U)``, U from ``inverse_hessian_factor``; dead columns score 0 (weight set to 0).
    This is the score DSnoT uses for a SparseGPT initial mask (no weight update).
    """
    xp = array_module(w, hessian)
    w64 = xp.array(w, dtype=xp.float64)
    w64[:, dead_columns(hessian)] = 0.0
    d = xp.diagonal(inverse_hessian_factor(hessian, percdamp))  # [C]
    return w64**2 / d[None, :] ** 2


def block_mask_unstructured(score, sparsity: float, selection: str = "count"):
    """``score [R, n] -> pruned [R, n]``: one threshold over the whole block (not per row).

    ``k = int(R · n · sparsity)`` as in the reference. "count": exactly the k smallest of the
    row-major flattened block (stable sort). "reference": everything ``<=`` the (k+1)-th
    smallest, which is k + 1 entries, more on ties.
    """
    xp = array_module(score)
    flat = score.reshape(-1)  # [R·n], row-major
    k = int(flat.size * sparsity)
    order = xp.argsort(flat, kind="stable")
    if selection == "count":
        pruned = xp.zeros(flat.size, dtype=xp.bool_)
        pruned[order[:k]] = True
    elif selection == "reference":
        pruned = flat <= flat[order[k]]
    else:
        raise ValueError(f"SparseGPT: unknown selection {selection!r}; use one of {SELECTIONS}")
    return pruned.reshape(score.shape)


def group_mask_nm(score, n: int):
    """``score [R, M] -> pruned [R, M]``: the n smallest of each row (stable, lower column first)."""
    xp = array_module(score)
    order = xp.argsort(score, axis=1, kind="stable")[:, :n]  # [R, n]
    pruned = xp.zeros(score.shape, dtype=xp.bool_)
    pruned[xp.arange(score.shape[0])[:, None], order] = True
    return pruned


def prune_block(w_block, u_block, sparsity: float, nm, selection: str):
    """OBS on one column block: ``W [R, b], U [b, b] -> (Q [R, b], Err [R, b], pruned [R, b])``.

    Column i: ``q = w_i`` with pruned rows set to 0; ``err = (w_i - q) / U[i, i]``;
    ``W[:, i:] -= err ⊗ U[i, i:]`` (the OBS update of the rest of the block). ``Err`` is
    returned for the lazy update of the columns right of the block.
    """
    xp = array_module(w_block)
    w1 = w_block.copy()
    rows, count = w1.shape
    d = xp.diagonal(u_block)  # [b]
    quantised = xp.zeros_like(w1)
    errors = xp.zeros_like(w1)
    if nm is None:
        pruned = block_mask_unstructured(w1**2 / d[None, :] ** 2, sparsity, selection)
    else:
        pruned = xp.zeros((rows, count), dtype=xp.bool_)
    for i in range(count):
        if nm is not None and i % nm[1] == 0:
            group = slice(i, i + nm[1])
            pruned[:, group] = group_mask_nm(w1[:, group] ** 2 / d[None, group] ** 2, nm[0])
        q = xp.where(pruned[:, i], 0.0, w1[:, i])  # [R]
        quantised[:, i] = q
        err = (w1[:, i] - q) / u_block[i, i]  # [R]
        w1[:, i:] -= err[:, None] * u_block[None, i, i:]  # [R, 1] * [1, b-i]
        errors[:, i] = err
    return quantised, errors, pruned


def sparsegpt_prune(
    w,
    hessian,
    sparsity: float,
    nm: tuple[int, int] | None = None,
    blocksize: int = 128,
    percdamp: float = 0.01,
    selection: str = "count",
):
    """``W [R, C], H [C, C] -> (new_w [R, C] in W's dtype, pruned [R, C] bool)``.

    ``sparsity`` in [0, 1) (ignored for N:M, where each group of M loses exactly N);
    ``nm = (N, M)`` prunes N of every M consecutive columns. See the module docstring for the
    per-block mask rules and ``selection``.
    """
    xp = array_module(w, hessian)
    rows, cols = w.shape
    _check_arguments(cols, hessian, sparsity, nm, blocksize, selection)
    w64 = xp.array(w, dtype=xp.float64)
    w64[:, dead_columns(hessian)] = 0.0
    u = inverse_hessian_factor(hessian, percdamp)  # [C, C] upper
    pruned = xp.zeros((rows, cols), dtype=xp.bool_)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        q, err, block_pruned = prune_block(w64[:, i1:i2], u[i1:i2, i1:i2], sparsity, nm, selection)
        w64[:, i1:i2] = q
        pruned[:, i1:i2] = block_pruned
        w64[:, i2:] -= err @ u[i1:i2, i2:]  # [R, b] @ [b, C - i2]: the lazy OBS update
    return w64.astype(w.dtype), pruned


def _check_arguments(cols, hessian, sparsity, nm, blocksize, selection):
    """Programming errors (the pipeline validates user settings before this): ValueError."""
    if tuple(hessian.shape) != (cols, cols):
        raise ValueError(f"SparseGPT: Hessian shape {tuple(hessian.shape)} != ({cols}, {cols})")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"SparseGPT: sparsity {sparsity} not in [0, 1)")
    if selection not in SELECTIONS:
        raise ValueError(f"SparseGPT: unknown selection {selection!r}; use one of {SELECTIONS}")
    if blocksize < 1:
        raise ValueError(f"SparseGPT: blocksize {blocksize} must be positive")
    if nm is not None:
        n, m = nm
        if not 0 < n < m:
            raise ValueError(f"SparseGPT: N:M = {n}:{m} needs 0 < N < M")
        if cols % m or blocksize % m:
            raise ValueError(f"SparseGPT: {cols} columns and blocksize {blocksize} must be multiples of M = {m}")
