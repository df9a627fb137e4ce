"""The official DSnoT variant one row at a time, in plain Python (docs/dsnot.md §4b).

The released code's loop (zyxxmu/DSnoT, commit 4c029df, lib/prune.py ``prune_DSnoT``) on one
row: its two lists, the two pointers read from both ends of each, ``still_active &= |ε| > τ``
on ε before the swap, and the mask written every cycle, stopped rows included. official.py is
the same for all rows at once, tested equal (bit for bit). It reuses per_row.py's steps; what
differs from the reference variant is listed in reference.py's docstring.

Arithmetic is float32, as in the released code, and ε₀ is summed in the order of torch's CPU
sum (``dsnot_ref.released``, the parity seam), so that a near-tie at the threshold is decided as
the released code decides it. Shape letters: R output rows, C input columns, K the cycle budget.
"""

from __future__ import annotations

import numpy as np

from ...backend import to_numpy
from ...errors import UserError
from ...released.torch_sum import torch_row_sum
from ..contract import Refinement
from ..scores import wanda_score
from .common import DSnoTPointerError, DSnoTSettings, check_inputs
from .per_row import RowRun, collect, contributions, regrowth_metric


def official_per_row(weight, pruned0, seq_sum, seq_sq, var, settings: DSnoTSettings, *,
                     nm: tuple[int, int] | None = None, initial_score=None, trace: bool = False) -> Refinement:
    """The official variant row by row, same contract as ``per_row.dsnot_per_row`` (NumPy only;
    ``var`` is the mean within-sequence variance), computed in float32."""
    weight, pruned0, seq_sum, seq_sq, var = (to_numpy(a) for a in (weight, pruned0, seq_sum, seq_sq, var))
    check_inputs(weight, pruned0, seq_sum, seq_sq, var, nm, initial_score)
    if settings.variant != "official":
        raise UserError(f"official_per_row runs the official variant, not {settings.variant!r}")
    f32 = np.float32
    c = contributions(weight, seq_sum, f32)                                     # [R, C]
    metric = regrowth_metric(c, var, settings.pow_of_var_regrowing)             # [R, C]
    wanda = wanda_score(weight, seq_sq, f32)                                    # [R, C]
    score = wanda if initial_score is None else to_numpy(initial_score).astype(f32)
    eps0 = torch_row_sum(np.where(pruned0, c, f32(0)), settings.torch_sum_lanes)  # [R], as the released code sums
    rows = [(r, list(c[r]), list(metric[r]), list(wanda[r]), list(score[r]), [bool(v) for v in pruned0[r]], eps0[r])
            for r in range(weight.shape[0])]                # NumPy scalars: float32 stays float32
    return official_rows(rows, settings, nm, pruned0.shape, trace)


def official_lists(c, metric, wanda, pruned0) -> tuple[list, list]:
    """The released code's two lists for one row (zyxxmu/DSnoT 4c029df, lib/prune.py).

    Regrowth: all C columns by c / var**γ ascending, kept columns counted as 0; read from the
    right end when ε > 0, from the left when ε <= 0. Pruning: the kept columns by Wanda score,
    reordered to negatives c < 0 | one repeat of list position 0 per c == 0 (the released
    code's quirk) | positives c > 0 reversed; read from the left when ε >= 0, the right when ε < 0.
    """
    n_cols = len(c)
    grow = sorted(range(n_cols), key=lambda j: metric[j] if pruned0[j] else 0.0)
    kept = sorted([j for j in range(n_cols) if not pruned0[j]], key=lambda j: wanda[j])
    negatives = [j for j in kept if c[j] < 0]
    positives = [j for j in kept if c[j] > 0]
    n_zero = len(kept) - len(negatives) - len(positives)
    return grow, negatives + [kept[0]] * n_zero + positives[::-1]


def pointer_error(kind: str, r: int, cycle: int):
    raise DSnoTPointerError(f"official DSnoT (per row): the {kind} pointer of row {r} at cycle "
                            f"{cycle} left its list; use variant 'reference' or fewer cycles")


def official_row(r: int, c, metric, wanda, score, pruned0, eps0, settings: DSnoTSettings, nm,
                 n_cycles: int, until_stop: bool = False) -> RowRun:
    """The released loop on row r for n_cycles cycles, stopped or not (or until it stops).

    ``still_active &= |ε| > τ`` on ε before the swap (with the sign check, or N:M: also
    sign(ε_after) == sign(ε₀)); the mask entries are written every cycle, pruned[q] = active,
    pruned[g] = not active, so a stopped row's pointers keep moving. N:M: q is the smallest
    score in g's group not yet proposed (every proposed q leaves the candidates).
    """
    grow, prune = official_lists(c, metric, wanda, pruned0)
    score = [float("inf") if pruned0[j] else score[j] for j in range(len(c))]
    threshold = eps0.dtype.type(settings.update_threshold)       # compared in ε's precision
    run = RowRun(pruned=list(pruned0), eps=[eps0])
    eps, active = eps0, True
    g_left, g_right = 0, len(grow) - 1
    q_left, q_right = 0, len(prune) - 1
    for cycle in range(1, n_cycles + 1):
        if eps > 0:
            position, g_right = g_right, g_right - 1
        else:
            position, g_left = g_left, g_left + 1
        if not 0 <= position < len(grow) or not pruned0[grow[position]]:
            pointer_error("regrowth", r, cycle)
        g = grow[position]
        if nm is None:
            if eps < 0:
                slot, q_right = q_right, q_right - 1
            else:
                slot, q_left = q_left, q_left + 1
            if not 0 <= slot < len(prune):
                pointer_error("pruning", r, cycle)
            q = prune[slot]
        else:
            group = range(g - g % nm[1], g - g % nm[1] + nm[1])
            if all(score[j] == float("inf") for j in group):
                pointer_error("N:M pruning", r, cycle)
            q = min(group, key=lambda j: score[j])                 # ties: lower column
            score[q] = float("inf")
        eps_after = eps + c[q] - c[g]
        active = active and abs(eps) > threshold
        if nm is not None or not settings.without_same_sign:
            active = active and np.sign(eps_after) == np.sign(eps0)
        run.pruned[q], run.pruned[g] = active, not active
        if active:
            eps = (eps + c[q]) - c[g]
        run.record(eps, active, (r, g, q, cycle) if active else None)
        if until_stop and not active:
            break
    return run


def official_rows(rows: list, settings: DSnoTSettings, nm, shape, trace: bool) -> Refinement:
    """Every row through the released loop. It ends one cycle after the last cycle in which some row
    accepted (or after K); a row accepts in cycles 1, 2, ... up to its first rejection, so each row
    run alone until it stops says when. Then every row runs that many cycles, stopped or not."""
    last = max((len(official_row(*row, settings, nm, settings.max_cycle_time, until_stop=True).swaps)
                for row in rows), default=-1)
    n_cycles = min(settings.max_cycle_time, last + 1)
    return collect([official_row(*row, settings, nm, n_cycles) for row in rows], shape, n_cycles, trace)
