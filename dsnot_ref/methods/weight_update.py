"""The optimal kept weights for a fixed mask: one least-squares solve per row (docs/weight_update.md).

A mask-only method leaves the kept weights as they were. For a fixed mask the best kept weights
have a closed form. Row r of ``W [R, C]`` with kept columns S and pruned columns P, dense
weights w, and the calibration Gram matrix G = Σ_tokens x xᵀ [C, C]: the row's output error
‖X(w − ŵ)‖² = (w − ŵ)ᵀ G (w − ŵ), minimised over ŵ with ŵ_P = 0, is reached at

    ŵ_S = w_S + (G_SS)⁻¹ G_SP w_P,        ŵ_P = 0.

Damping, as SparseGPT damps its Hessian (``sparsegpt.damped_hessian``: dead diagonal entries
set to 1, then λ = percdamp · mean(diag)) turns G into G + λI. G_SP is unchanged by it (S and
P are disjoint), so the damped solution is

    ŵ_S = w_S + (G_SS + λI)⁻¹ G_SP w_P,

the exact minimiser of ‖X(w − ŵ)‖² + λ‖w − ŵ‖² (ŵ_P = 0): a ridge pull toward the dense
weights, which makes every G_SS + λI positive definite (a dead input keeps its weight). It
never raises the calibration error above the mask alone's: the mask alone (ŵ_S = w_S) is one
candidate of the damped problem, so E(ŵ) + λ‖ŵ_S − w_S‖² ≤ E(mask alone). ŵ is the same for
any positive multiple of G, so the pipeline passes ``LinearStats.hessian`` = (2/S) G as it is.

``update_row`` / ``update_plain`` is the plain form, one Cholesky solve per row, the spec in
code; ``update_grouped`` solves all rows at once, rows grouped by their number of kept weights
(one gather and one right-hand-side product per group and block of rows, then a Cholesky solve
per row on NumPy or one batched solve on CuPy), tested equal to the plain form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack

from ..backend import array_module
from ..errors import UserError
from ..threads import chunk_workers, ordered_map, usable_cores
from .gram import pruned_part
from .sparsegpt import damped_hessian

MODES = ("none", "exact")
BLOCK_BYTES = 64 * 2**20  # target size of one [rows, k, k] float64 stack of G_SS


@dataclass(frozen=True)
class WeightUpdateSettings:
    mode: str = "none"  # "none": kept weights unchanged; "exact": ŵ_S = w_S + (G_SS + λI)⁻¹ G_SP w_P
    percdamp: float = 0.01  # λ = percdamp · mean(diag G), SparseGPT's damping

    def __post_init__(self):
        if self.mode not in MODES:
            raise UserError(f"unknown weight update {self.mode!r}; choose one of {', '.join(MODES)}")
        if not (np.isfinite(self.percdamp) and 0.0 < self.percdamp <= 1.0):
            raise UserError(f"weight update damping must be in (0, 1], got {self.percdamp}")


# --- plain form: one row, one Cholesky solve ---------------------------------------------------


def update_row(w, pruned, damped):
    """w [C], pruned [C] bool, damped = G + λI [C, C] -> ŵ [C] float64 (ŵ_P = 0)."""
    w = np.asarray(w, dtype=np.float64)
    kept, cut = np.flatnonzero(~pruned), np.flatnonzero(pruned)  # S [k], P [C − k]
    out = np.where(pruned, 0.0, w)
    if kept.size == 0 or cut.size == 0:  # nothing kept, or nothing pruned: ŵ_S = w_S
        return out
    g_ss = damped[np.ix_(kept, kept)]  # [k, k]
    rhs = damped[np.ix_(kept, cut)] @ w[cut]  # [k, C − k] @ [C − k] -> [k]: G_SP w_P
    lower = np.linalg.cholesky(g_ss)  # G_SS + λI = L Lᵀ
    delta = np.linalg.solve(lower.T, np.linalg.solve(lower, rhs))  # [k]
    out[kept] += delta
    return out


def update_plain(w, pruned, hessian, percdamp: float = 0.01):
    """``update_row`` on every row (NumPy): W [R, C], pruned [R, C], H [C, C] -> Ŵ [R, C] float64."""
    check_problem(w, pruned, hessian)
    damped = damped_hessian(np.asarray(hessian), percdamp)
    return np.stack([update_row(w[r], pruned[r], damped) for r in range(w.shape[0])])


# --- fast form: rows grouped by their number of kept weights -----------------------------------


def update_grouped(w, pruned, hessian, percdamp: float = 0.01, block_bytes: int = BLOCK_BYTES):
    """All rows at once: W [R, C], pruned [R, C], H [C, C] -> Ŵ [R, C] float64.

    Rows with the same k = |S| are solved together, in blocks of n rows (n · k² doubles about
    ``block_bytes`` shared by the threads): gather the n matrices G_SS + λI [n, k, k] and
    right-hand sides (G d_r)_S = G_SP w_P [n, k] (d_r = w_r where pruned), then ``spd_solve``.
    Rows are independent, so the blocks are solved on threads of their own (NumPy; one at a
    time on a GPU), each with the BLAS on one thread (dsnot_ref/threads.py).
    """
    check_problem(w, pruned, hessian)
    xp = array_module(w, hessian)
    damped = damped_hessian(hessian, percdamp)  # [C, C] float64
    w64 = xp.asarray(w, dtype=xp.float64)
    pruned = xp.asarray(pruned, dtype=xp.bool_)
    out = xp.where(pruned, 0.0, w64)  # [R, C]
    n_kept = xp.sum(~pruned, axis=1)  # [R]
    n_cols = w.shape[1]
    threads = usable_cores() if xp is np else 1
    blocks = []  # (k, rows [n]) with n · k² · 8 bytes ≈ block_bytes / threads
    for k in sorted({int(v) for v in n_kept.tolist()} - {0, n_cols}):  # all pruned / none pruned: ŵ = w masked
        rows = xp.nonzero(n_kept == k)[0]  # [n_k]
        height = max(1, block_bytes // (8 * k * k * threads))
        blocks += [(k, rows[start : start + height]) for start in range(0, rows.shape[0], height)]

    def solve(item):
        k, block = item
        return block, solve_block(w64[block], pruned[block], damped, k)

    with chunk_workers(min(threads, len(blocks))) as workers:
        for block, change in ordered_map(solve, blocks, workers):
            out[block] += change
    return out


def solve_block(w, pruned, damped, k: int):
    """n rows with k kept weights each: -> the change of every weight [n, C] (0 where pruned)."""
    xp = array_module(w)
    n, n_cols = w.shape
    kept = xp.nonzero(~pruned)[1].reshape(n, k)  # [n, k] ascending columns of S per row
    g_ss = damped[kept[:, :, None], kept[:, None, :]]  # [n, k, k]
    u = pruned_part(w, pruned) @ damped  # [n, C] @ [C, C]: G d_r, whose S entries are G_SP w_P
    rows = xp.arange(n)[:, None]  # [n, 1]
    rhs = u[rows, kept]  # [n, k]
    delta = spd_solve(g_ss, rhs, lambda i: damped[xp.ix_(kept[i], kept[i])])  # [n, k, k] \ [n, k] -> [n, k]
    change = xp.zeros((n, n_cols), dtype=xp.float64)
    change[rows, kept] = delta
    return change


def spd_solve(a, b, matrix_of):
    """x with a_i x_i = b_i for symmetric positive definite a_i: a [n, k, k], b [n, k] -> x [n, k].

    On NumPy one LAPACK Cholesky solve (dposv) per matrix, in place (``a`` is overwritten; a
    symmetric a_i is its own transpose, so it is handed over in Fortran order without a copy),
    half the flops of the batched LU solve NumPy offers (it has no batched Cholesky solve). A
    matrix that rounding left not quite positive definite is solved by LU on ``matrix_of(i)``,
    a fresh copy of a_i. On CuPy one batched LU solve.
    """
    xp = array_module(a, b)
    if xp is not np:
        return xp.linalg.solve(a, b[:, :, None])[:, :, 0]
    x = np.empty_like(b)
    for i in range(a.shape[0]):
        _, x[i], info = lapack.dposv(a[i].T, b[i], lower=1, overwrite_a=1)
        if info != 0:
            x[i] = np.linalg.solve(matrix_of(i), b[i])
    return x


def check_problem(w, pruned, hessian):
    """Shapes and finite weights; UserError naming the problem (a non-finite H: damped_hessian)."""
    n_rows, n_cols = w.shape
    if tuple(pruned.shape) != (n_rows, n_cols):
        raise UserError(f"weight update: mask has shape {tuple(pruned.shape)}, weight {tuple(w.shape)}")
    if tuple(hessian.shape) != (n_cols, n_cols):
        raise UserError(f"weight update: Hessian has shape {tuple(hessian.shape)}, expected ({n_cols}, {n_cols})")
    xp = array_module(w)
    if not bool(xp.all(xp.isfinite(w))):
        raise UserError("weight update: the weight has NaN or inf entries")


def exact_update(weight, pruned, hessian, settings: WeightUpdateSettings):
    """Entry point for ``prune_linear``: the dense weight [R, C] and its final mask -> Ŵ [R, C]
    in the weight's dtype, pruned entries exactly zero."""
    new = update_grouped(weight, pruned, hessian, settings.percdamp)
    xp = array_module(new)
    return xp.where(pruned, 0.0, new).astype(weight.dtype)


__all__ = ["MODES", "WeightUpdateSettings", "exact_update", "update_grouped", "update_plain", "update_row"]
