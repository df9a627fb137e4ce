"""DSnoT one row at a time, in plain Python: the method as the paper states it. Read this first.

DSnoT (Zhang et al., ICLR 2024, Algorithm 1) keeps every weight value and edits only the mask:
in each output row r of W [R, C] it regrows a pruned weight g and prunes a kept weight q, cycle
after cycle, so that the row's expected output error moves toward zero (docs/dsnot.md §3-§4):

    c[r, j] = W[r, j] · seq_sum[j]        contribution, seq_sum[j] = (1/S) Σ_s Σ_t x[s, t, j]
    ε[r]    = Σ_{j pruned} c[r, j]        row error, in per-sequence-sum units like τ
    ε_after = ε[r] + c[r, q] − c[r, g]    one swap

Rows interact only through the loop's length: it runs until every row has stopped, or K cycles.
The other forms import this file's steps (``contributions``, ``row_errors``, ``regrowth_metric``,
``growth_candidates``, ``prune_candidates``, ``nm_partner``), never the reverse: reference.py is
the same variant for all rows at once, tested equal; official_per_row.py / official.py and
exact_per_row.py / exact.py are the other two variants, each plain form beside its fast one.
Shape letters: R output rows, C input columns, K the cycle budget, M the N:M group size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...backend import array_module, to_device, to_numpy
from ...errors import UserError
from ..contract import Refinement, RefinementTrace
from ..scores import wanda_score
from .common import DSnoTSettings, check_inputs, floored_variance


# --------------------------------------------------------------------------- the error (§3)

def contributions(w, seq_sum, dtype=np.float64):
    """c[r, j] = W[r, j] · seq_sum[j], weight (r, j)'s share of the expected output. [R, C] -> [R, C]."""
    xp = array_module(w)
    return w.astype(dtype, copy=False) * to_device(seq_sum, xp).astype(dtype, copy=False)[None, :]


def row_errors(c, pruned):
    """ε[r] = Σ_{j pruned} c[r, j]: dense minus sparse expected output. [R, C] -> [R]."""
    xp = array_module(c)
    return xp.sum(xp.where(pruned, c, xp.zeros((), dtype=c.dtype)), axis=1)


def regrowth_metric(c, var, pow_of_var: float):
    """Growth criterion c[r, j] / var[j]**γ (γ = 0: c itself), in c's dtype. [R, C], [C] -> [R, C]."""
    if pow_of_var == 0:
        return c
    return c / (floored_variance(var, c.dtype.type) ** pow_of_var)[None, :]


# --------------------------------------------------------------------------- one row (§4a)

@dataclass
class RowRun:
    """One row's final mask, ε and active after each cycle (index 0 = before), swaps (row, g, q, cycle)."""

    pruned: list
    eps: list
    active: list = field(default_factory=lambda: [True])
    swaps: list = field(default_factory=list)

    def record(self, eps, active: bool, swap=None):
        self.eps.append(eps)
        self.active.append(active)
        if swap is not None:
            self.swaps.append(swap)


def growth_candidates(c, metric, pruned0, s) -> list:
    """Initially pruned weights whose c has the sign s of ε (c = 0 never helps), best first:
    largest c / var**γ when ε > 0, smallest when ε < 0; ties to the lower column."""
    grow = [j for j in range(len(c)) if pruned0[j] and s * c[j] > 0]
    return sorted(grow, key=lambda j: -s * metric[j])


def prune_candidates(c, wanda, pruned0, s) -> list:
    """Initially kept weights whose c has the sign opposite to ε, by Wanda score |W|·‖x‖,
    smallest first; ties to the lower column."""
    prune = [j for j in range(len(c)) if not pruned0[j] and s * c[j] < 0]
    return sorted(prune, key=lambda j: wanda[j])


def nm_partner(g: int, score, pruned0, pruned, m: int):
    """N:M: in g's group of M columns, the weight kept by the initial mask and still kept, with
    the smallest initial score (ties to the lower column); None if there is none."""
    start = g - g % m
    options = [j for j in range(start, start + m) if not pruned0[j] and not pruned[j]]
    return min(options, key=lambda j: score[j]) if options else None


def reference_row(r: int, c, metric, wanda, score, pruned0, eps0, tau: float, nm, n_cycles: int) -> RowRun:
    """Algorithm 1 on row r until it stops, at most n_cycles cycles. Cycle i regrows the i-th growth
    candidate g and prunes the i-th pruning candidate q (N:M: g's partner); accept iff |ε| > τ and
    ε_after·ε >= 0 (N:M also |ε_after| < |ε|). A row that rejects or runs out of candidates stops."""
    s = np.sign(eps0)
    grow = growth_candidates(c, metric, pruned0, s)
    prune = prune_candidates(c, wanda, pruned0, s) if nm is None else None
    run, eps = RowRun(pruned=list(pruned0), eps=[eps0]), eps0
    for cycle in range(1, n_cycles + 1):
        i = cycle - 1                              # swaps so far (each earlier cycle accepted) = list position
        g = grow[i] if i < len(grow) else None
        if nm is None:
            q = prune[i] if i < len(prune) else None
        else:
            q = None if g is None else nm_partner(g, score, pruned0, run.pruned, nm[1])
        if g is None or q is None:
            break
        eps_after = eps + c[q] - c[g]
        if not (abs(eps) > tau and eps_after * eps >= 0 and (nm is None or abs(eps_after) < abs(eps))):
            break
        run.pruned[g], run.pruned[q], eps = False, True, eps_after
        run.record(eps, True, (r, g, q, cycle))
    return run


def dsnot_per_row(weight, pruned0, seq_sum, seq_sq, var, settings: DSnoTSettings = DSnoTSettings(), *,
                  nm: tuple[int, int] | None = None, initial_score=None, trace: bool = False) -> Refinement:
    """The reference variant row by row, same contract as ``reference.dsnot_reference`` (NumPy
    only): weight [R, C], pruned0 [R, C] bool (True = pruned), seq_sum / seq_sq / var [C] (the
    pooled variance), initial_score [R, C] (N:M's pruning order; default the Wanda score)."""
    weight, pruned0, seq_sum, seq_sq, var = (to_numpy(a) for a in (weight, pruned0, seq_sum, seq_sq, var))
    check_inputs(weight, pruned0, seq_sum, seq_sq, var, nm, initial_score)
    if settings.variant != "reference":
        raise UserError(f"dsnot_per_row runs the reference variant, not {settings.variant!r}")
    c = contributions(weight, seq_sum)                                          # [R, C]
    metric = regrowth_metric(c, var, settings.pow_of_var_regrowing)             # [R, C]
    wanda = wanda_score(weight, seq_sq)                                         # [R, C]
    score = wanda if initial_score is None else to_numpy(initial_score).astype(np.float64)
    eps0 = row_errors(c, pruned0)                                               # [R]
    runs = [reference_row(r, list(c[r]), list(metric[r]), list(wanda[r]), list(score[r]),
                          [bool(v) for v in pruned0[r]], eps0[r], settings.update_threshold, nm,
                          settings.max_cycle_time)
            for r in range(weight.shape[0])]
    # The loop ends one cycle after the last cycle in which some row accepted, or after K.
    n_cycles = min(settings.max_cycle_time, max((len(run.swaps) for run in runs), default=-1) + 1)
    return collect(runs, pruned0.shape, n_cycles, trace)


# --------------------------------------------------------------------------- the result, for every plain form

def collect(runs: list, shape, n_cycles: int, trace: bool) -> Refinement:
    """Stack the rows' runs (RowRun) into the result the vectorised code returns."""
    for run in runs:                               # a row that stopped early repeats its last ε, inactive
        pad = n_cycles + 1 - len(run.eps)
        run.eps, run.active = run.eps + [run.eps[-1]] * pad, run.active + [False] * pad
    eps = np.array([run.eps for run in runs], np.float64).reshape(len(runs), n_cycles + 1).T     # [K+1, R]
    active = np.array([run.active for run in runs], np.bool_).reshape(len(runs), n_cycles + 1).T  # [K+1, R]
    swaps = sorted((s for run in runs for s in run.swaps), key=lambda s: (s[3], s[0]))  # by cycle, then row
    return Refinement(pruned=np.array([run.pruned for run in runs], np.bool_).reshape(shape),
                       eps_before=eps[0].copy(), eps_after=eps[-1].copy(),
                       row_swaps=np.array([len(run.swaps) for run in runs], np.int64).reshape(-1), cycles=n_cycles,
                       trace=RefinementTrace(eps, active, np.array(swaps, np.int64).reshape(-1, 4)) if trace else None)
