"""DSnoT one row at a time, in plain Python: the method as the paper states it. Read this first.

DSnoT (Zhang et al., ICLR 2024, Algorithm 1) keeps every weight value and edits only the mask:
in each output row r of W [R, C] it regrows a pruned weight g and prunes a kept weight q, cycle
after cycle, so that the row's expected output error moves toward zero (docs/dsnot.md §3-§4):

    c[r, j] = W[r, j] · seq_sum[j]        contribution, seq_sum[j] = (1/S) Σ_s Σ_t x[s, t, j]
    ε[r]    = Σ_{j pruned} c[r, j]        row error, in per-sequence-sum units like τ
    ε_after = ε[r] + c[r, q] − c[r, g]    one swap

Rows interact only through the loop's length: it runs until every row has stopped, or K cycles.
dsnot_vectorised.py, dsnot_official.py and dsnot_exact.py do the same for all rows at once, tested
equal to this file, with its ``contributions``, ``row_errors`` and ``regrowth_metric`` (bit for bit).
Shape letters: R output rows, C input columns, K the cycle budget, M the N:M group size.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..backend import array_module, to_device, to_numpy
from ..errors import UserError
from .dsnot_common import VAR_FLOOR, DSnoTPointerError, DSnoTResult, DSnoTSettings, DSnoTTrace, check_inputs
from .dsnot_common import arithmetic_dtype, cycle_budget
from .scores import wanda_score
from .torch_sum import torch_row_sum


# --------------------------------------------------------------------------- the error (§3)

def contributions(w, seq_sum, dtype=np.float64):
    """c[r, j] = W[r, j] · seq_sum[j], weight (r, j)'s share of the expected output. [R, C] -> [R, C]."""
    xp = array_module(w)
    return w.astype(dtype, copy=False) * to_device(seq_sum, xp).astype(dtype, copy=False)[None, :]


def row_errors(c, pruned):
    """ε[r] = Σ_{j pruned} c[r, j]: dense minus sparse expected output. [R, C] -> [R]."""
    xp = array_module(c)
    return xp.sum(xp.where(pruned, c, xp.zeros((), dtype=c.dtype)), axis=1)


def floored_variance(var, dtype=np.float64):
    """var, floored at VAR_FLOOR so that a dead channel (var = 0) gives a finite metric. [C] -> [C]."""
    xp = array_module(var)
    return xp.maximum(xp.asarray(var, dtype=dtype), dtype(VAR_FLOOR))


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
                  nm: tuple[int, int] | None = None, initial_score=None, trace: bool = False) -> DSnoTResult:
    """DSnoT row by row, same contract as ``dsnot_vectorised.dsnot`` (NumPy only): weight [R, C],
    pruned0 [R, C] bool (True = pruned), seq_sum / seq_sq / var [C], initial_score [R, C] (N:M)."""
    weight, pruned0, seq_sum, seq_sq, var = (to_numpy(a) for a in (weight, pruned0, seq_sum, seq_sq, var))
    check_inputs(weight, pruned0, seq_sum, seq_sq, var, nm, initial_score)
    if settings.variant not in ("reference", "official"):
        raise UserError(f"dsnot_per_row runs the reference and official variants, not {settings.variant!r}")
    dtype = arithmetic_dtype(settings.variant)              # float32 for the official variant
    c = contributions(weight, seq_sum, dtype)                                   # [R, C]
    metric = regrowth_metric(c, var, settings.pow_of_var_regrowing)             # [R, C]
    wanda = wanda_score(weight, seq_sq, dtype)                                  # [R, C]
    score = wanda if initial_score is None else to_numpy(initial_score).astype(dtype)
    eps0 = row_errors(c, pruned0) if settings.variant == "reference" else \
        torch_row_sum(np.where(pruned0, c, dtype(0)), settings.torch_sum_lanes)  # [R], as the released code sums
    rows = [(r, list(c[r]), list(metric[r]), list(wanda[r]), list(score[r]), [bool(v) for v in pruned0[r]], eps0[r])
            for r in range(weight.shape[0])]                # NumPy scalars: float32 stays float32
    if settings.variant == "official":
        return official_per_row(rows, settings, nm, pruned0.shape, trace)
    runs = [reference_row(*row, settings.update_threshold, nm, settings.max_cycle_time) for row in rows]
    # The loop ends one cycle after the last cycle in which some row accepted, or after K.
    n_cycles = min(settings.max_cycle_time, max((len(run.swaps) for run in runs), default=-1) + 1)
    return collect(runs, pruned0.shape, n_cycles, trace)


# --------------------------------------------------------------------------- official variant (§4b)

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


def official_per_row(rows: list, settings: DSnoTSettings, nm, shape, trace: bool) -> DSnoTResult:
    """Every row through the released loop. It ends one cycle after the last cycle in which some row
    accepted (or after K); a row accepts in cycles 1, 2, ... up to its first rejection, so each row
    run alone until it stops says when. Then every row runs that many cycles, stopped or not."""
    last = max((len(official_row(*row, settings, nm, settings.max_cycle_time, until_stop=True).swaps)
                for row in rows), default=-1)
    n_cycles = min(settings.max_cycle_time, last + 1)
    return collect([official_row(*row, settings, nm, n_cycles) for row in rows], shape, n_cycles, trace)


# --------------------------------------------------------------------------- exact variant

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
                  nm: tuple[int, int] | None = None, initial_score=None, trace: bool = False) -> DSnoTResult:
    """The exact variant row by row, same result as ``dsnot_exact.exact_swaps`` (NumPy only).

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


# --------------------------------------------------------------------------- the result, for every variant

def collect(runs: list, shape, n_cycles: int, trace: bool) -> DSnoTResult:
    """Stack the rows' runs (RowRun) into the result the vectorised code returns."""
    for run in runs:                               # a row that stopped early repeats its last ε, inactive
        pad = n_cycles + 1 - len(run.eps)
        run.eps, run.active = run.eps + [run.eps[-1]] * pad, run.active + [False] * pad
    eps = np.array([run.eps for run in runs], np.float64).reshape(len(runs), n_cycles + 1).T     # [K+1, R]
    active = np.array([run.active for run in runs], np.bool_).reshape(len(runs), n_cycles + 1).T  # [K+1, R]
    swaps = sorted((s for run in runs for s in run.swaps), key=lambda s: (s[3], s[0]))  # by cycle, then row
    return DSnoTResult(pruned=np.array([run.pruned for run in runs], np.bool_).reshape(shape),
                       eps_before=eps[0].copy(), eps_after=eps[-1].copy(),
                       row_swaps=np.array([len(run.swaps) for run in runs], np.int64).reshape(-1), cycles=n_cycles,
                       trace=DSnoTTrace(eps, active, np.array(swaps, np.int64).reshape(-1, 4)) if trace else None)
