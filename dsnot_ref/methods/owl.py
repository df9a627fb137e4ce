"""OWL layerwise sparsity (Yin et al., ICML 2024, arXiv 2310.05175; docs/owl.md): pure math.

OWL gives decoder layer ℓ its own sparsity from the share of outlier Wanda scores in it. Letters:
L decoder layers, R_k × C_k the shape of sublayer k of a layer, n_ℓ the number of linear weights
of layer ℓ, p the requested (overall) sparsity, M the outlier multiple, λ the band half-width.

1. ``outlier_ratio``: D_ℓ = #{scores > M · mean} / #scores over all sublayers of layer ℓ together.
2. ``band_offsets``: u_ℓ = 2λ (D_ℓ − min D) / (max D − min D), in [0, 2λ]: the layer with the most
   outliers gets the largest offset, hence the lowest sparsity.
3. ``released_sparsities``: p_ℓ = p − (u_ℓ − mean_ℓ u), centred by layer count, as the released
   code does (lib/prune_all.py of luuyin/OWL); a layer at or below 0 gets 0.01, as there.
   ``exact_sparsities``: p_ℓ = clip(p + c − u_ℓ, 0, cap) with c chosen so that the
   parameter-weighted mean Σ n_ℓ p_ℓ / Σ n_ℓ equals p exactly, clipping included.

Every decoder layer of a LLaMA or OPT model has the same n_ℓ, so the two centrings agree unless a
layer is clipped; see docs/owl.md for what else differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..backend import array_module
from ..errors import UserError

BUDGETS = ("released", "exact")
RELEASED_FLOOR = 0.01  # the released code's sparsity for a layer whose OWL sparsity is <= 0
EXACT_CAP = 0.99  # the exact budget's largest layer sparsity (1 − the released floor)


@dataclass(frozen=True)
class OwlSettings:
    m: float = 5.0  # M: a score is an outlier above M times its layer's mean score
    lam: float = 0.08  # λ: the layer sparsities spread over a band of width 2λ
    budget: str = "released"  # "released" (centred by layer count) | "exact" (by parameters)

    def __post_init__(self):
        if not (np.isfinite(self.m) and self.m > 0):
            raise UserError(f"OWL's M (--owl-m) must be a positive number, got {self.m!r}")
        if not (np.isfinite(self.lam) and 0 <= self.lam < 0.5):
            raise UserError(f"OWL's lambda (--owl-lambda) must be in [0, 0.5), got {self.lam!r}")
        if self.budget not in BUDGETS:
            raise UserError(f"unknown OWL budget {self.budget!r}; choose one of {', '.join(BUDGETS)}")


def outlier_ratio(scores: Sequence, m: float) -> float:
    """Share of one layer's scores above M times their mean: [R_k, C_k] for each k -> float in [0, 1].

    D = #{a > M·ā} / #a over the concatenation a of every sublayer's scores, ā its mean (so a
    large sublayer weighs by its size). The released code's ``check_outlier_mean`` returns
    100·D (a percentage); the allocation below is the same for either.
    """
    if not scores:
        raise ValueError("a layer needs at least one sublayer's scores")
    total = sum(float(array_module(s).sum(s, dtype=np.float64)) for s in scores)
    count = sum(int(s.size) for s in scores)
    threshold = m * (total / count)
    above = sum(int(array_module(s).count_nonzero(s > threshold)) for s in scores)
    return above / count


def band_offsets(ratios, lam: float) -> np.ndarray:
    """u_ℓ = 2λ (D_ℓ − min D) / (max D − min D): [L] -> [L] float64 in [0, 2λ].

    All ratios equal: zeros (the released code divides 0 by 0 there and gets NaN).
    """
    d = np.asarray(ratios, dtype=np.float64)  # [L]
    spread = d.max() - d.min()
    if spread == 0:
        return np.zeros_like(d)
    return (d - d.min()) / spread * (2.0 * lam)


def released_sparsities(ratios, sparsity: float, lam: float) -> np.ndarray:
    """The released allocation: [L] -> [L] float64, p_ℓ = p − (u_ℓ − mean u), floored at 0.01.

    The released code computes densities 1 − p_ℓ = u_ℓ − mean(u) + (1 − p) and prunes
    1 − density; the mean is over layers (not parameters). UserError when a layer would reach
    sparsity 1 (the released code would prune that layer entirely).
    """
    u = band_offsets(ratios, lam)  # [L]
    layer = sparsity - (u - u.mean())
    layer = np.where(layer <= 0, RELEASED_FLOOR, layer)
    if np.any(layer >= 1):
        raise UserError(f"OWL gives a layer sparsity {layer.max():.4f} >= 1 at sparsity {sparsity} "
                        f"and lambda {lam}; lower --owl-lambda or --sparsity-ratio")
    return layer


def exact_sparsities(ratios, sparsity: float, lam: float, n_params, cap: float = EXACT_CAP) -> np.ndarray:
    """The parameter-weighted allocation: [L], [L] -> [L] float64 in [0, cap].

    p_ℓ = clip(p + c − u_ℓ, 0, cap) with the one shift c that makes Σ n_ℓ p_ℓ = p Σ n_ℓ
    (``budget_shift``): without clipping c = Σ n_ℓ u_ℓ / Σ n_ℓ; a clipped layer's share moves
    to the others.
    """
    if not 0 <= sparsity <= cap:
        raise UserError(f"OWL's exact budget needs a sparsity in [0, {cap}], got {sparsity}")
    u = band_offsets(ratios, lam)  # [L]
    base = sparsity - u  # [L]
    c = budget_shift(base, np.asarray(n_params, dtype=np.float64), sparsity, cap)
    return np.clip(base + c, 0.0, cap)


def clipped_budget(base, n_params, c: float, cap: float) -> float:
    """g(c) = Σ_ℓ n_ℓ clip(base_ℓ + c, 0, cap): weights pruned for a shift c (non-decreasing in c)."""
    return float(np.sum(n_params * np.clip(base + c, 0.0, cap)))


def budget_shift(base, n_params, sparsity: float, cap: float) -> float:
    """The shift c with g(c) = p Σ n_ℓ: [L], [L] -> float.

    g is continuous and piecewise linear with breakpoints −base_ℓ and cap − base_ℓ; between two
    consecutive breakpoints its slope is the size of the layers not clipped there, so c is found
    exactly by locating the segment that contains the target and solving the line.
    """
    target = sparsity * float(np.sum(n_params))
    points = np.sort(np.concatenate([-base, cap - base]), kind="stable")  # [2L]
    values = np.array([clipped_budget(base, n_params, b, cap) for b in points])  # [2L], non-decreasing
    k = int(np.searchsorted(values, target, side="left"))
    if k == 0:
        return float(points[0])
    if k == len(points):
        return float(points[-1])
    lo, hi = points[k - 1], points[k]
    rise = values[k] - values[k - 1]
    return float(lo + (target - values[k - 1]) / rise * (hi - lo)) if rise > 0 else float(lo)


def layer_sparsities(ratios, sparsity: float, settings: OwlSettings, n_params) -> np.ndarray:
    """Per-layer sparsities of ``settings.budget``: ratios [L], n_params [L] -> [L] float64."""
    if settings.budget == "exact":
        return exact_sparsities(ratios, sparsity, settings.lam, n_params)
    return released_sparsities(ratios, sparsity, settings.lam)


__all__ = [
    "BUDGETS",
    "OwlSettings",
    "band_offsets",
    "budget_shift",
    "exact_sparsities",
    "layer_sparsities",
    "outlier_ratio",
    "released_sparsities",
]
