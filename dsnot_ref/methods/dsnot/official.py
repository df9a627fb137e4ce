"""The official DSnoT variant (docs/dsnot.md §4b), pointer for pointer.

Reproduces the released code (zyxxmu/DSnoT, commit 4c029df, lib/prune.py ``prune_DSnoT``):
its regrowth and pruning lists, the two pointers read from both ends of each, its acceptance
rule (``still_active &= |ε| > threshold``) and its mask write for every row, stopped rows
included. How it differs from the reference variant, and which released-code defects are not
copied (a pointer leaving its list raises ``DSnoTPointerError``): reference.py's docstring.

Arithmetic: float32, as in the released code: c = W · seq_sum, the Wanda score
|W| · sqrt(seq_sq), c / var**γ, ε and its running updates are float32 (the statistics are
rounded to float32 on entry), and ε is summed in the order of torch's CPU sum
(dsnot_ref/released/torch_sum.py, the parity seam), so every value and decision equals the released code's on CPU, up
to torch's float32 sqrt, which is not correctly rounded (docs/dsnot.md §7).

``official_growth_order`` / ``official_prune_order`` are the lists' definitions; the loops read
only the ends that K = max_cycle_time cycles can reach (``official_growth_ends`` /
``official_prune_ends``), selected per block of rows with ``first_k`` / ``last_k``.
official_per_row.py has the same variant one row at a time (``official_row``), tested equal.
Shape letters: R output rows, C input columns, D = min(K, C) reachable entries per end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...backend import array_module, to_numpy
from ...released.averages import ReleasedAverages
from ...released.torch_sum import torch_row_sum
from ..contract import LayerProblem, Refinement, StatsNeeds
from ..scores import wanda_score
from ..selection import by_row_chunks, first_and_last_k, first_k, first_k_each, last_k
from .common import DSnoTPointerError, DSnoTSettings, Recorder, contributions_at, prepare
from .per_row import contributions, regrowth_metric


# --------------------------------------------------------------------------- official orders (§4b)

def official_growth_order(c, var, pruned0, pow_of_var: float):
    """Released code's regrowth list: all C columns sorted ascending (stable) by c / var**γ,
    kept columns counted as 0 (they sit in the middle). [R, C] -> [R, C] int64.

    The definition; the loop reads only its two ends, from ``official_growth_ends``.
    """
    xp = array_module(c)
    return xp.argsort(official_growth_metric(c, var, pruned0, pow_of_var), axis=1,
                      kind="stable").astype(xp.int64)


def official_row_errors(c, pruned0, lanes: int):
    """ε[r] = Σ_{j pruned} c[r, j] in c's dtype, added in torch's CPU order (the released code's
    ``torch.sum`` of c with kept entries set to 0). [R, C] -> [R]."""
    xp = array_module(c)
    return torch_row_sum(xp.where(pruned0, c, xp.zeros((), dtype=c.dtype)), lanes)


def official_growth_metric(c, var, pruned0, pow_of_var: float):
    """c / var**γ where initially pruned, 0 where kept. [R, C] -> [R, C] in c's dtype."""
    xp = array_module(c)
    return xp.where(pruned0, regrowth_metric(c, var, pow_of_var), xp.zeros((), dtype=c.dtype))


def official_growth_ends(c, var, pruned0, pow_of_var: float, k: int):
    """The two ends of ``official_growth_order`` that k cycles can reach, without a full sort.

    -> (left [R, D]: positions 0, 1, ... ; right [R, D]: positions C−1, C−2, ...).
    ``right`` lists the largest metrics first and, among ties, the higher column first: the
    order in which a pointer walking left from the end of a stable ascending sort meets them.
    """
    return first_and_last_k(official_growth_metric(c, var, pruned0, pow_of_var), k)


def official_prune_order(c, wanda, pruned0):
    """Released code's pruning list (``return_reorder_indice``), per row.

    The n_kept[r] kept columns sorted ascending (stable) by Wanda score; reordered so that slots
    [0, n_neg) hold the c < 0 ones in that order, slots [n_kept − n_pos, n_kept) the c > 0 ones in
    reverse order (the list ends with the smallest-score positive), and the n_zero slots in
    between all hold list position 0 (the smallest-score kept column: the released code's
    quirk for c == 0). Slots >= n_kept[r] are padding (-1).
    -> (order [R, C] int64, n_kept [R] int64).

    The definition; the loop reads only its two ends, from ``official_prune_ends``.
    """
    xp = array_module(c)
    n_rows, n_cols = c.shape
    by_score = xp.argsort(xp.where(pruned0, xp.inf, wanda), axis=1, kind="stable")  # kept first
    n_kept = xp.sum(~pruned0, axis=1).astype(xp.int64)                              # [R]
    position = xp.arange(n_cols, dtype=xp.int64)[None, :]                           # [1, C]
    is_kept = position < n_kept[:, None]
    c_sorted = xp.take_along_axis(c, by_score, axis=1)
    neg = is_kept & (c_sorted < 0)
    pos = is_kept & (c_sorted > 0)
    # destination slot of each sorted position: negatives keep their relative order from the
    # front; positives fill from the back, so the first positive lands in the last slot.
    neg_slot = xp.cumsum(neg, axis=1) - 1
    pos_slot = n_kept[:, None] - xp.cumsum(pos, axis=1)
    order = xp.where(is_kept, by_score[:, :1], -1).astype(xp.int64)   # zeros -> position 0
    r_neg, p_neg = xp.nonzero(neg)
    order[r_neg, neg_slot[r_neg, p_neg]] = by_score[r_neg, p_neg]
    r_pos, p_pos = xp.nonzero(pos)
    order[r_pos, pos_slot[r_pos, p_pos]] = by_score[r_pos, p_pos]
    return order, n_kept


def official_prune_ends(c, wanda, pruned0, k: int):
    """The slots of ``official_prune_order`` that k cycles can reach, without a full sort.

    -> (left [R, D]: slots 0, 1, ... ; right [R, D]: slots n_kept−1, n_kept−2, ...), D = min(k, C),
    −1 where a slot is outside the row's n_kept[r] kept weights. The list is negatives ascending |
    position-0 repeats for c == 0 | positives descending (``official_prune_order``), so a
    pointer's k reads are the k smallest-score negatives (from the left) or positives (from the
    right), then, in rows with fewer, the repeats and the far end of the other side.
    """
    xp = array_module(c)
    width = min(int(k), c.shape[1])
    if width == 0:
        empty = xp.zeros((c.shape[0], 0), dtype=xp.int64)
        return empty, empty
    kept = ~pruned0
    neg, pos = kept & (c < 0), kept & (c > 0)
    n_kept, n_neg, n_pos = (xp.sum(a, axis=1, keepdims=True) for a in (kept, neg, pos))  # [R, 1]

    neg_asc, pos_asc = first_k_each(wanda, width, (neg, pos))
    first = first_k(wanda, 1, kept)
    # descending ends (ties: higher column first) are reached only by a pointer that crosses
    # the whole other side: from the left when n_neg + n_zero < k, from the right likewise
    unused = xp.zeros_like(neg_asc)
    pos_desc = last_k(wanda, width, pos) if bool(xp.any(n_kept - n_pos < width)) else unused
    neg_desc = last_k(wanda, width, neg) if bool(xp.any(n_kept - n_neg < width)) else unused

    def at(window, i):
        return xp.take_along_axis(window, xp.clip(i, 0, width - 1), axis=1)

    j = xp.arange(width, dtype=xp.int64)[None, :]                        # reads so far
    left = xp.where(j < n_neg, at(neg_asc, j),
                    xp.where(j < n_kept - n_pos, first,
                             xp.where(j < n_kept, at(pos_desc, j - (n_kept - n_pos)), -1)))
    slot = n_kept - 1 - j
    right = xp.where(j < n_pos, at(pos_asc, j),
                     xp.where(slot >= n_neg, first,
                              xp.where(slot >= 0, at(neg_desc, j - (n_kept - n_neg)), -1)))
    return left.astype(xp.int64), right.astype(xp.int64)


# --------------------------------------------------------------------------- pointers and acceptance

def _pointer_error(kind: str, bad, cycle: int, detail: str):
    row = int(to_numpy(bad).nonzero()[0][0])
    raise DSnoTPointerError(
        f"official DSnoT: the {kind} pointer of row {row} at cycle {cycle} {detail}; the released "
        "code misbehaves here (layer too narrow or too few candidates for max_cycle_time); "
        "use variant 'reference' or fewer cycles"
    )


def read_growth_pointers(ends, c_ends, ok, n_left, n_right, go_right, cycle: int):
    """Official regrowth side: the column under the left or right pointer of every row, and
    its contribution.

    ``ends`` [R, 2D] holds the regrowth list's left end (positions 0, 1, ...) then its right
    end (C−1, C−2, ...) (``official_growth_ends``), ``c_ends`` their contributions and ``ok``
    whether the initial mask prunes them. The left pointer has read n_left entries, the right
    one n_right. Raises DSnoTPointerError if the pointer is past its end of the list or on a
    column that the initial mask keeps. -> (g [R] int64, c_g [R]).
    """
    xp = array_module(ends)
    width = ends.shape[1] // 2
    read = xp.where(go_right, n_right, n_left)                            # entries read so far
    outside = read >= width
    if bool(xp.any(outside)):
        _pointer_error("regrowth", outside, cycle, "left its list")
    position = (read + width * go_right)[:, None]                         # [R, 1] in [0, 2D)
    kept = ~xp.take_along_axis(ok, position, axis=1)[:, 0]
    if bool(xp.any(kept)):
        _pointer_error("regrowth", kept, cycle, "reached a weight the initial mask keeps")
    return xp.take_along_axis(ends, position, axis=1)[:, 0], xp.take_along_axis(c_ends, position, axis=1)[:, 0]


def read_prune_pointers(ends, c_ends, n_kept, n_left, n_right, go_right, cycle: int):
    """Official pruning side: slot n_left, or slot n_kept[r]−1−n_right when reading from the right,
    and its contribution (``ends`` [R, 2D]: the left then the right end from
    ``official_prune_ends``). Raises DSnoTPointerError outside [0, n_kept[r]). -> (q [R], c_q [R])."""
    xp = array_module(ends)
    width = ends.shape[1] // 2
    read = xp.where(go_right, n_right, n_left)
    outside = read >= n_kept
    if bool(xp.any(outside)):
        _pointer_error("pruning", outside, cycle, "left its list of kept weights")
    position = (xp.minimum(read, width - 1) + width * go_right)[:, None]  # [R, 1]
    return xp.take_along_axis(ends, position, axis=1)[:, 0], xp.take_along_axis(c_ends, position, axis=1)[:, 0]


def official_accept(still_active, eps, eps_after, sign0, threshold: float, sign_check: bool):
    """Released code's rule: still_active &= |ε| > threshold (ε before the swap), and with the
    sign check sign(ε_after) == sign(initial ε). The threshold is rounded to ε's dtype, as
    torch compares a float32 tensor with a Python float. -> [R] bool."""
    xp = array_module(eps)
    accept = still_active & (xp.abs(eps) > eps.dtype.type(threshold))
    if sign_check:
        accept &= xp.sign(eps_after) == sign0
    return accept


def apply_official_inplace(pruned, g, q, accept):
    """Released code's mask write for *every* row: pruned[q] = accept, pruned[g] = not accept."""
    xp = array_module(pruned)
    rows = xp.arange(pruned.shape[0], dtype=xp.int64)
    pruned[rows, q] = accept
    pruned[rows, g] = ~accept


# --------------------------------------------------------------------------- official loops

def official_lists(w, pruned0, seq_sum, seq_sq, var, pow_of_var: float, k: int, lanes: int,
                   with_pruning: bool = True):
    """ε and the reachable ends of the released code's two lists for a block of rows, each
    end with what the loop reads at its entries (so the loop never gathers from [R, C]).

    -> (eps [R], grow [R, 2D], c_grow [R, 2D], ok_grow [R, 2D] bool (initially pruned)
        [, n_kept [R], prune [R, 2D], c_prune [R, 2D]]); the two ends side by side, left
    first; no pruning list for N:M. D = min(k, C). Statistics and results in float32.
    """
    xp = array_module(w)
    w = w.astype(xp.float32, copy=False)                                  # converted once for c and Wanda
    c = contributions(w, seq_sum, xp.float32)                             # [R, C]
    eps = official_row_errors(c, pruned0, lanes)
    grow = xp.concatenate(official_growth_ends(c, var, pruned0, pow_of_var, k), axis=1)
    c_grow = xp.take_along_axis(c, grow, axis=1)
    ok_grow = xp.take_along_axis(pruned0, grow, axis=1)
    if not with_pruning:
        return eps, grow, c_grow, ok_grow
    wanda = wanda_score(w, seq_sq, xp.float32)                            # [R, C]
    prune = xp.concatenate(official_prune_ends(c, wanda, pruned0, k), axis=1)
    c_prune = xp.take_along_axis(c, xp.maximum(prune, 0), axis=1)       # -1: never read
    n_kept = xp.sum(~pruned0, axis=1)
    return eps, grow, c_grow, ok_grow, n_kept, prune, c_prune


def dsnot_official(w, pruned0, seq_sum, seq_sq, var, settings: DSnoTSettings, trace: bool = False):
    """Official DSnoT loop, unstructured (§4b). -> Refinement."""
    xp = array_module(w)
    n_rows = w.shape[0]
    eps, grow, c_grow, ok_grow, n_kept, prune, c_prune = by_row_chunks(
        official_lists, (w, pruned0), seq_sum, seq_sq, var, settings.pow_of_var_regrowing,
        settings.max_cycle_time, settings.torch_sum_lanes)
    zero = xp.zeros((), dtype=eps.dtype)
    sign0 = xp.sign(eps)
    rec = Recorder(eps, trace)
    pruned = pruned0.copy()
    g_left, g_right, q_left, q_right = (xp.zeros(n_rows, dtype=xp.int64) for _ in range(4))
    active = xp.ones(n_rows, dtype=xp.bool_)
    while rec.cycles < settings.max_cycle_time and bool(xp.any(active)):
        cycle = rec.cycles + 1
        grow_right = eps > 0              # ε > 0: read the largest metric (right end)
        g, c_g = read_growth_pointers(grow, c_grow, ok_grow, g_left, g_right, grow_right, cycle)
        g_left, g_right = g_left + ~grow_right, g_right + grow_right
        prune_right = eps < 0             # ε < 0: read a positive contribution (right end)
        q, c_q = read_prune_pointers(prune, c_prune, n_kept, q_left, q_right, prune_right, cycle)
        q_left, q_right = q_left + ~prune_right, q_right + prune_right
        eps_after = eps + c_q - c_g
        active = official_accept(active, eps, eps_after, sign0, settings.update_threshold,
                                 sign_check=not settings.without_same_sign)
        apply_official_inplace(pruned, g, q, active)
        eps = (eps + xp.where(active, c_q, zero)) - xp.where(active, c_g, zero)
        rec.cycle(eps, active, active, g, q)
    return rec.result(pruned, eps)


def read_nm_pruning(nm_score, g, m: int, cycle: int):
    """Official N:M pruning side: in g's group, the smallest score not yet set to +inf
    (ties to the lower column). Raises DSnoTPointerError if none is left. -> q [R]."""
    xp = array_module(nm_score)
    rows = xp.arange(g.shape[0], dtype=xp.int64)[:, None]
    group = (g - g % m)[:, None] + xp.arange(m, dtype=xp.int64)[None, :]  # [R, M]
    block = nm_score[rows, group]
    exhausted = xp.all(xp.isinf(block), axis=1)
    if bool(xp.any(exhausted)):
        _pointer_error("N:M pruning", exhausted, cycle, "found no weight left in its group")
    return group[rows[:, 0], xp.argmin(block, axis=1)]


def dsnot_official_nm(w, pruned0, seq_sum, seq_sq, var, initial_score, settings: DSnoTSettings,
                      m: int, trace: bool = False):
    """Official DSnoT loop, N:M branch (§4b). -> Refinement."""
    xp = array_module(w)
    n_rows = w.shape[0]
    eps, grow, c_grow, ok_grow = by_row_chunks(
        official_lists, (w, pruned0), seq_sum, seq_sq, var, settings.pow_of_var_regrowing,
        settings.max_cycle_time, settings.torch_sum_lanes, False)
    zero = xp.zeros((), dtype=eps.dtype)
    sign0 = xp.sign(eps)
    rec = Recorder(eps, trace)
    nm_score = xp.where(pruned0, xp.inf, xp.asarray(initial_score, dtype=xp.float32))
    pruned = pruned0.copy()
    rows = xp.arange(n_rows, dtype=xp.int64)
    g_left, g_right = xp.zeros(n_rows, dtype=xp.int64), xp.zeros(n_rows, dtype=xp.int64)
    active = xp.ones(n_rows, dtype=xp.bool_)
    while rec.cycles < settings.max_cycle_time and bool(xp.any(active)):
        cycle = rec.cycles + 1
        grow_right = eps > 0
        g, c_g = read_growth_pointers(grow, c_grow, ok_grow, g_left, g_right, grow_right, cycle)
        g_left, g_right = g_left + ~grow_right, g_right + grow_right
        q = read_nm_pruning(nm_score, g, m, cycle)
        c_q = contributions_at(w, seq_sum, rows, q)
        eps_after = eps + c_q - c_g
        active = official_accept(active, eps, eps_after, sign0, settings.update_threshold,
                                 sign_check=True)
        nm_score[rows, q] = xp.inf        # proposed q leaves the candidates, accepted or not
        apply_official_inplace(pruned, g, q, active)
        eps = (eps + xp.where(active, c_q, zero)) - xp.where(active, c_g, zero)
        rec.cycle(eps, active, active, g, q)
    return rec.result(pruned, eps)


# --------------------------------------------------------------------------- the refiner

@dataclass(frozen=True)
class Official:
    """The official DSnoT variant as a refiner (methods/contract.py): the released code's own
    float32 statistics (running averages, within-sequence variance) and float32 arithmetic."""

    settings: DSnoTSettings
    needs = StatsNeeds(variance="within", moments=ReleasedAverages)
    score_dtype = np.float32

    def refine(self, problem: LayerProblem, trace: bool = False) -> Refinement:
        w, pruned0, seq_sum, seq_sq, var, initial_score = prepare(problem, np.float32)
        if problem.nm is None:
            return dsnot_official(w, pruned0, seq_sum, seq_sq, var, self.settings, trace)
        return dsnot_official_nm(w, pruned0, seq_sum, seq_sq, var, initial_score, self.settings,
                                 problem.nm[1], trace)
