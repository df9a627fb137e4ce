"""The calibration Gram matrix and the one quadratic form every error in methods/ is built from.

G = Σ_tokens x xᵀ [C, C] (x² · tokens units; ``LinearStats.hessian`` is (2/S) G). For a row's
pruned part d_r (W where pruned, 0 elsewhere), u_r = G d_r and E_r = d_rᵀ G d_r = Σ_t (x_t · d_r)²,
the row's squared output error on the calibration tokens. The exact DSnoT variant, SparseSwaps
and the reconstruction-error diagnostics all use ``gram_products``.
"""

from __future__ import annotations

from ..backend import array_module


def gram_from_hessian(hessian, n_seq: int):
    """G = Σ_tokens x xᵀ from ``LinearStats.hessian`` = (2/S) Σ x xᵀ: [C, C] float64."""
    xp = array_module(hessian)
    return xp.asarray(hessian, dtype=xp.float64) * (n_seq / 2.0)


def pruned_part(w, pruned):
    """d = W where pruned, 0 elsewhere: [.., C] float64 (dense minus sparse)."""
    xp = array_module(w)
    return xp.where(pruned, xp.asarray(w, dtype=xp.float64), 0.0)


def gram_products(d, gram):
    """u = G d and E = dᵀ G d for every row: [.., C], [C, C] -> (u [.., C], E [..])."""
    xp = array_module(d, gram)
    u = d @ gram                                                          # [.., C] @ [C, C]
    return u, xp.sum(d * u, axis=-1)


def row_squared_errors(w, pruned, gram):
    """E_r = d_rᵀ G d_r of a mask. [R, C], [R, C], [C, C] -> [R] float64."""
    return gram_products(pruned_part(w, pruned), gram)[1]
