"""Plausible bugs in a DSnoT or SparseSwaps implementation, one per documented rule.

Each mutant is the plain per-row code (methods/dsnot/per_row.py, official_per_row.py,
exact_per_row.py; methods/swaps.py ``swaps_plain``)
with one rule broken: a replacement for one of its functions, or the case's settings changed the
way a kernel that misreads a setting would. ``outputs(case, mutant)`` gives the outputs such an
implementation would write; tests/test_golden_mutants.py checks that the committed golden cases
catch every one through ``golden check`` and that a correct implementation that only sums in
another order passes.
"""

from __future__ import annotations

import contextlib
import inspect
import textwrap
from dataclasses import dataclass, replace
from typing import Callable
from unittest import mock

import numpy as np

from dsnot_ref.golden import SWAPS, GoldenCase, GoldenOutputs
from dsnot_ref.methods import swaps as swaps_module
from dsnot_ref.methods.dsnot import common
from dsnot_ref.methods.dsnot import exact_per_row as exact_module
from dsnot_ref.methods.dsnot import official_per_row as official_module
from dsnot_ref.methods.dsnot import per_row
from dsnot_ref.methods.dsnot.exact_per_row import exact_per_row
from dsnot_ref.methods.dsnot.official_per_row import official_lists, official_per_row
from dsnot_ref.methods.dsnot.per_row import RowRun, dsnot_per_row
from dsnot_ref.methods.swaps import error_trace, swaps_plain

GROWTH_CANDIDATES = per_row.growth_candidates      # the correct one, for mutants that extend it
PRUNE_CANDIDATES = per_row.prune_candidates
ROUND_UNSTRUCTURED = swaps_module.row_round_unstructured


# --------------------------------------------------------------------------- the correct plain code

def plain_outputs(case: GoldenCase) -> GoldenOutputs:
    """What the plain per-row code computes for a case (the oracle every mutant starts from)."""
    if case.variant == SWAPS:
        res = swaps_plain(case.weight, case.pruned0, case.gram, case.swap_settings, nm=case.nm)
        active = np.zeros((res.steps + 1, case.weight.shape[0]), dtype=np.bool_)
        active[0] = True
        active[res.log[:, 3], res.log[:, 0]] = True
        return GoldenOutputs(res.pruned, None, active, res.log, res.steps,
                             error_trace(res.error_before, res.log, res.log_delta, res.steps))
    if case.settings.variant == "exact":
        wanda = np.abs(case.weight) * np.sqrt(case.seq_sq)[None, :]
        res = exact_per_row(case.weight, case.pruned0, case.seq_sum, case.var, wanda, case.gram,
                            case.settings, nm=case.nm, initial_score=case.initial_score, trace=True)
        return GoldenOutputs(res.pruned, res.trace.eps, res.trace.active, res.trace.swaps, res.cycles,
                             res.trace.error)
    run = official_per_row if case.variant == "official" else dsnot_per_row
    res = run(case.weight, case.pruned0, case.seq_sum, case.seq_sq, case.var, case.settings,
              nm=case.nm, initial_score=case.initial_score, trace=True)
    return GoldenOutputs(res.pruned, res.trace.eps, res.trace.active, res.trace.swaps, res.cycles)


@dataclass(frozen=True)
class Mutant:
    name: str
    rule: str                       # the FORMAT.md rule it breaks
    variants: tuple[str, ...]       # the file variants it applies to
    patch: Callable | None = None   # () -> context manager that breaks the rule
    settings: Callable | None = None  # case -> case with the misread setting
    nm: bool | None = None          # True: N:M cases only, False: unstructured only


def outputs(case: GoldenCase, mutant: Mutant | None) -> GoldenOutputs:
    """The outputs of the plain code with ``mutant``'s bug (None: no bug)."""
    if mutant is None:
        return plain_outputs(case)
    if mutant.settings is not None:
        case = mutant.settings(case)
    with (mutant.patch() if mutant.patch is not None else contextlib.nullcontext()):
        return plain_outputs(case)


def applies(mutant: Mutant, case: GoldenCase) -> bool:
    if case.variant not in mutant.variants:
        return False
    return mutant.nm is None or mutant.nm == (case.nm is not None)


PLAIN_MODULES = (per_row, official_module, exact_module, common)


def patched(module, name, replacement):
    return lambda: mock.patch.object(module, name, replacement)


@contextlib.contextmanager
def _patched_everywhere(name, replacement):
    with contextlib.ExitStack() as stack:
        found = [m for m in PLAIN_MODULES if hasattr(m, name)]
        assert found, f"no plain DSnoT module has {name}; update this mutant"
        for module in found:
            stack.enter_context(mock.patch.object(module, name, replacement))
        yield


def patched_all(name, replacement):
    """Replace ``name`` in every plain module that defines or imports it."""
    return lambda: _patched_everywhere(name, replacement)


def with_settings(**changes):
    return lambda case: replace(case, settings=replace(case.settings, **changes))


def with_swap_settings(**changes):
    def change(case):
        s = case.swap_settings
        return replace(case, swap_settings=replace(s, **{k: v(s) for k, v in changes.items()}))
    return change


# --------------------------------------------------------------------------- candidate lists

def growth_ties_high(c, metric, pruned0, s):
    grow = [j for j in range(len(c)) if pruned0[j] and s * c[j] > 0]
    return sorted(grow, key=lambda j: (-s * metric[j], -j))


def prune_ties_high(c, wanda, pruned0, s):
    prune = [j for j in range(len(c)) if not pruned0[j] and s * c[j] < 0]
    return sorted(prune, key=lambda j: (wanda[j], -j))


def growth_zero_c(c, metric, pruned0, s):
    grow = [j for j in range(len(c)) if pruned0[j] and s * c[j] >= 0]
    return sorted(grow, key=lambda j: -s * metric[j])


def prune_zero_c(c, wanda, pruned0, s):
    prune = [j for j in range(len(c)) if not pruned0[j] and s * c[j] <= 0]
    return sorted(prune, key=lambda j: wanda[j])


def prune_any_sign(c, wanda, pruned0, s):
    return sorted([j for j in range(len(c)) if not pruned0[j]], key=lambda j: wanda[j])


def growth_past_the_end(c, metric, pruned0, s):
    """The sign-filtered list, then (instead of stopping) the other pruned weights."""
    grow = GROWTH_CANDIDATES(c, metric, pruned0, s)
    rest = sorted([j for j in range(len(c)) if pruned0[j] and j not in set(grow)], key=lambda j: -s * metric[j])
    return grow + rest


def prune_past_the_end(c, wanda, pruned0, s):
    """The sign-filtered list, then (instead of stopping) the other kept weights."""
    prune = PRUNE_CANDIDATES(c, wanda, pruned0, s)
    rest = sorted([j for j in range(len(c)) if not pruned0[j] and j not in set(prune)], key=lambda j: wanda[j])
    return prune + rest


def unfloored_variance(var, dtype=np.float64):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(var, dtype=dtype)


def nm_partner_largest(g, score, pruned0, pruned, m):
    start = g - g % m
    options = [j for j in range(start, start + m) if not pruned0[j] and not pruned[j]]
    return max(options, key=lambda j: score[j]) if options else None


def nm_partner_ties_high(g, score, pruned0, pruned, m):
    start = g - g % m
    options = [j for j in range(start, start + m) if not pruned0[j] and not pruned[j]]
    return min(options, key=lambda j: (score[j], -j)) if options else None


def nm_partner_any_kept(g, score, pruned0, pruned, m):
    """Any weight kept now, regrown ones included (instead of those kept by the initial mask)."""
    start = g - g % m
    options = [j for j in range(start, start + m) if not pruned[j] and j != g]
    return min(options, key=lambda j: score[j]) if options else None


# --------------------------------------------------------------------------- the reference loop

def reference_row_with(accept):
    """``reference_row`` with its acceptance test replaced: accept(eps, eps_after, tau, nm) -> bool."""
    def row(r, c, metric, wanda, score, pruned0, eps0, tau, nm, n_cycles):
        s = np.sign(eps0)
        grow = per_row.growth_candidates(c, metric, pruned0, s)
        prune = per_row.prune_candidates(c, wanda, pruned0, s) if nm is None else None
        run, eps = RowRun(pruned=list(pruned0), eps=[eps0]), eps0
        for cycle in range(1, n_cycles + 1):
            i = cycle - 1
            g = grow[i] if i < len(grow) else None
            if nm is None:
                q = prune[i] if i < len(prune) else None
            else:
                q = None if g is None else per_row.nm_partner(g, score, pruned0, run.pruned, nm[1])
            if g is None or q is None:
                break
            eps_after = eps + c[q] - c[g]
            if not accept(eps, eps_after, tau, nm):
                break
            run.pruned[g], run.pruned[q], eps = False, True, eps_after
            run.record(eps, True, (r, g, q, cycle))
        return run
    return row


def no_threshold(eps, eps_after, tau, nm):
    return eps_after * eps >= 0 and (nm is None or abs(eps_after) < abs(eps))


def no_sign_rule(eps, eps_after, tau, nm):
    return abs(eps) > tau and (nm is None or abs(eps_after) < abs(eps))


def no_strict_decrease(eps, eps_after, tau, nm):
    return abs(eps) > tau and eps_after * eps >= 0


def threshold_after(eps, eps_after, tau, nm):
    return abs(eps_after) > tau and eps_after * eps >= 0 and (nm is None or abs(eps_after) < abs(eps))


def one_cycle_more(case):
    return replace(case, settings=replace(case.settings, max_cycle_time=case.settings.max_cycle_time + 1))


# --------------------------------------------------------------------------- the official loop

def official_row_with(*, threshold_on_after=False, no_threshold_test=False, ignore_sign_check=False,
                      keep_stopped_entries=False, growth_ties_low=False):
    """``official_row`` with one of its rules broken."""
    def row(r, c, metric, wanda, score, pruned0, eps0, settings, nm, n_cycles, until_stop=False):
        grow, prune = official_module.official_lists(c, metric, wanda, pruned0)
        if growth_ties_low:   # the documented "lower column" read from the right end too
            grow = sorted(range(len(c)), key=lambda j: (metric[j] if pruned0[j] else 0.0, -j))
        score = [float("inf") if pruned0[j] else score[j] for j in range(len(c))]
        threshold = eps0.dtype.type(settings.update_threshold)
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
                official_module.pointer_error("regrowth", r, cycle)
            g = grow[position]
            if nm is None:
                if eps < 0:
                    slot, q_right = q_right, q_right - 1
                else:
                    slot, q_left = q_left, q_left + 1
                if not 0 <= slot < len(prune):
                    official_module.pointer_error("pruning", r, cycle)
                q = prune[slot]
            else:
                group = range(g - g % nm[1], g - g % nm[1] + nm[1])
                if all(score[j] == float("inf") for j in group):
                    official_module.pointer_error("N:M pruning", r, cycle)
                q = min(group, key=lambda j: score[j])
                score[q] = float("inf")
            eps_after = eps + c[q] - c[g]
            was_active = active
            if not no_threshold_test:
                active = active and abs(eps_after if threshold_on_after else eps) > threshold
            if (nm is not None or not settings.without_same_sign) and not ignore_sign_check:
                active = active and np.sign(eps_after) == np.sign(eps0)
            if was_active or not keep_stopped_entries:
                run.pruned[q], run.pruned[g] = active, not active
            if active:
                eps = (eps + c[q]) - c[g]
            run.record(eps, active, (r, g, q, cycle) if active else None)
            if until_stop and not active:
                break
        return run
    return row


def official_lists_zero_c_skipped(c, metric, wanda, pruned0):
    """Kept weights with c == 0 left out of the pruning list (instead of repeating position 0)."""
    grow, _ = official_lists(c, metric, wanda, pruned0)
    kept = sorted([j for j in range(len(c)) if not pruned0[j]], key=lambda j: wanda[j])
    return grow, [j for j in kept if c[j] < 0] + [j for j in kept if c[j] > 0][::-1]


def official_lists_zero_c_in_place(c, metric, wanda, pruned0):
    """Kept weights with c == 0 at their own position (instead of repeating list position 0)."""
    grow, _ = official_lists(c, metric, wanda, pruned0)
    kept = sorted([j for j in range(len(c)) if not pruned0[j]], key=lambda j: wanda[j])
    return grow, ([j for j in kept if c[j] < 0] + [j for j in kept if c[j] == 0]
                  + [j for j in kept if c[j] > 0][::-1])


def official_lists_prune_ties_high(c, metric, wanda, pruned0):
    grow, _ = official_lists(c, metric, wanda, pruned0)
    kept = sorted([j for j in range(len(c)) if not pruned0[j]], key=lambda j: (wanda[j], -j))
    negatives = [j for j in kept if c[j] < 0]
    positives = [j for j in kept if c[j] > 0]
    return grow, negatives + [kept[0]] * (len(kept) - len(negatives) - len(positives)) + positives[::-1]


def float64_official_sum(x, lanes=8):
    """ε₀ of the official variant summed in float64 (the released code sums in float32)."""
    return np.sum(np.asarray(x, dtype=np.float64), axis=1)


# --------------------------------------------------------------------------- SparseSwaps

def stop_on_any_miss(original):
    def round_(*args):
        done, error, stopped = original(*args)
        settings = args[7]
        return done, error, stopped or len(done) < min(settings.refresh, args[6])
    return round_


def source_mutant(module, name: str, old: str, new: str, **extra):
    """``module.name`` with one piece of its source replaced (a classic source-level mutation);
    ``extra``: names the new text uses."""
    source = inspect.getsource(getattr(module, name))
    assert source.count(old) == 1, f"{name}: the text to mutate is gone; update this mutant"
    namespace = {**vars(module), **extra}
    exec(textwrap.dedent(source.replace(old, new)), namespace)
    return namespace[name]


LAST_MINIMUM = "delta.size - 1 - int(np.argmin(delta.ravel()[::-1]))"


def first_group_best(delta, error, tol):
    """N:M: the best pair of the first group that has a swap to make (not the best of all groups)."""
    groups = delta.reshape(delta.shape[0], -1)                                   # [C/M, M·M]
    ok = np.flatnonzero(np.min(groups, axis=1) < -tol * error)
    group = int(ok[0]) if ok.size else 0
    return group * groups.shape[1] + int(np.argmin(groups[group]))


def window_ties_high(values, k):
    order = np.lexsort((-np.arange(values.shape[0]), values))[:k]
    cols = np.sort(order)
    return cols, np.isfinite(values[cols])


MUTANTS = [
    # growth and pruning orders (reference, exact: the same lists)
    Mutant("growth ties to the higher column", "growth order: ties",
           ("reference", "exact"), patched_all("growth_candidates", growth_ties_high)),
    Mutant("pruning ties to the higher column", "pruning order: ties",
           ("reference", "exact"), patched_all("prune_candidates", prune_ties_high), nm=False),
    Mutant("c == 0 admitted as a candidate", "sign filter: c = 0 never a candidate",
           ("reference", "exact"), lambda: _both(patched_all("growth_candidates", growth_zero_c),
                                                 patched_all("prune_candidates", prune_zero_c))),
    Mutant("pruning list not filtered by sign", "sign filter: pruning candidates",
           ("reference", "exact"), patched_all("prune_candidates", prune_any_sign), nm=False),
    Mutant("growth list read past its end", "running out of candidates",
           ("exact",), patched_all("growth_candidates", growth_past_the_end)),
    Mutant("pruning list read past its end", "running out of candidates",
           ("reference", "exact"), patched_all("prune_candidates", prune_past_the_end), nm=False),
    Mutant("no sign-consistency rule", "sign-consistency ε_after · ε ≥ 0",
           ("reference",), patched_all("reference_row", reference_row_with(no_sign_rule))),
    Mutant("no threshold test", "threshold stop |ε| > τ",
           ("reference",), patched_all("reference_row", reference_row_with(no_threshold))),
    Mutant("threshold tested on ε after the swap", "threshold stop |ε| > τ",
           ("reference",), patched_all("reference_row", reference_row_with(threshold_after))),
    Mutant("N:M without |ε_after| < |ε|", "N:M strict decrease",
           ("reference",), patched_all("reference_row", reference_row_with(no_strict_decrease)), nm=True),
    Mutant("one cycle more than max_cycle_time", "cycle cap",
           ("reference", "official", "exact"), settings=one_cycle_more),
    Mutant("N:M partner: largest score", "N:M partner choice",
           ("reference", "exact"), patched_all("nm_partner", nm_partner_largest), nm=True),
    Mutant("N:M partner ties to the higher column", "N:M partner: ties",
           ("reference", "exact"), patched_all("nm_partner", nm_partner_ties_high), nm=True),
    Mutant("N:M partner among all kept weights", "N:M partner: kept by the initial mask",
           ("reference", "exact"), patched_all("nm_partner", nm_partner_any_kept), nm=True),
    Mutant("no variance floor", "variance floor",
           ("reference", "official", "exact"), patched_all("floored_variance", unfloored_variance)),
    # official pointers
    Mutant("official growth ties to the lower column from the right end", "official growth order: ties",
           ("official",), patched_all("official_row", official_row_with(growth_ties_low=True))),
    Mutant("official pruning ties to the higher column", "official pruning order: ties",
           ("official",), patched_all("official_lists", official_lists_prune_ties_high), nm=False),
    Mutant("official c == 0 entries skipped", "official c == 0 entries",
           ("official",), patched_all("official_lists", official_lists_zero_c_skipped), nm=False),
    Mutant("official c == 0 entries at their own place", "official c == 0 entries",
           ("official",), patched_all("official_lists", official_lists_zero_c_in_place), nm=False),
    Mutant("official stopped rows' entries not rewritten", "official stopped rows rewritten",
           ("official",), patched_all("official_row", official_row_with(keep_stopped_entries=True))),
    Mutant("official threshold on ε after the swap", "official threshold on ε before the swap",
           ("official",), patched_all("official_row", official_row_with(threshold_on_after=True))),
    Mutant("official without threshold test", "official threshold on ε before the swap",
           ("official",), patched_all("official_row", official_row_with(no_threshold_test=True))),
    Mutant("official sign check ignored", "official sign check",
           ("official",), patched_all("official_row", official_row_with(ignore_sign_check=True))),
    Mutant("official ε₀ summed in float64", "official float32 arithmetic",
           ("official",), patched_all("torch_row_sum", float64_official_sum)),
    # exact variant
    Mutant("exact: lookahead ignored", "exact lookahead",
           ("exact",), settings=lambda case: with_settings(lookahead=1)(case)
           if case.settings.lookahead > 1 else with_settings(lookahead=2)(case)),
    Mutant("exact: on_reject misread", "exact on_reject",
           ("exact",), settings=lambda case: with_settings(
               on_reject="stop" if case.settings.on_reject == "skip" else "skip")(case)),
    Mutant("exact: pair ties to the later pair", "exact pair choice: ties",
           ("exact",), lambda: mock.patch.object(exact_module, "exact_row", source_mutant(
               exact_module, "exact_row", "if e < best_e:", "if e <= best_e:"))),
    # SparseSwaps
    Mutant("swaps: pair ties to the highest (i, j)", "swaps pair choice: ties", (SWAPS,),
           lambda: mock.patch.object(swaps_module, "row_round_unstructured", source_mutant(
               swaps_module, "row_round_unstructured", "int(np.argmin(delta))", LAST_MINIMUM)), nm=False),
    Mutant("swaps: N:M first group with a swap, not the best group", "swaps N:M: best over all groups", (SWAPS,),
           lambda: mock.patch.object(swaps_module, "row_round_nm", source_mutant(
               swaps_module, "row_round_nm", "int(np.argmin(delta))", "first_group_best(delta, error, settings.tol)",
               first_group_best=first_group_best)), nm=True),
    Mutant("swaps: N:M pair ties to the highest (group, i, j)", "swaps pair choice: ties", (SWAPS,),
           lambda: mock.patch.object(swaps_module, "row_round_nm", source_mutant(
               swaps_module, "row_round_nm", "int(np.argmin(delta))", LAST_MINIMUM)), nm=True),
    Mutant("swaps: window one larger", "swaps window", (SWAPS,),
           settings=with_swap_settings(window=lambda s: s.window + 1), nm=False),
    Mutant("swaps: refresh one larger", "swaps refresh", (SWAPS,),
           settings=with_swap_settings(refresh=lambda s: s.refresh + 1), nm=False),
    Mutant("swaps: tol ignored", "swaps stopping: ΔE < −tol · E_r", (SWAPS,),
           settings=with_swap_settings(tol=lambda s: 0.0)),
    Mutant("swaps: one swap more per row", "swaps: at most swap_max_iter", (SWAPS,),
           settings=with_swap_settings(max_swaps=lambda s: s.max_swaps + 1)),
    Mutant("swaps: a miss later in a round stops the row", "swaps stopping: a fresh round", (SWAPS,),
           patched(swaps_module, "row_round_unstructured", stop_on_any_miss(ROUND_UNSTRUCTURED)),
           nm=False),
    Mutant("swaps: window ties to the higher column", "swaps window: ties", (SWAPS,),
           patched(swaps_module, "smallest_row", window_ties_high), nm=False),
]


@contextlib.contextmanager
def _both_cm(a, b):
    with a(), b():
        yield


def _both(a, b):
    return _both_cm(a, b)
