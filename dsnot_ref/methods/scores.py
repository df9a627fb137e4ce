"""Pruning scores and the initial masks built from them (docs/dsnot.md §2).

Shape letters: R output rows, C input columns, N:M structured sparsity (N pruned in each
group of M consecutive columns). Masks are boolean ``pruned`` arrays (True = weight set to zero).

Scores are float64 whatever the weight dtype, so that ties and orderings do not depend on the
dtype the weights happen to be computed in; the official DSnoT variant asks for float32, the
released code's precision (``dtype``). All sorts are stable: among equal scores the lower
column index is pruned first.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import array_module, to_device
from ..errors import UserError


def check_sparsity(sparsity: float, nm: tuple[int, int] | None = None) -> None:
    """Raise UserError unless ``sparsity`` is in [0, 1) and, with N:M, equals N/M and N < M."""
    if not (isinstance(sparsity, (int, float)) and math.isfinite(sparsity) and 0 <= sparsity < 1):
        raise UserError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    if nm is None:
        return
    n, m = check_nm(nm)
    if not math.isclose(sparsity, n / m, rel_tol=0.0, abs_tol=1e-9):
        raise UserError(f"sparsity {sparsity} does not match {n}:{m} (which is {n / m:g})")


def check_nm(nm) -> tuple[int, int]:
    """Validate an N:M pair (0 <= N < M) and return it as two ints."""
    try:
        n, m = (int(v) for v in nm)
    except (TypeError, ValueError):
        raise UserError(f"N:M must be a pair of integers, got {nm!r}") from None
    if not (0 <= n < m):
        raise UserError(f"N:M needs 0 <= N < M, got {n}:{m}")
    return n, m


def magnitude_score(w, dtype=np.float64):
    """|W|, [R, C] -> [R, C] in ``dtype``. Small score = pruned first."""
    return abs(w.astype(dtype))


def wanda_score(w, seq_sq, dtype=np.float64):
    """Wanda score |W[r, j]| · sqrt(seq_sq[j]), [R, C], [C] -> [R, C] in ``dtype``.

    ``seq_sq[j] = (1/S) Σ_s Σ_t x[s,t,j]²`` is the squared L2 norm of input column j
    (per calibration sequence); its square root is Wanda's activation norm.
    """
    xp = array_module(w)
    seq_sq = to_device(seq_sq, xp).astype(dtype, copy=False)               # [C] on w's device
    if seq_sq.shape != (w.shape[1],):
        raise UserError(f"seq_sq has shape {seq_sq.shape}, expected ({w.shape[1]},) for weight {w.shape}")
    if bool(xp.any(seq_sq < 0)):
        raise UserError("seq_sq has negative entries; it is a sum of squares")
    return xp.abs(w.astype(dtype, copy=False)) * xp.sqrt(seq_sq)[None, :]   # [R, C] * [1, C]


def _check_score(score) -> None:
    xp = array_module(score)
    if score.ndim != 2:
        raise UserError(f"score must be a 2-D [R, C] array, got shape {score.shape}")
    if bool(xp.any(xp.isnan(score))):
        raise UserError("score contains NaN")


def n_pruned_per_row(n_cols: int, sparsity: float) -> int:
    """floor(C · p), computed as int(C * p) exactly as the released code does."""
    return int(n_cols * sparsity)


def unstructured_mask(score, sparsity: float):
    """Per row, prune the floor(C·p) smallest scores. [R, C] -> pruned [R, C] bool.

    Stable: among equal scores the lower column index is pruned first, exactly the first
    floor(C·p) entries of ``argsort(score, kind="stable")``. Found by partitioning (O(C) per
    row) since a mask needs the set, not its order.
    """
    check_sparsity(sparsity)
    _check_score(score)
    xp = array_module(score)
    n_rows, n_cols = score.shape
    n_prune = n_pruned_per_row(n_cols, sparsity)
    if n_prune == 0:
        return xp.zeros((n_rows, n_cols), dtype=xp.bool_)
    kth = xp.partition(score, n_prune - 1, axis=1)[:, n_prune - 1:n_prune]  # [R, 1] n-th smallest
    pruned = score <= kth
    if int(xp.count_nonzero(pruned)) != n_rows * n_prune:
        # a tie straddles the n-th place: of the tied scores prune the lowest columns
        below, tied = score < kth, score == kth
        n_tied_needed = n_prune - xp.sum(below, axis=1, keepdims=True)   # [R, 1]
        pruned = below | (tied & (xp.cumsum(tied, axis=1, dtype=xp.int64) <= n_tied_needed))
    return pruned


def nm_mask(score, n: int, m: int):
    """Per row and group of M consecutive columns, prune the N smallest. [R, C] -> [R, C] bool.

    C must be divisible by M. Stable: among equal scores the lower column is pruned first.
    """
    n, m = check_nm((n, m))
    _check_score(score)
    xp = array_module(score)
    n_rows, n_cols = score.shape
    if n_cols % m != 0:
        raise UserError(f"{n}:{m} sparsity needs the column count to be divisible by {m}, got C={n_cols}")
    groups = score.reshape(n_rows, n_cols // m, m)                        # [R, C/M, M]
    order = xp.argsort(groups, axis=2, kind="stable")[:, :, :n]           # [R, C/M, N]
    pruned = xp.zeros((n_rows, n_cols // m, m), dtype=xp.bool_)
    r = xp.arange(n_rows, dtype=xp.int64)[:, None, None]
    g = xp.arange(n_cols // m, dtype=xp.int64)[None, :, None]
    pruned[r, g, order] = True
    return pruned.reshape(n_rows, n_cols)


def initial_mask(score, sparsity: float, nm: tuple[int, int] | None = None):
    """The initial mask of a one-shot pruner: N:M when ``nm`` is given, else unstructured."""
    check_sparsity(sparsity, nm)
    if nm is None:
        return unstructured_mask(score, sparsity)
    return nm_mask(score, *nm)


__all__ = [
    "check_nm",
    "check_sparsity",
    "initial_mask",
    "magnitude_score",
    "n_pruned_per_row",
    "nm_mask",
    "unstructured_mask",
    "wanda_score",
]

