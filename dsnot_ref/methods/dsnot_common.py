"""What both vectorised DSnoT variants share (docs/dsnot.md §3).

Settings, result and trace types, the official variant's pointer error, the error steps

    c[r, j] = W[r, j] · seq_sum[j]            contributions
    ε[r]    = Σ_{j pruned in row r} c[r, j]   row_errors
    c / var**γ                                regrowth_metric (var floored at VAR_FLOOR)

and the per-cycle trace recorder. Units: ``seq_sum`` is the per-sequence sum (1/S) Σ_s Σ_t x,
so ε and ``update_threshold`` are in those units. Arithmetic: float64, except the official
variant, which computes in float32 like the released code (``arithmetic_dtype``). The variants, their
differences and the trace format are described in methods/dsnot.py, which re-exports every
name defined here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..backend import array_module, to_device, to_numpy
from ..errors import UserError


VARIANTS = ("reference", "official", "exact")

# Variances below this are treated as this value in c / var**γ, so that a dead or constant
# input channel (var = 0) gives a finite metric. Activations of LLM layers have variances many
# orders of magnitude above it, so it never changes an ordering in practice.
VAR_FLOOR = 1e-12


@dataclass(frozen=True)
class DSnoTSettings:
    variant: str = "reference"          # "reference" | "official" | "exact"
    max_cycle_time: int = 50            # K, at most one swap per row and cycle
    update_threshold: float = 0.1       # in per-sequence-sum units (see methods/dsnot.py)
    pow_of_var_regrowing: float = 1.0   # γ in c / var**γ; 0 = no division
    without_same_sign: bool = True      # official variant only (True = sign check off)
    # exact variant only (docs/exact_variant.md):
    lookahead: int = 1                  # best of the next k growth x k pruning candidates
    cycle_fraction: float | None = None  # cycle budget int(fraction · C); None = max_cycle_time
    on_reject: str = "stop"             # "stop" the row, or "skip" the growth candidate
    # official variant only: float32 lanes of the torch CPU sum whose order ε reproduces
    # (methods/torch_sum.py): 8 for AVX2/ARM/default torch builds, 16 for AVX512 kernels
    torch_sum_lanes: int = 8

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise UserError(f"unknown DSnoT variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if isinstance(self.max_cycle_time, bool) or not isinstance(self.max_cycle_time, (int, np.integer)) \
                or self.max_cycle_time < 0:
            raise UserError(f"max_cycle_time must be an integer >= 0, got {self.max_cycle_time!r}")
        if not (math.isfinite(self.update_threshold) and self.update_threshold >= 0):
            raise UserError(f"update_threshold must be finite and >= 0, got {self.update_threshold!r}")
        if not math.isfinite(self.pow_of_var_regrowing):
            raise UserError(f"pow_of_var_regrowing must be finite, got {self.pow_of_var_regrowing!r}")
        if isinstance(self.lookahead, bool) or not isinstance(self.lookahead, (int, np.integer)) \
                or self.lookahead < 1:
            raise UserError(f"lookahead must be an integer >= 1, got {self.lookahead!r}")
        if self.cycle_fraction is not None and not (math.isfinite(self.cycle_fraction)
                                                    and 0 <= self.cycle_fraction <= 1):
            raise UserError(f"cycle_fraction must be in [0, 1], got {self.cycle_fraction!r}")
        if self.on_reject not in ("stop", "skip"):
            raise UserError(f"on_reject must be 'stop' or 'skip', got {self.on_reject!r}")
        if self.torch_sum_lanes not in (8, 16):
            raise UserError(f"torch_sum_lanes must be 8 or 16, got {self.torch_sum_lanes!r}")


def arithmetic_dtype(variant: str):
    """The float type a variant computes in: float32 for the official variant (the released
    code keeps c, the Wanda score, ε, c / var**γ and the running ε in float32, and element-wise
    float32 operations are IEEE-exact everywhere), float64 for the others."""
    return np.float32 if variant == "official" else np.float64


class DSnoTPointerError(UserError, ValueError):
    """The official variant's pointer would leave its list (the released code misbehaves there).

    Happens on narrow layers (C of tens to ~100 columns) or very low sparsity with many
    cycles. Use the reference variant, fewer cycles, or a wider layer.
    """


@dataclass(frozen=True)
class DSnoTTrace:
    eps: np.ndarray      # [cycles+1, R] float64, ε after k cycles
    active: np.ndarray   # [cycles+1, R] bool, still active after k cycles
    swaps: np.ndarray    # [n, 4] int64, (row, grown column, pruned column, cycle)


@dataclass(frozen=True)
class DSnoTResult:
    pruned: object              # [R, C] bool, same backend as the weight
    eps_before: np.ndarray      # [R] float64, ε of the initial mask
    eps_after: np.ndarray       # [R] float64, ε at the end of the loop
    n_swaps: int                # accepted swaps, all rows
    cycles: int                 # cycles run
    trace: DSnoTTrace | None = None

    def summary(self) -> dict:
        """JSON-ready per-layer summary: mean |ε| before/after, swaps, cycles."""
        return {
            "eps_before": float(np.mean(np.abs(self.eps_before))) if self.eps_before.size else 0.0,
            "eps_after": float(np.mean(np.abs(self.eps_after))) if self.eps_after.size else 0.0,
            "swaps": int(self.n_swaps),
            "cycles": int(self.cycles),
        }


# --------------------------------------------------------------------------- the error (§3)

def contributions(w, seq_sum, dtype=np.float64):
    """c[r, j] = W[r, j] · seq_sum[j]: weight (r, j)'s share of the expected output.

    [R, C], [C] -> [R, C] in ``dtype``, in per-sequence-sum units.
    """
    xp = array_module(w)
    return w.astype(dtype, copy=False) * to_device(seq_sum, xp).astype(dtype, copy=False)[None, :]


def row_errors(c, pruned):
    """ε[r] = Σ_{j pruned} c[r, j], dense minus sparse expected output. [R, C] -> [R] float64.

    c · pruned rather than ``where(pruned, c, 0)``: the same terms in the same order (a kept
    term is ±0 instead of 0, which no sum with a nonzero term sees), several times faster
    than a branch per element on a random mask; + 0.0 makes a zero sum +0.0 as ``where`` gives.
    """
    xp = array_module(c)
    return xp.sum(c * pruned, axis=1) + 0.0


def floored_variance(var, dtype=np.float64):
    """var in ``dtype``, floored at VAR_FLOOR (so a dead channel cannot give inf/NaN). [C] -> [C]."""
    xp = array_module(var)
    return xp.maximum(xp.asarray(var, dtype=dtype), dtype(VAR_FLOOR))


def regrowth_metric(c, var, pow_of_var: float):
    """Growth criterion c[r, j] / var[j]**γ (γ = 0: c itself), in c's dtype. [R, C], [C] -> [R, C].

    ``var ** γ`` with NumPy's scalar-power shortcuts (γ = 1: var, 2: var·var, 0.5: sqrt), the
    shortcuts torch.pow takes too.
    """
    if pow_of_var == 0:
        return c
    return c / (floored_variance(var, c.dtype.type) ** pow_of_var)[None, :]


def contributions_at(w, seq_sum, rows, cols):
    """c[rows, cols] = W[rows, cols] · seq_sum[cols] without forming c, in seq_sum's dtype.
    [n], [n] -> [n]."""
    return w[rows, cols].astype(seq_sum.dtype) * seq_sum[cols]


# --------------------------------------------------------------------------- trace recorder

class Recorder:
    """Collects ε, active flags and swaps cycle by cycle (only what was asked for).

    Without a trace nothing leaves the device during the loop: the swap count is summed
    where the arrays live and read once at the end.
    """

    def __init__(self, eps0, wanted: bool):
        self.wanted = wanted
        self.eps_before = to_numpy(eps0).astype(np.float64)
        self._n_swaps = 0                  # int, or a 0-d device array while running
        self.cycles = 0
        self.eps = [to_numpy(eps0).copy()] if wanted else []
        self.active = [np.ones(eps0.shape[0], dtype=np.bool_)] if wanted else []
        self.swaps = []

    @property
    def n_swaps(self) -> int:
        return int(self._n_swaps)

    def cycle(self, eps, accept, g, q):
        self.cycles += 1
        xp = array_module(accept)
        self._n_swaps = self._n_swaps + xp.count_nonzero(accept)
        if not self.wanted:
            return
        accept_h = to_numpy(accept)
        self.eps.append(to_numpy(eps).copy())
        self.active.append(accept_h.copy())
        rows = np.nonzero(accept_h)[0].astype(np.int64)
        cycle = np.full(rows.shape, self.cycles, dtype=np.int64)
        self.swaps.append(np.stack([rows, to_numpy(g)[rows], to_numpy(q)[rows], cycle], axis=1))

    def trace(self) -> DSnoTTrace | None:
        if not self.wanted:
            return None
        swaps = np.concatenate(self.swaps, axis=0) if self.swaps else np.zeros((0, 4), np.int64)
        return DSnoTTrace(eps=np.stack(self.eps).astype(np.float64),
                          active=np.stack(self.active), swaps=swaps.astype(np.int64))
