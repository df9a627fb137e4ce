"""Pruning one weight matrix: the single interface the pipeline calls (docs/design.md).

``prune_linear(weight [R, C], stats, spec)`` builds the initial mask of ``spec.initial_method``
(or of ``spec.method`` for the one-shot baselines), runs the spec's refiner when asked, and
reports JSON-ready diagnostics; ``statistics_needed(spec)`` tells the pipeline what to gather.
Pure math: arrays and frozen dataclasses in, new arrays out.

Modules: ``contract`` (the refiners' problem, result and statistics needs), ``refiners`` (the
one registry), ``dsnot/`` (DSnoT: ``per_row.py`` first, the method in plain Python; then each
variant's fast form beside its plain one), ``swaps`` (SparseSwaps), ``scores`` (magnitude /
Wanda scores, unstructured and N:M masks), ``sparsegpt``, ``gram`` (G = Σ x xᵀ and its
quadratic forms), ``selection`` (fast stable selection), ``owl`` (layerwise sparsity).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import array_module, to_device
from ..errors import UserError
from .contract import Refiner, StatsNeeds, layer_problem
from .dsnot.common import DSnoTSettings
from .dsnot.per_row import contributions, row_errors
from .gram import gram_products, pruned_part
from .refiners import make_refiner
from .scores import check_nm, check_sparsity, initial_mask, magnitude_score, wanda_score
from .swaps import SwapSettings
from .weight_update import WeightUpdateSettings, exact_update

METHODS = ("dense", "magnitude", "wanda", "sparsegpt", "dsnot", "swaps")
INITIAL_METHODS = ("magnitude", "wanda", "sparsegpt")
# what each one-shot pruner reads besides the weight: SparseGPT inverts the Hessian, so float64 products
INITIAL_NEEDS = {"magnitude": StatsNeeds(), "wanda": StatsNeeds(), "sparsegpt": StatsNeeds(gram="float64")}
UPDATE_GRAM = "float64"   # the weight update (weight_update.py) solves with G


@dataclass(frozen=True)
class PruneSpec:
    method: str                          # "dense" | "magnitude" | "wanda" | "sparsegpt" | "dsnot" | "swaps"
    sparsity: float                      # in [0, 1); must equal N/M when nm is set
    nm: tuple[int, int] | None = None
    initial_method: str = "wanda"        # for method="dsnot" and "swaps"
    dsnot: DSnoTSettings = field(default_factory=DSnoTSettings)
    swaps: SwapSettings = field(default_factory=SwapSettings)   # method="swaps" (SparseSwaps)
    weight_update: WeightUpdateSettings = field(default_factory=WeightUpdateSettings)  # after the final mask

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"unknown pruning method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.initial_method not in INITIAL_METHODS:
            raise UserError(f"unknown initial method {self.initial_method!r}; "
                            f"choose one of {', '.join(INITIAL_METHODS)}")
        if self.nm is not None:
            object.__setattr__(self, "nm", check_nm(self.nm))   # normalise to a tuple of ints
        if self.method != "dense":
            check_sparsity(self.sparsity, self.nm)
        elif self.weight_update.mode != "none":
            raise UserError("a weight update needs a pruning method, not dense")


@dataclass(frozen=True)
class PruneResult:
    weight: np.ndarray      # [R, C], same dtype as the input (SparseGPT changes kept values)
    pruned: np.ndarray      # [R, C] bool, True = weight is zero
    diagnostics: dict       # JSON-ready scalars
    initial: np.ndarray     # [R, C] bool, the one-shot pruner's mask (before any refiner)


def refiner_of(spec: PruneSpec) -> Refiner | None:
    """The refiner ``spec`` runs after its initial mask (from the registry), None for the
    one-shot methods."""
    if spec.method == "dsnot":
        return make_refiner(spec.dsnot.variant, spec.dsnot)
    if spec.method == "swaps":
        return make_refiner("swaps", spec.swaps)
    return None


def statistics_needed(spec: PruneSpec) -> StatsNeeds:
    """What the pipeline must gather for ``spec``: its refiner's needs and its initial pruner's
    (a SparseGPT initial mask adds a float64 G); the one-shot methods their own; the weight
    update on the final mask solves with the float64 G."""
    refiner = refiner_of(spec)
    if refiner is None:
        needs = INITIAL_NEEDS.get(spec.method, StatsNeeds())
    else:
        needs = refiner.needs.with_gram(INITIAL_NEEDS[spec.initial_method].gram)
    return needs if spec.weight_update.mode == "none" else needs.with_gram(UPDATE_GRAM)


def output_energy(w, hessian) -> float:
    """Σ_r w_rᵀ H w_r = ‖W X‖² (times 2/S): the denominator of the relative errors below."""
    xp = array_module(w)
    h = to_device(hessian, xp).astype(xp.float64, copy=False)            # [C, C]
    return float(xp.sum(gram_products(w.astype(xp.float64), h)[1]))


def reconstruction_error(w, pruned, hessian, dense_energy: float | None = None) -> float:
    """Relative calibration reconstruction error of a mask (weights otherwise unchanged).

    ‖(W − W⊙keep) X‖² / ‖W X‖² = Σ_r d_rᵀ H d_r / Σ_r w_rᵀ H w_r, with d = W where pruned,
    0 elsewhere, and H = (2/S) Σ_s X_sᵀ X_s [C, C] (its scale cancels). 0 for a dense layer
    with no output (all-zero denominator). ``dense_energy`` (``output_energy(w, hessian)``)
    may be passed to avoid recomputing the denominator for several masks of one layer.
    """
    xp = array_module(w)
    return weight_error(w, xp.where(pruned, xp.zeros((), dtype=w.dtype), w), hessian, dense_energy)


def weight_error(w_dense, w_sparse, hessian, dense_energy: float | None = None) -> float:
    """Like ``reconstruction_error`` for a changed weight (SparseGPT): ‖(W − Ŵ)X‖² / ‖WX‖²."""
    xp = array_module(w_dense)
    h = to_device(hessian, xp).astype(xp.float64, copy=False)            # [C, C]
    d = w_dense.astype(xp.float64) - w_sparse.astype(xp.float64)         # [R, C]
    dense = output_energy(w_dense, h) if dense_energy is None else dense_energy
    return float(xp.sum(gram_products(d, h)[1])) / dense if dense > 0 else 0.0


def initial_score(weight, stats, method: str, dtype=np.float64):
    """Score of a one-shot pruner: small = pruned first. [R, C] -> [R, C] in ``dtype`` (float32
    for the official DSnoT variant, as the released code; SparseGPT's is always float64).

    "sparsegpt" is SparseGPT's OBS saliency W² / d² from the layer Hessian (the mask only:
    no weight update), used as DSnoT's initial mask as the spec asks.
    """
    if method == "magnitude":
        return magnitude_score(weight, dtype)
    if method == "wanda":
        return wanda_score(weight, stats.seq_sq, dtype)
    if method == "sparsegpt":
        if stats.hessian is None:
            raise UserError("a SparseGPT initial mask needs the Hessian statistics (LinearStats.hessian)")
        from .sparsegpt import sparsegpt_score  # noqa: PLC0415 - lazy: optional module

        return sparsegpt_score(weight, stats.hessian)
    raise UserError(f"unknown initial method {method!r}")


def pruned_fraction(pruned) -> float:
    """Fraction of True entries, counted where the mask lives (no copy to the host); the same
    float as NumPy's ``pruned.mean()``. 0 for an empty mask."""
    xp = array_module(pruned)
    return int(xp.count_nonzero(pruned)) / pruned.size if pruned.size else 0.0


def mean_abs_eps(weight, stats, pruned) -> float:
    """Mean over rows of |ε| = |Σ_{j pruned} W[r, j]·seq_sum[j]| (DSnoT's row error) of a mask."""
    xp = array_module(weight)
    eps = row_errors(contributions(weight, stats.seq_sum), pruned)       # [R]
    return float(xp.mean(xp.abs(eps))) if eps.size else 0.0


def prune_linear(weight, stats, spec: PruneSpec, *, apply_refiner: bool = True) -> PruneResult:
    """Prune one linear layer's weight [R, C] with ``spec``; ``stats`` is its LinearStats.

    dense: no mask. magnitude / wanda: initial mask, weights zeroed. sparsegpt: SparseGPT with
    its weight update. dsnot / swaps: initial mask of ``spec.initial_method``, then the refiner
    (``refiner_of``) unless ``apply_refiner`` is False (the pipeline's skip_layer rule).
    ``spec.weight_update`` "exact": then the kept weights are replaced by the least-squares
    optimum on the final mask (weight_update.py), from the dense weights.
    Diagnostics: sparsity, eps_before / eps_after (mean |ε|), swaps, cycles, and what the
    refiner reports (the exact variant and SparseSwaps: error_before / error_after). The
    reconstruction errors are the pipeline's observer's (dsnot_ref/diagnostics.py).
    """
    result = _prune_mask(weight, stats, spec, apply_refiner=apply_refiner)
    if spec.weight_update.mode == "none":
        return result
    return _with_weight_update(weight, stats, result, spec.weight_update)


def _with_weight_update(weight, stats, result: PruneResult, settings: WeightUpdateSettings) -> PruneResult:
    """The final mask kept, its kept weights replaced by the least-squares optimum."""
    if stats.hessian is None:
        raise UserError("the weight update needs the Hessian statistics (LinearStats.hessian)")
    new_weight = exact_update(weight, result.pruned, stats.hessian, settings)
    return PruneResult(new_weight, result.pruned, result.diagnostics, result.initial)


def _prune_mask(weight, stats, spec: PruneSpec, *, apply_refiner: bool = True) -> PruneResult:
    """``prune_linear`` without the weight update: the method's own weights and final mask."""
    xp = array_module(weight)
    if spec.method == "dense":
        none = xp.zeros(weight.shape, dtype=xp.bool_)
        return PruneResult(weight, none, {"sparsity": 0.0}, none)
    if spec.method == "sparsegpt":
        return _prune_sparsegpt(weight, stats, spec)
    refiner = refiner_of(spec)
    method = spec.method if refiner is None else spec.initial_method
    score = initial_score(weight, stats, method, np.float64 if refiner is None else refiner.score_dtype)
    pruned0 = initial_mask(score, spec.sparsity, spec.nm)
    diagnostics = {"sparsity": pruned_fraction(pruned0), "eps_before": mean_abs_eps(weight, stats, pruned0)}
    pruned = pruned0
    if refiner is not None and apply_refiner:
        problem = layer_problem(weight, pruned0, stats, refiner.needs, nm=spec.nm, initial_score=score)
        refinement = refiner.refine(problem)
        pruned = refinement.pruned
        diagnostics.update(refinement.summary())
    else:
        diagnostics.update({"swaps": 0, "cycles": 0})
    unchanged = pruned is pruned0 or bool(xp.array_equal(pruned, pruned0))
    diagnostics["eps_after"] = diagnostics["eps_before"] if unchanged else mean_abs_eps(weight, stats, pruned)
    new_weight = xp.where(pruned, xp.zeros((), dtype=weight.dtype), weight)
    return PruneResult(new_weight, pruned, diagnostics, pruned0)


def _prune_sparsegpt(weight, stats, spec: PruneSpec) -> PruneResult:
    if stats.hessian is None:
        raise UserError("SparseGPT needs the Hessian statistics (LinearStats.hessian)")
    from .sparsegpt import sparsegpt_prune  # noqa: PLC0415 - lazy: optional module

    new_weight, pruned = sparsegpt_prune(weight, stats.hessian, spec.sparsity, nm=spec.nm)
    return PruneResult(new_weight, pruned, {"sparsity": pruned_fraction(pruned), "swaps": 0, "cycles": 0}, pruned)


__all__ = [
    "DSnoTSettings",
    "PruneResult",
    "PruneSpec",
    "StatsNeeds",
    "SwapSettings",
    "WeightUpdateSettings",
    "initial_score",
    "refiner_of",
    "statistics_needed",
    "output_energy",
    "prune_linear",
    "reconstruction_error",
    "weight_error",
]
