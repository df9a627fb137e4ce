"""What every DSnoT variant shares: settings, input checks, the per-cycle recorder and the
official variant's pointer error. Results are the refiners' common record (methods/contract.py).

The method itself starts in methods/dsnot/per_row.py. Shape letters, one meaning each across
methods/: R output rows, C input columns, K the cycle budget (``max_cycle_time``), D = min(K, C)
list entries a loop can read, N:M structured sparsity (N pruned in each group of M columns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...backend import array_module, to_device, to_numpy
from ...errors import UserError
from ..contract import Refinement, RefinementTrace
from ..scores import check_nm, wanda_score


VARIANTS = ("reference", "official", "exact")
ON_REJECT = ("stop", "skip")          # exact variant: what a rejected proposal does

# Variances below this are treated as this value in c / var**γ, so that a dead or constant
# input channel (var = 0) gives a finite metric. Activations of LLM layers have variances many
# orders of magnitude above it, so it never changes an ordering in practice.
VAR_FLOOR = 1e-12


@dataclass(frozen=True)
class DSnoTSettings:
    variant: str = "reference"          # "reference" | "official" | "exact"
    max_cycle_time: int = 50            # K, at most one swap per row and cycle
    update_threshold: float = 0.1       # in per-sequence-sum units, like ε
    pow_of_var_regrowing: float = 1.0   # γ in c / var**γ; 0 = no division
    without_same_sign: bool = True      # official variant only (True = sign check off)
    # exact variant only (docs/exact_variant.md):
    lookahead: int = 1                  # best of the next k growth x k pruning candidates
    cycle_fraction: float | None = None  # cycle budget int(fraction · C); None = max_cycle_time
    on_reject: str = "stop"             # "stop" the row, or "skip" the growth candidate
    # official variant only: float32 lanes of the torch CPU sum whose order ε reproduces
    # (dsnot_ref/released/torch_sum.py): 8 for AVX2/ARM/default torch builds, 16 for AVX512 kernels
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
        if self.on_reject not in ON_REJECT:
            raise UserError(f"on_reject must be one of {', '.join(ON_REJECT)}, got {self.on_reject!r}")
        if self.torch_sum_lanes not in (8, 16):
            raise UserError(f"torch_sum_lanes must be 8 or 16, got {self.torch_sum_lanes!r}")


def floored_variance(var, dtype=np.float64):
    """var, floored at VAR_FLOOR so that a dead channel (var = 0) gives a finite metric. [C] -> [C]."""
    xp = array_module(var)
    return xp.maximum(xp.asarray(var, dtype=dtype), dtype(VAR_FLOOR))


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


def cycle_budget(settings: DSnoTSettings, n_cols: int) -> int:
    """Cycles to run: ``int(cycle_fraction · C)`` when a fraction is set (exact variant), else K."""
    if settings.cycle_fraction is None:
        return int(settings.max_cycle_time)
    return int(settings.cycle_fraction * n_cols)


def check_inputs(weight, pruned0, seq_sum, seq_sq, var, nm, initial_score):
    """Shapes, dtypes and finiteness of DSnoT's inputs; UserError naming the array."""
    xp = array_module(weight)
    if weight.ndim != 2:
        raise UserError(f"weight must be [R, C], got shape {weight.shape}")
    n_rows, n_cols = weight.shape
    if pruned0.shape != weight.shape or pruned0.dtype != xp.bool_:
        raise UserError(f"initial mask must be bool {weight.shape}, got {pruned0.dtype} {pruned0.shape}")
    for name, a in (("seq_sum", seq_sum), ("seq_sq", seq_sq), ("var", var)):
        if tuple(a.shape) != (n_cols,):
            raise UserError(f"{name} has shape {tuple(a.shape)}, expected ({n_cols},)")
        a_xp = array_module(a)            # statistics may still be on the host here
        if not bool(a_xp.all(a_xp.isfinite(a))):
            raise UserError(f"{name} has NaN or inf entries")
    if not bool(xp.all(xp.isfinite(weight))):
        raise UserError("weight has NaN or inf entries")
    if nm is not None:
        n, m = check_nm(nm)
        if n_cols % m != 0:
            raise UserError(f"{n}:{m} sparsity needs C divisible by {m}, got C={n_cols}")
    if initial_score is not None and tuple(initial_score.shape) != (n_rows, n_cols):
        raise UserError(f"initial_score has shape {tuple(initial_score.shape)}, expected {weight.shape}")


class Recorder:
    """Counts swaps and cycles; with ``wanted`` also keeps ε (and E_r), the active flags and the
    swaps of every cycle. Without a trace nothing leaves the device during the loop: the swap
    counts stay where the arrays live and are read once at the end."""

    def __init__(self, eps0, wanted: bool, error0=None):
        xp = array_module(eps0)
        self.wanted = wanted
        self.cycles = 0
        self.eps_before = to_numpy(eps0).astype(np.float64)
        self.error_before = None if error0 is None else to_numpy(error0).astype(np.float64)
        self.row_swaps = xp.zeros(eps0.shape[0], dtype=xp.int64)
        self.eps = [self.eps_before] if wanted else []
        self.error = [self.error_before] if wanted and error0 is not None else []
        self.active = [np.ones(eps0.shape[0], dtype=np.bool_)] if wanted else []
        self.swaps = []

    def cycle(self, eps, active, accept, g, q, error=None):
        """One cycle done: ``accept`` [R] rows swapped (g, q); ``active`` [R] rows still in the loop."""
        self.cycles += 1
        self.row_swaps = self.row_swaps + accept
        if not self.wanted:
            return
        accept_h = to_numpy(accept)
        self.eps.append(to_numpy(eps).astype(np.float64))
        if error is not None:
            self.error.append(to_numpy(error).astype(np.float64))
        self.active.append(to_numpy(active).astype(np.bool_))
        rows = np.flatnonzero(accept_h).astype(np.int64)
        cycle = np.full(rows.shape, self.cycles, dtype=np.int64)
        self.swaps.append(np.stack([rows, to_numpy(g)[rows], to_numpy(q)[rows], cycle], axis=1))

    def result(self, pruned, eps, error=None) -> Refinement:
        """The result of a loop that ended with mask ``pruned``, ε ``eps`` (and E_r ``error``)."""
        trace = None
        if self.wanted:
            swaps = np.concatenate(self.swaps, axis=0) if self.swaps else np.zeros((0, 4), np.int64)
            trace = RefinementTrace(eps=np.stack(self.eps), active=np.stack(self.active),
                               swaps=swaps.astype(np.int64),
                               error=np.stack(self.error) if self.error else None)
        return Refinement(
            pruned=pruned, eps_before=self.eps_before, eps_after=to_numpy(eps).astype(np.float64),
            row_swaps=to_numpy(self.row_swaps).astype(np.int64), cycles=self.cycles, trace=trace,
            error_before=self.error_before,
            error_after=None if error is None else to_numpy(error).astype(np.float64))


def prepare(problem, dtype):
    """A problem's arrays checked, on the weight's device, the statistics in ``dtype`` (float32
    for the official variant, as the released code holds them) and the variance floored; N:M
    gets the Wanda score as its pruning order when the problem has no initial score.
    -> (weight [R, C], pruned0 [R, C], seq_sum [C], seq_sq [C], var [C], initial_score [R, C] | None)."""
    weight, nm, initial_score = problem.weight, problem.nm, problem.initial_score
    check_inputs(weight, problem.pruned0, problem.seq_sum, problem.seq_sq, problem.var, nm, initial_score)
    xp = array_module(weight)
    pruned0 = to_device(problem.pruned0, xp)                                          # [R, C]
    seq_sum, seq_sq, var = (to_device(a, xp).astype(dtype, copy=False)
                            for a in (problem.seq_sum, problem.seq_sq, problem.var))  # [C] each
    var = floored_variance(var, dtype)
    if nm is not None and initial_score is None:
        initial_score = wanda_score(weight, seq_sq, dtype)
    if initial_score is not None:
        initial_score = to_device(initial_score, xp)                                  # [R, C]
    return weight, pruned0, seq_sum, seq_sq, var, initial_score


def contributions_at(w, seq_sum, rows, cols):
    """c[rows, cols] = W[rows, cols] · seq_sum[cols] without forming c, in seq_sum's dtype.
    [n], [n] -> [n]."""
    return w[rows, cols].astype(seq_sum.dtype) * seq_sum[cols]
