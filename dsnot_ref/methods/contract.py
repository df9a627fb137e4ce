"""The one contract every mask refiner keeps: a layer problem in, a refinement out.

A refiner (DSnoT's reference, official and exact variants, SparseSwaps) starts from an initial
mask that a one-shot pruner (magnitude, Wanda, SparseGPT: ``scores.py``, ``sparsegpt.py``) made
and moves pruned weights around without changing any value:

    LayerProblem(weight [R, C], pruned0 [R, C], the statistics it declared)  ->  Refinement

Each refiner says which statistics it needs (``StatsNeeds``), so the pipeline asks instead of
deciding per method, and every refiner reports in the same record (``Refinement``, with an
optional per-cycle ``RefinementTrace``). The registry that names them is ``refiners.py``.

Shape letters: R output rows, C input columns, K cycles run, n accepted swaps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

GRAM_PRODUCTS = ("float64", "input")    # dtype of each chunk's XᵀX when G is gathered
VARIANCES = ("pooled", "within")


@dataclass(frozen=True)
class StatsNeeds:
    """What a refiner (or a one-shot pruner) reads besides the weight and the initial mask.

    Every refiner gets the first moments seq_sum and seq_sq [C]; ``variance`` says which
    variance [C] (pooled over all tokens, or the mean within-sequence one of the released code);
    ``moments``: a class whose instances accumulate seq_sum, seq_sq and the within variance in
    place of stats.py's float64 ones (``update(x [B, L, C], seq_var)``, ``moments() -> dict``):
    the official variant names the released code's float32 running averages
    (``dsnot_ref.released.averages``), so that the statistics module never imports the parity
    seam; ``gram``: the Gram matrix G = Σ x xᵀ [C, C] is needed, its chunk products formed in
    "float64" or in the input's dtype ("input"); None: no G.
    """

    variance: str = "pooled"
    moments: type | None = None
    gram: str | None = None

    def __post_init__(self):
        if self.variance not in VARIANCES:
            raise ValueError(f"variance must be one of {VARIANCES}, got {self.variance!r}")
        if self.gram is not None and self.gram not in GRAM_PRODUCTS:
            raise ValueError(f"gram must be None or one of {GRAM_PRODUCTS}, got {self.gram!r}")

    def with_gram(self, gram: str | None) -> StatsNeeds:
        """These needs and G in ``gram`` precision too (float64 wins over the input's dtype)."""
        if gram is None or self.gram == "float64":
            return self
        return replace(self, gram=gram)


@dataclass(frozen=True)
class LayerProblem:
    """One weight matrix, its initial mask and the statistics its refiner declared."""

    weight: object                     # [R, C], never changed
    pruned0: object                    # [R, C] bool, the initial mask (True = pruned)
    seq_sum: object                    # [C] (1/S) Σ_s Σ_t x   (docs/dsnot.md §1)
    seq_sq: object                     # [C] (1/S) Σ_s Σ_t x²  (Wanda's squared norm)
    var: object                        # [C] the variance the refiner asked for
    gram: object | None = None         # [C, C] Σ x xᵀ over the calibration tokens, when asked
    nm: tuple[int, int] | None = None  # N:M structured sparsity (N pruned in each group of M)
    initial_score: object | None = None  # [R, C] the one-shot pruner's score (N:M partner order)


def layer_problem(weight, pruned0, stats, needs: StatsNeeds, *, nm=None, initial_score=None) -> LayerProblem:
    """The problem a refiner with ``needs`` sees, from a sublayer's ``LinearStats``."""
    from .gram import gram_from_hessian  # noqa: PLC0415 - gram imports nothing back

    gram = None
    if needs.gram is not None:
        if stats.hessian is None:
            raise ValueError("this refiner needs the Gram matrix; the statistics hold no Hessian")
        gram = gram_from_hessian(stats.hessian, stats.n_seq)
    var = stats.var_within if needs.variance == "within" else stats.var_pooled
    return LayerProblem(weight, pruned0, stats.seq_sum, stats.seq_sq, var, gram, nm, initial_score)


@dataclass(frozen=True)
class RefinementTrace:
    """Per-cycle record of a refinement (NumPy arrays; row 0 = before cycle 1)."""

    eps: np.ndarray | None  # [K+1, R] float64, DSnoT's ε after k cycles (None: SparseSwaps)
    active: np.ndarray      # [K+1, R] bool, row still in the loop (SparseSwaps: swapped) after k cycles
    swaps: np.ndarray       # [n, 4] int64, (row, grown column, pruned column, cycle), by cycle then row
    error: np.ndarray | None = None   # [K+1, R] float64, E_r = d_rᵀ G d_r (exact variant, SparseSwaps)


@dataclass(frozen=True)
class Refinement:
    """What every refiner returns: the mask and one common record of how it got there."""

    pruned: object                          # [R, C] bool, same backend as the weight
    row_swaps: np.ndarray                   # [R] int64, accepted swaps per row
    cycles: int                             # cycles (SparseSwaps: steps) run
    eps_before: np.ndarray | None = None    # [R] float64, DSnoT's ε of the initial mask
    eps_after: np.ndarray | None = None     # [R] float64, ε at the end
    error_before: np.ndarray | None = None  # [R] float64, E_r of the initial mask (units of G)
    error_after: np.ndarray | None = None   # [R] float64, E_r at the end
    trace: RefinementTrace | None = None

    @property
    def n_swaps(self) -> int:
        """Accepted swaps, all rows."""
        return int(self.row_swaps.sum())

    def summary(self) -> dict:
        """JSON-ready per-layer record: swaps, cycles and, where the refiner has them, the
        total E_r before and after (Σ_r ‖X d_r‖², absolute)."""
        out = {"swaps": self.n_swaps, "cycles": int(self.cycles)}
        if self.error_before is not None:
            out["error_before"] = float(np.sum(self.error_before))
            out["error_after"] = float(np.sum(self.error_after))
        return out


class Refiner(Protocol):
    """A mask refiner: its settings are fixed when it is made (``refiners.make_refiner``)."""

    needs: StatsNeeds          # the statistics ``refine`` reads
    score_dtype: type          # the dtype it wants the initial pruner's score in

    def refine(self, problem: LayerProblem, trace: bool = False) -> Refinement: ...
