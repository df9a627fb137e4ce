"""The exact DSnoT variant one row at a time, in plain Python (docs/exact_variant.md).

The reference variant's candidate lists (per_row.py), but a swap is accepted only when it lowers
the row's true squared error on the calibration tokens, E_r = d_rᵀ G d_r (d_r = W where pruned,
0 elsewhere; G = Σ x xᵀ), recomputed here from scratch for every candidate pair. exact.py is the
same for all rows at once, with E_r updated incrementally, tested equal.
Shape letters: R output rows, C input columns.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..contract import Refinement
from .common import DSnoTSettings, cycle_budget
from .per_row import RowRun, collect, contributions, growth_candidates, nm_partner, prune_candidates, regrowth_metric


def exact_row(r: int, w, c, metric, wanda, score, pruned0, gram, nm, n_cycles: int, lookahead: int,
              on_reject: str):
    """The exact variant (docs/exact_variant.md) on row r, each candidate's error recomputed as
    E = dᵀ G d (d = W where pruned, 0 elsewhere). -> (RowRun, E after each cycle).

    The reference variant's lists for the current sign of ε (ε <= 0 proposes like ε < 0), each
    weight changing state at most once; the best (g, q) pair among the next ``lookahead``
    candidates of each list (N:M: g's partner); accept iff ΔE < −1e-12 · E; on rejection
    "stop" ends the row, "skip" drops the first growth candidate of the window.
    """
    grow = {s: growth_candidates(c, metric, pruned0, s) for s in (1, -1)}
    prune = {s: prune_candidates(c, wanda, pruned0, s) for s in (1, -1)}

    def error(mask):
        d = np.where(mask, w, 0.0)
        return d @ gram @ d

    mask = list(pruned0)
    used = set()
    eps = np.sum(np.where(pruned0, c, 0.0))
    run, errors = RowRun(pruned=mask, eps=[eps]), [error(mask)]
    for cycle in range(1, n_cycles + 1):
        s = 1 if eps > 0 else -1
        grow_window = [j for j in grow[s] if j not in used][:lookahead]
        if nm is None:
            prune_window = [j for j in prune[s] if j not in used][:lookahead]
            pairs = [(g, q) for g in grow_window for q in prune_window]
            exhausted = not grow_window or not prune_window
        else:
            partners = [(g, nm_partner(g, score, pruned0, mask, nm[1])) for g in grow_window]
            pairs = [(g, q) for g, q in partners if q is not None]
            exhausted = not grow_window
        e0 = error(mask)
        best, best_e = None, np.inf
        for g, q in pairs:
            trial = list(mask)
            trial[g], trial[q] = False, True
            e = error(trial)
            if e < best_e:                            # ties: the earlier pair
                best, best_e = (g, q), e
        swap = None
        if best is not None and best_e - e0 < -1e-12 * e0:
            g, q = best
            mask[g], mask[q] = False, True
            used.update((g, q))
            eps += c[q] - c[g]
            swap, active = (r, g, q, cycle), True
        elif on_reject == "stop" or exhausted:
            active = False
        else:
            used.add(grow_window[0])
            active = True
        run.record(eps, active, swap)
        errors.append(error(mask))
        if not active:
            break
    return run, errors


def exact_per_row(weight, pruned0, seq_sum, var, wanda, gram, settings: DSnoTSettings, *,
                  nm: tuple[int, int] | None = None, initial_score=None, trace: bool = False) -> Refinement:
    """The exact variant row by row, same result as ``exact.exact_swaps`` (NumPy only).

    wanda [R, C]: the pruning order; initial_score [R, C]: N:M's pruning order (default wanda);
    gram [C, C] = Σ x xᵀ over the calibration tokens.
    """
    w = np.asarray(weight, dtype=np.float64)
    c = contributions(w, seq_sum)
    metric = regrowth_metric(c, var, settings.pow_of_var_regrowing)
    n_cycles = cycle_budget(settings, w.shape[1])
    score = wanda if initial_score is None else initial_score
    runs = [exact_row(r, w[r], c[r], metric[r], wanda[r], score[r], pruned0[r], gram, nm, n_cycles,
                      settings.lookahead, settings.on_reject) for r in range(w.shape[0])]
    cycles = max((len(run.eps) - 1 for run, _ in runs), default=0)
    for _, errors in runs:                         # a stopped row repeats its last E
        errors += [errors[-1]] * (cycles + 1 - len(errors))
    result = collect([run for run, _ in runs], w.shape, cycles, trace)
    error = np.array([e for _, e in runs], dtype=np.float64).reshape(len(runs), cycles + 1).T   # [cycles+1, R]
    return replace(result, trace=replace(result.trace, error=error) if trace else None,
                   error_before=error[0].copy(), error_after=error[-1].copy())
