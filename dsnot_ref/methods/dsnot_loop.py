"""DSnoT one row at a time, with plain Python loops: the oracle for ``dsnot.py``.

Slow and obvious on purpose. Each row is a short story: build its two candidate lists with
Python's (stable) ``sorted``, then walk them swap by swap. The only coupling between rows is
the number of cycles the vectorised loop runs (it stops when *every* row has stopped), which
matters for the official variant (pointers of stopped rows keep moving) and for the trace
length. So the oracle runs in two passes: pass 1 finds, row by row, how many cycles the loop
will run; pass 2 runs every row for exactly that many cycles.

The per-element arithmetic (c = W·seq_sum, c / var**γ, ε = Σ c over pruned) reuses
``dsnot.contributions``, ``dsnot.regrowth_metric`` and ``dsnot.row_errors`` so that the floats
are bit-identical; everything about *which* weight is swapped is written out here again.

Public: ``dsnot_loop(...)`` with the same arguments and result as ``dsnot.dsnot``.
"""

from __future__ import annotations

import numpy as np

from ..backend import to_numpy
from ..errors import UserError
from .dsnot import (
    DSnoTPointerError,
    DSnoTResult,
    DSnoTSettings,
    DSnoTTrace,
    arithmetic_dtype,
    check_inputs,
    contributions,
    floored_variance,
    regrowth_metric,
    row_errors,
)
from .scores import wanda_score
from .torch_sum import torch_row_sum


def _sign(x: float) -> int:
    return int(x > 0) - int(x < 0)


class _Row:
    """Everything one row needs: its contributions, scores and initial mask as Python lists."""

    def __init__(self, r, c, metric, wanda, score, pruned0, eps0):
        # NumPy scalars, not Python floats: the official variant's arithmetic stays float32
        self.r = r
        self.c = list(c)
        self.metric = list(metric)
        self.wanda = list(wanda)
        self.score = list(score)
        self.pruned0 = [bool(v) for v in pruned0]
        self.eps0 = eps0


# --------------------------------------------------------------------------- reference

def _reference_row(row: _Row, settings: DSnoTSettings, nm, n_cycles: int, until_stop=False):
    """Run one row for n_cycles cycles (or until it stops). -> (pruned list, ε per cycle,
    active per cycle, swaps, number of cycles in which the row accepted a swap)."""
    n_cols = len(row.c)
    s = _sign(row.eps0)
    grow = [j for j in range(n_cols) if row.pruned0[j] and s * row.c[j] > 0]
    grow = sorted(grow, key=lambda j: -s * row.metric[j])        # best first, ties: lower column
    prune = [j for j in range(n_cols) if not row.pruned0[j] and s * row.c[j] < 0]
    prune = sorted(prune, key=lambda j: row.wanda[j])
    pruned = list(row.pruned0)
    eps = row.eps0
    eps_hist, active_hist, swaps = [eps], [True], []
    active = True
    n_done = 0
    for cycle in range(1, n_cycles + 1):
        if active:
            accept = False
            if n_done < len(grow):
                g = grow[n_done]
                if nm is None:
                    q = prune[n_done] if n_done < len(prune) else None
                else:
                    start = g - g % nm[1]
                    options = [j for j in range(start, start + nm[1])
                               if not row.pruned0[j] and not pruned[j]]
                    q = min(options, key=lambda j: row.score[j]) if options else None
                if q is not None:
                    eps_after = eps + row.c[q] - row.c[g]
                    accept = abs(eps) > settings.update_threshold and eps_after * eps >= 0
                    if nm is not None:
                        accept = accept and abs(eps_after) < abs(eps)
            if accept:
                pruned[g], pruned[q] = False, True
                eps = (eps + row.c[q]) - row.c[g]
                swaps.append((row.r, g, q, cycle))
                n_done += 1
            active = accept
        eps_hist.append(eps)
        active_hist.append(active)
        if until_stop and not active:
            break
    return pruned, eps_hist, active_hist, swaps, n_done


# --------------------------------------------------------------------------- official

def _official_lists(row: _Row):
    """The released code's two lists for one row, built the obvious way."""
    n_cols = len(row.c)
    metric = [row.metric[j] if row.pruned0[j] else 0.0 for j in range(n_cols)]
    grow = sorted(range(n_cols), key=lambda j: metric[j])
    kept = sorted([j for j in range(n_cols) if not row.pruned0[j]], key=lambda j: row.wanda[j])
    negatives = [j for j in kept if row.c[j] < 0]
    positives = [j for j in kept if row.c[j] > 0]
    n_zero = len(kept) - len(negatives) - len(positives)
    prune = negatives + [kept[0]] * n_zero + positives[::-1]     # zeros -> position 0 (quirk)
    return grow, prune


def _fail(kind: str, r: int, cycle: int):
    raise DSnoTPointerError(f"official DSnoT (row loop): the {kind} pointer of row {r} at cycle "
                            f"{cycle} left its list; use variant 'reference' or fewer cycles")


def _official_row(row: _Row, settings: DSnoTSettings, nm, n_cycles: int, until_stop=False):
    """Run one row of the released code's loop for n_cycles cycles, stopped or not (or until
    it stops). Same outputs as ``_reference_row``."""
    grow, prune = _official_lists(row)
    score = [float("inf") if row.pruned0[j] else row.score[j] for j in range(len(row.c))]
    pruned = list(row.pruned0)
    eps = row.eps0
    sign0 = _sign(row.eps0)
    eps_hist, active_hist, swaps = [eps], [True], []
    active = True
    g_left, g_right = 0, len(grow) - 1
    q_left, q_right = 0, len(prune) - 1
    n_accepted = 0
    for cycle in range(1, n_cycles + 1):
        if eps > 0:
            position, g_right = g_right, g_right - 1
        else:
            position, g_left = g_left, g_left + 1
        if not 0 <= position < len(grow) or not row.pruned0[grow[position]]:
            _fail("regrowth", row.r, cycle)
        g = grow[position]
        if nm is None:
            if eps < 0:
                slot, q_right = q_right, q_right - 1
            else:
                slot, q_left = q_left, q_left + 1
            if not 0 <= slot < len(prune):
                _fail("pruning", row.r, cycle)
            q = prune[slot]
        else:
            start = g - g % nm[1]
            group = list(range(start, start + nm[1]))
            if all(score[j] == float("inf") for j in group):
                _fail("N:M pruning", row.r, cycle)
            q = min(group, key=lambda j: score[j])               # ties: lower column
        eps_after = eps + row.c[q] - row.c[g]
        active = active and abs(eps) > eps.dtype.type(settings.update_threshold)
        if nm is not None or not settings.without_same_sign:
            active = active and _sign(eps_after) == sign0
        if nm is not None:
            score[q] = float("inf")
        pruned[q] = active                 # written for stopped rows too, as released
        pruned[g] = not active
        if active:
            eps = (eps + row.c[q]) - row.c[g]
            swaps.append((row.r, g, q, cycle))
            n_accepted += 1
        eps_hist.append(eps)
        active_hist.append(active)
        if until_stop and not active:
            break
    return pruned, eps_hist, active_hist, swaps, n_accepted


def _row_accepting_cycles(run_row, row, settings, nm) -> int:
    """Pass 1: cycles in which this row accepts, running it alone until it stops."""
    *_, n_accepted = run_row(row, settings, nm, settings.max_cycle_time, until_stop=True)
    return n_accepted


# --------------------------------------------------------------------------- entry point

def dsnot_loop(weight, pruned0, seq_sum, seq_sq, var, settings: DSnoTSettings = DSnoTSettings(), *,
               nm: tuple[int, int] | None = None, initial_score=None, trace: bool = False) -> DSnoTResult:
    """Row-by-row DSnoT, same contract as ``dsnot.dsnot`` (NumPy only)."""
    weight, pruned0 = to_numpy(weight), to_numpy(pruned0)
    seq_sum, seq_sq, var = (to_numpy(a) for a in (seq_sum, seq_sq, var))
    check_inputs(weight, pruned0, seq_sum, seq_sq, var, nm, initial_score)
    if settings.variant not in ("reference", "official"):
        raise UserError(f"dsnot_loop handles the reference and official variants, not {settings.variant!r}")
    dtype = arithmetic_dtype(settings.variant)
    c = contributions(weight, seq_sum, dtype)
    metric = regrowth_metric(c, floored_variance(var, dtype), settings.pow_of_var_regrowing)
    wanda = wanda_score(weight, seq_sq, dtype)
    score = wanda if initial_score is None else to_numpy(initial_score).astype(dtype)
    if settings.variant == "official":
        eps0 = torch_row_sum(np.where(pruned0, c, dtype(0)), settings.torch_sum_lanes)
    else:
        eps0 = row_errors(c, pruned0)
    rows = [_Row(r, c[r], metric[r], wanda[r], score[r], pruned0[r], eps0[r]) for r in range(c.shape[0])]
    run_row = _reference_row if settings.variant == "reference" else _official_row

    # Pass 1: the loop runs one cycle past the last cycle in which any row accepted.
    last = max((_row_accepting_cycles(run_row, row, settings, nm) for row in rows), default=-1)
    n_cycles = min(settings.max_cycle_time, last + 1)

    # Pass 2: every row for exactly n_cycles cycles.
    outputs = [run_row(row, settings, nm, n_cycles) for row in rows]
    pruned = np.array([o[0] for o in outputs], dtype=np.bool_).reshape(pruned0.shape)
    eps = np.array([o[1] for o in outputs], dtype=np.float64).reshape(len(rows), n_cycles + 1).T
    active = np.array([o[2] for o in outputs], dtype=np.bool_).reshape(len(rows), n_cycles + 1).T
    swaps = sorted((s for o in outputs for s in o[3]), key=lambda s: (s[3], s[0]))
    swaps = np.array(swaps, dtype=np.int64).reshape(-1, 4)
    return DSnoTResult(
        pruned=pruned, eps_before=eps[0].copy(), eps_after=eps[-1].copy(), n_swaps=len(swaps),
        cycles=n_cycles,
        trace=DSnoTTrace(eps=eps, active=active, swaps=swaps) if trace else None,
    )
