"""DSnoT, vectorised over all output rows (docs/dsnot.md §3-§4).

DSnoT ("Dynamic Sparse No Training") keeps every weight value and, in each output row r,
repeatedly regrows one pruned weight g and prunes one kept weight q so that the row's expected
output error moves toward zero:

    c[r, j] = W[r, j] · seq_sum[j]                        contribution      (§3)
    ε[r]    = Σ_{j pruned in row r} c[r, j]               row error         (§3)
    ε_after = ε[r] + c[r, q] − c[r, g]                    one swap          (§4)

Shape letters: R output rows, C input columns, K = max_cycle_time, N:M structured sparsity.
Units: ``seq_sum`` is (1/S) Σ_s Σ_t x (the "per-sequence sum", L × mean), so ε and
``update_threshold`` are in those units, as in the released code. All statistics are float64.

Two variants (``DSnoTSettings.variant``):

* ``"reference"`` (default, §4a): candidate lists filtered by sign, never read past their end;
  a swap is accepted only when |ε| > threshold and ε_after·ε >= 0, so |ε| never increases.
* ``"official"`` (§4b): reproduces the released code (zyxxmu/DSnoT, commit 4c029df,
  lib/prune.py ``prune_DSnoT``) pointer for pointer.

Differences between the variants
--------------------------------
- variance: reference uses the pooled variance; official the mean within-sequence variance
  (the caller passes the right ``var``; both are floored at ``VAR_FLOOR``).
- growth list: reference = initially pruned weights whose contribution has the sign of ε
  (exactly 0 never), best first; official = all C columns sorted by c/var**γ with kept ones at
  0, read by two pointers from both ends.
- pruning list: reference = initially kept weights with contribution of sign opposite to ε,
  by Wanda score; official = all kept weights by Wanda score, negatives first, positives last
  reversed, zero contributions mapped to list position 0 (a quirk, reproduced).
- acceptance: reference |ε| > threshold and ε_after·ε >= 0 (N:M also |ε_after| < |ε|), a row
  that rejects or runs out of candidates stops; official ``still_active &= |ε| > threshold``
  on ε *before* the swap, with the sign check off by default (``without_same_sign=True``);
  pointers of stopped rows keep moving and their mask entries are rewritten
  (pruned[q] = False, pruned[g] = True) every cycle, exactly as in the released code.
- N:M pruned weight: reference = smallest initial score among the weights of g's group that
  are still kept from the initial mask; official = smallest initial score not yet set to +inf
  (the score of every proposed q is set to +inf, accepted or not).
- ties: both variants break ties by the lower column (stable sorts; for "largest first" lists
  too). The released code uses stable sorts for the lists but an unstable ``torch.sort``/
  ``topk`` for the N:M masks and the N:M pruned weight; we use the lower column there as well.

Consequence of reproducing the released code: with the c == 0 quirk (a kept weight whose input
channel has seq_sum = 0, e.g. a dead channel) the official variant can prune the same weight
twice or un-prune it in a stopped row, so a row's pruned count can change and the running ε
can differ from the ε of the final mask. The reference variant has neither problem.

Released-code defects not copied
--------------------------------
- division by a zero variance (a dead or constant input channel gives inf/NaN metrics): we
  floor the variance at ``VAR_FLOOR``.
- when a pointer leaves its list (narrow layers: C of tens to ~100 columns, or very low
  sparsity) the released code regrows a weight that is already kept, prunes a kept weight in a
  stopped row, or indexes out of range; the official variant raises ``DSnoTPointerError``
  instead. Precisely: a regrowth pointer reading a column the initial mask keeps (or past the
  list), a pruning pointer reading outside its K_r kept entries, or an N:M group with no
  finite score left.
- the SparseGPT initial score from a never-accumulated Hessian, ``pow_of_var_pruning`` parsed
  but unused, ``--without_same_sign`` read with ``type=bool``: see docs/dsnot.md; not here.

Trace format (``trace=True``): ``DSnoTTrace`` with
  ``eps``    [cycles+1, R] float64: ε of each row after k cycles (row 0 = initial ε); a
             stopped row repeats its last value (official: the loop's running ε);
  ``active`` [cycles+1, R] bool: row still active after k cycles (row 0 all True);
             cycle k accepted a swap in row r iff active[k, r];
  ``swaps``  [n, 4] int64: (row, grown column, pruned column, cycle), cycles counted from 1,
             ordered by cycle then row.

How the code is laid out: each step is a function (``contributions``, ``row_errors``,
``growth_order``, ``prune_order``, ``propose_swaps``, ``accept_swaps``, ``apply_swaps_inplace``;
official: ``official_growth_order``, ``official_prune_order``, ``read_*_pointers``,
``official_accept``, ``apply_official_inplace``). For speed the lists are built per block of
rows (``by_row_chunks``, blocks on threads with NumPy) and only their first K entries (the
most K cycles can read) are kept, found by partitioning instead of sorting
(``stable_smallest`` / ``stable_largest``: same order as a stable argsort, ties at the K-th
place resolved by column); the official variant selects both growth ends, and the pruning
list's negative and positive parts, with one partition each (``smallest_and_largest``,
``smallest_kept_of_each_sign``), falling back to separate selections for unbalanced rows.
Sort keys are built without ``where`` (``masked_key``), which branches per element. The loop
gathers the few contributions it needs from W. ``dsnot_loop.py`` is the plain row-by-row
oracle these are tested against; ``tests/test_stable_selection.py`` holds each shortcut to
the full stable sort it replaces.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..backend import array_module, to_device, to_numpy
from ..errors import UserError
from .scores import check_nm, wanda_score

VARIANTS = ("reference", "official", "exact")

# Variances below this are treated as this value in c / var**γ, so that a dead or constant
# input channel (var = 0) gives a finite metric. Activations of LLM layers have variances many
# orders of magnitude above it, so it never changes an ordering in practice.
VAR_FLOOR = 1e-12


@dataclass(frozen=True)
class DSnoTSettings:
    variant: str = "reference"          # "reference" | "official" | "exact"
    max_cycle_time: int = 50            # K, at most one swap per row and cycle
    update_threshold: float = 0.1       # in per-sequence-sum units (see module docstring)
    pow_of_var_regrowing: float = 1.0   # γ in c / var**γ; 0 = no division
    without_same_sign: bool = True      # official variant only (True = sign check off)
    # exact variant only (docs/exact_variant.md):
    lookahead: int = 1                  # best of the next k growth x k pruning candidates
    cycle_fraction: float | None = None  # cycle budget int(fraction · C); None = max_cycle_time
    on_reject: str = "stop"             # "stop" the row, or "skip" the growth candidate

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

def contributions(w, seq_sum):
    """c[r, j] = W[r, j] · seq_sum[j]: weight (r, j)'s share of the expected output.

    [R, C], [C] -> [R, C] float64, in per-sequence-sum units.
    """
    xp = array_module(w)
    return w.astype(xp.float64, copy=False) * to_device(seq_sum, xp).astype(xp.float64, copy=False)[None, :]


def row_errors(c, pruned):
    """ε[r] = Σ_{j pruned} c[r, j], dense minus sparse expected output. [R, C] -> [R] float64.

    c · pruned rather than ``where(pruned, c, 0)``: the same terms in the same order (a kept
    term is ±0 instead of 0, which no sum with a nonzero term sees), several times faster
    than a branch per element on a random mask; + 0.0 makes a zero sum +0.0 as ``where`` gives.
    """
    xp = array_module(c)
    return xp.sum(c * pruned, axis=1) + 0.0


def row_counts(mask):
    """Number of True entries in each row. [R, C] bool -> [R] int64.

    Summed as bytes with an int32 accumulator: about 4x faster than ``sum`` of a bool array,
    which widens every entry to int64 first.
    """
    xp = array_module(mask)
    return xp.sum(mask.view(xp.uint8), axis=1, dtype=xp.int32).astype(xp.int64)


def floored_variance(var):
    """var as float64, floored at VAR_FLOOR (so a dead channel cannot give inf/NaN). [C] -> [C]."""
    xp = array_module(var)
    return xp.maximum(xp.asarray(var, dtype=xp.float64), VAR_FLOOR)


def regrowth_metric(c, var, pow_of_var: float):
    """Growth criterion c[r, j] / var[j]**γ (γ = 0: c itself). [R, C], [C] -> [R, C] float64."""
    if pow_of_var == 0:
        return c
    return c / (floored_variance(var) ** pow_of_var)[None, :]


# --------------------------------------------------------------------------- sorting helpers

def masked_key(values, mask, fill: float):
    """Sort key ``where(mask, values, fill)`` for finite values and fill = ±inf. [R, C] -> [R, C].

    Computed as values + [fill, 0][mask]: NumPy's ``where`` branches on every element and is
    about 5x slower on a random mask. Equal to ``where`` except that -0.0 becomes 0.0, which
    no comparison or sort tells apart.
    """
    xp = array_module(values)
    table = xp.zeros(2, dtype=xp.float64)                                 # built where the arrays live
    table[0] = fill                                                       # index 0: not in mask
    return values + xp.take(table, mask.view(xp.uint8))

def stable_smallest(key, k: int):
    """Column indices of the k smallest keys per row, in stable ascending order.

    Equals ``argsort(key, axis=1, kind="stable")[:, :k]`` (ties: lower column first) but costs
    O(C) per row when k is small: the k smallest under the (key, column) order are selected
    by partitioning, then only those are sorted. [R, C] -> [R, min(k, C)] int64.
    """
    xp = array_module(key)
    n_rows, n_cols = key.shape
    k = min(int(k), n_cols)
    if k == 0:
        return xp.zeros((n_rows, 0), dtype=xp.int64)
    if k == 1:
        return xp.argmin(key, axis=1)[:, None].astype(xp.int64)        # first minimum
    if 4 * k >= n_cols:                       # + 0.0: -0.0 and 0.0 are one key for any sort
        return xp.argsort(key + 0.0, axis=1, kind="stable")[:, :k].astype(xp.int64)
    kth = xp.partition(key, k - 1, axis=1)[:, k - 1:k]                  # [R, 1] k-th smallest
    take = key <= kth                                                     # [R, C]
    # Every row has >= k keys <= its k-th smallest; exactly k everywhere means no tie
    # straddles the k-th place, so the selected set is the unique one (one count, no sync per row).
    if int(xp.count_nonzero(take)) != n_rows * k:
        take = _smallest_with_ties(key, kth, k)
    return _ordered_by_key(key, selected_columns(take, k), descending=False)


def stable_largest(key, k: int):
    """Column indices of the k largest keys per row, largest first, ties: higher column first.

    The order in which a pointer walking left from the end of a stable ascending argsort meets
    the columns: equals ``argsort(key, axis=1, kind="stable")[:, ::-1][:, :k]``.
    [R, C] -> [R, min(k, C)] int64.
    """
    xp = array_module(key)
    n_rows, n_cols = key.shape
    k = min(int(k), n_cols)
    if k <= 1 or 4 * k >= n_cols:
        return (n_cols - 1) - stable_smallest(-key[:, ::-1], k)          # mirror the columns
    kth = xp.partition(key, n_cols - k, axis=1)[:, n_cols - k:n_cols - k + 1]   # [R, 1] k-th largest
    take = key >= kth
    if int(xp.count_nonzero(take)) != n_rows * k:                       # a tie at the k-th place
        return (n_cols - 1) - stable_smallest(-key[:, ::-1], k)
    return _ordered_by_key(key, selected_columns(take, k)[:, ::-1], descending=True)


def selected_columns(take, k: int):
    """The columns of the k True entries of each row, ascending. [R, C] bool -> [R, k] int64."""
    xp = array_module(take)
    n_rows, n_cols = take.shape
    flat = xp.flatnonzero(take).reshape(n_rows, k)                       # row-major: rows in order
    return flat - xp.arange(0, n_rows * n_cols, n_cols, dtype=xp.int64)[:, None]


def _smallest_with_ties(key, kth, k: int):
    """The k smallest of each row under (key, column) order when ties straddle the k-th place:
    all keys below the k-th value, then the lowest tied columns. [R, C], [R, 1] -> [R, C] bool."""
    xp = array_module(key)
    below, tied = key < kth, key == kth
    n_tied_needed = k - xp.sum(below, axis=1, keepdims=True)             # [R, 1]
    return below | (tied & (xp.cumsum(tied, axis=1, dtype=xp.int32) <= n_tied_needed))


def _ordered_by_key(key, cols, descending: bool):
    """Selected columns ordered by their keys, ties by column in the order ``cols`` has them
    (ascending columns for ascending keys, descending for descending). [R, k] -> [R, k] int64."""
    xp = array_module(key)
    values = xp.take_along_axis(key, cols, axis=1)                       # [R, k]
    return xp.take_along_axis(cols, _stable_order(-values if descending else values), axis=1)


def _stable_order(values, k: int | None = None):
    """``argsort(values, axis=1, kind="stable")[:, :k]`` for values already in column order.

    NumPy's default argsort is several times faster than the stable one; when the first k + 1
    sorted values of every row are strictly increasing the order is unique, so both agree.
    Otherwise (ties, e.g. padding with inf) the stable sort is used. [R, W] -> [R, min(k, W)].
    """
    xp = array_module(values)
    k = values.shape[1] if k is None else min(int(k), values.shape[1])
    values = values + 0.0                      # -0.0 -> 0.0: the two zeros are one key
    order = xp.argsort(values, axis=1)
    head = xp.take_along_axis(values, order[:, :k + 1], axis=1)          # [R, k + 1]
    if bool(xp.all(head[:, 1:] > head[:, :-1])):
        return order[:, :k]
    return xp.argsort(values, axis=1, kind="stable")[:, :k]


def smallest_and_largest(key, k: int):
    """``(stable_smallest(key, k), stable_largest(key, k))`` with one partition instead of two.

    When the k smallest keys of a row are negative and the k largest positive (the growth
    metric of a wide layer), both lie among the 3k keys of largest |key|; the keys are selected
    once by |key| and each end is sorted within the selection. A row where that does not hold
    (or a tie at the selection's edge) falls back to the two separate selections, so the result
    is always exactly theirs. [R, C] -> ([R, min(k, C)], [R, min(k, C)]) int64.
    """
    xp = array_module(key)
    n_rows, n_cols = key.shape
    width = 3 * int(k)
    if k == 0 or 4 * width >= n_cols:
        return stable_smallest(key, k), stable_largest(key, k)
    size = xp.abs(key)                                                    # [R, C]
    edge = xp.partition(size, n_cols - width, axis=1)[:, n_cols - width:n_cols - width + 1]  # [R, 1]
    take = size >= edge                                                   # the 3k largest |key|
    if int(xp.count_nonzero(take)) != n_rows * width:                    # a tie at the edge
        return stable_smallest(key, k), stable_largest(key, k)
    cols = selected_columns(take, width)                                  # [R, 3k] ascending
    values = xp.take_along_axis(key, cols, axis=1)
    if not (bool(xp.all(xp.sum(values < 0, axis=1) >= k)) and bool(xp.all(xp.sum(values > 0, axis=1) >= k))):
        return stable_smallest(key, k), stable_largest(key, k)
    smallest = xp.take_along_axis(cols, _stable_order(xp.where(values < 0, values, xp.inf), k), axis=1)
    cols, values = cols[:, ::-1], values[:, ::-1]                         # descending columns
    largest = xp.take_along_axis(cols, _stable_order(-xp.where(values > 0, values, -xp.inf), k), axis=1)
    return smallest, largest


# Rows per block in ``by_row_chunks``: about 2**18 entries (2 MiB per float64 temporary), so a
# block's temporaries stay in cache. Tests lower it to exercise the chunking on small inputs.
ROW_CHUNK_ENTRIES = 1 << 18
# On a GPU small blocks only add kernel launches: blocks of 2**24 entries (128 MiB per float64
# temporary) bound the memory and keep the device busy.
DEVICE_ROW_CHUNK_ENTRIES = 1 << 24
# NumPy releases the GIL in partitions, comparisons and reductions, so blocks are built on
# this many threads (the calibration forward pass uses every core too). 1 = serial.
LIST_THREADS = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def by_row_chunks(fn, row_arrays, *args):
    """Apply a row-independent list builder to blocks of rows and stack the results.

    Same result as ``fn(*row_arrays, *args)``: rows are independent, so neither the block size
    nor the thread a block runs on can change a value. The temporaries of one block stay small
    and in cache, which is several times faster than whole-matrix temporaries for R in the
    thousands. ``row_arrays`` are split along axis 0; ``args`` are passed whole.
    """
    xp = array_module(row_arrays[0])
    n_rows, n_cols = row_arrays[0].shape[0], max(1, row_arrays[0].shape[-1])
    entries = ROW_CHUNK_ENTRIES if xp is np else DEVICE_ROW_CHUNK_ENTRIES
    chunk = max(1, entries // n_cols)
    if n_rows <= chunk:
        return fn(*row_arrays, *args)

    def block(i):
        return fn(*(a[i:i + chunk] for a in row_arrays), *args)

    starts = range(0, n_rows, chunk)
    if xp is np and LIST_THREADS > 1:
        with ThreadPoolExecutor(max_workers=LIST_THREADS) as pool:
            parts = list(pool.map(block, starts))                        # in block order
    else:
        parts = [block(i) for i in starts]
    return tuple(xp.concatenate([p[j] for p in parts], axis=0) for j in range(len(parts[0])))


# --------------------------------------------------------------------------- reference orders (§4a)

def growth_order(c, var, pruned0, eps, pow_of_var: float, limit: int | None = None):
    """Regrowth candidates of each row, best first (reference variant).

    Candidates: weights pruned by the initial mask whose contribution has the sign of ε[r]
    (strictly; c = 0 never helps). Ranked by c / var**γ: largest first when ε > 0, smallest
    (most negative) first when ε < 0; ties to the lower column.
    [R, C] ... -> (order [R, min(limit, C)] int64, count [R] int64 valid entries per row).
    """
    xp = array_module(c)
    signed = c * xp.sign(eps)[:, None]                     # > 0 where c has the sign of ε
    candidate = pruned0 & (signed > 0)                                    # [R, C]
    key = masked_key(-regrowth_metric(signed, var, pow_of_var), candidate, xp.inf)
    limit = c.shape[1] if limit is None else limit
    return stable_smallest(key, limit), row_counts(candidate)


def prune_order(c, wanda, pruned0, eps, limit: int | None = None):
    """Pruning candidates of each row, best first (reference variant).

    Candidates: weights kept by the initial mask whose contribution has the sign opposite to
    ε[r] (c < 0 when ε > 0, c > 0 when ε < 0), by Wanda score, smallest first, ties to the
    lower column. -> (order [R, min(limit, C)] int64, count [R] int64).
    """
    xp = array_module(c)
    candidate = ~pruned0 & (c * xp.sign(eps)[:, None] < 0)
    key = masked_key(wanda, candidate, xp.inf)
    limit = c.shape[1] if limit is None else limit
    return stable_smallest(key, limit), row_counts(candidate)


# --------------------------------------------------------------------------- one cycle (§4)

def next_candidate(order, count, n_done):
    """Entry ``n_done[r]`` of each row's candidate list, and whether the list still has one.

    ``n_done[r]`` swaps were accepted so far, so the next candidate sits at that position.
    [R, W], [R], [R] -> (column [R] int64, meaningless where not available; available [R] bool).
    """
    xp = array_module(order)
    available = n_done < count
    if order.shape[1] == 0:
        return xp.zeros(order.shape[0], dtype=xp.int64), available
    at = xp.minimum(n_done, order.shape[1] - 1)[:, None]                  # [R, 1]
    return xp.take_along_axis(order, at, axis=1)[:, 0], available


def propose_swaps(grow, n_grow, prune, n_prune, n_done):
    """The next (g, q) of every row: its next regrowth and next pruning candidate.

    -> g [R], q [R] int64, available [R] bool (both lists still have an entry).
    """
    g, has_g = next_candidate(grow, n_grow, n_done)
    q, has_q = next_candidate(prune, n_prune, n_done)
    return g, q, has_g & has_q


def propose_nm_pruning(g, initial_score, pruned, pruned0, m: int):
    """N:M reference: in g's group of M columns, the weight still kept from the initial mask
    with the smallest initial score (ties to the lower column). -> q [R], available [R]."""
    xp = array_module(initial_score)
    rows = xp.arange(g.shape[0], dtype=xp.int64)[:, None]                 # [R, 1]
    group = (g - g % m)[:, None] + xp.arange(m, dtype=xp.int64)[None, :]  # [R, M] columns
    candidate = ~pruned0[rows, group] & ~pruned[rows, group]              # [R, M]
    key = xp.where(candidate, initial_score[rows, group], xp.inf)
    at = xp.argmin(key, axis=1)                                           # first minimum
    return group[rows[:, 0], at], xp.any(candidate, axis=1)


def accept_swaps(eps, eps_after, candidate, threshold: float, strict_decrease: bool = False):
    """Reference acceptance: |ε| > threshold and ε_after·ε >= 0 (sign kept, zero allowed).

    ``strict_decrease`` adds |ε_after| < |ε| (N:M, where q's sign is not filtered). -> [R] bool.
    """
    xp = array_module(eps)
    accept = candidate & (xp.abs(eps) > threshold) & (eps_after * eps >= 0)
    if strict_decrease:
        accept &= xp.abs(eps_after) < xp.abs(eps)
    return accept


def apply_swaps_inplace(pruned, eps, g, q, c_g, c_q, accept):
    """Flip both mask entries of accepted rows (edits ``pruned``); return the new ε [R]."""
    xp = array_module(pruned)
    rows = xp.nonzero(accept)[0]
    pruned[rows, g[rows]] = False
    pruned[rows, q[rows]] = True
    return (eps + xp.where(accept, c_q, 0.0)) - xp.where(accept, c_g, 0.0)


# --------------------------------------------------------------------------- trace recorder

class _Recorder:
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


# --------------------------------------------------------------------------- reference loop

def contributions_at(w, seq_sum, rows, cols):
    """c[rows, cols] = W[rows, cols] · seq_sum[cols] without forming c. [n], [n] -> [n] float64."""
    xp = array_module(w)
    return w[rows, cols].astype(xp.float64) * seq_sum[cols]


def reference_lists(w, pruned0, seq_sum, seq_sq, var, pow_of_var: float, limit: int,
                    with_pruning: bool = True):
    """ε and the reference candidate lists of a block of rows (see ``growth_order``,
    ``prune_order``). -> (eps [R], grow, n_grow[, prune, n_prune]); no pruning list for N:M."""
    w = w.astype(array_module(w).float64, copy=False)                     # widened once for c and Wanda
    c = contributions(w, seq_sum)                                         # [R, C]
    eps = row_errors(c, pruned0)
    grow, n_grow = growth_order(c, var, pruned0, eps, pow_of_var, limit)
    if not with_pruning:
        return eps, grow, n_grow
    prune, n_prune = prune_order(c, wanda_score(w, seq_sq), pruned0, eps, limit)
    return eps, grow, n_grow, prune, n_prune


def dsnot_reference(w, pruned0, seq_sum, seq_sq, var, settings: DSnoTSettings, nm=None,
                    initial_score=None, trace: bool = False):
    """Reference DSnoT loop (§4a). -> (pruned [R, C], ε [R], recorder)."""
    xp = array_module(w)
    n_rows = w.shape[0]
    lists = by_row_chunks(reference_lists, (w, pruned0), seq_sum, seq_sq, var,
                          settings.pow_of_var_regrowing, settings.max_cycle_time, nm is None)
    eps, grow, n_grow = lists[:3]
    if nm is None:
        prune, n_prune = lists[3:]
    rec = _Recorder(eps, trace)
    pruned = pruned0.copy()
    rows = xp.arange(n_rows, dtype=xp.int64)
    n_done = xp.zeros(n_rows, dtype=xp.int64)
    active = xp.ones(n_rows, dtype=xp.bool_)
    while rec.cycles < settings.max_cycle_time and bool(xp.any(active)):
        if nm is None:
            g, q, available = propose_swaps(grow, n_grow, prune, n_prune, n_done)
        else:
            g, has_g = next_candidate(grow, n_grow, n_done)
            q, has_q = propose_nm_pruning(g, initial_score, pruned, pruned0, nm[1])
            available = has_g & has_q
        c_g, c_q = contributions_at(w, seq_sum, rows, g), contributions_at(w, seq_sum, rows, q)
        eps_after = eps + c_q - c_g
        active = accept_swaps(eps, eps_after, active & available, settings.update_threshold,
                              strict_decrease=nm is not None)
        eps = apply_swaps_inplace(pruned, eps, g, q, c_g, c_q, active)
        n_done += active
        rec.cycle(eps, active, g, q)
    return pruned, eps, rec


# --------------------------------------------------------------------------- official orders (§4b)

def official_growth_order(c, var, pruned0, pow_of_var: float):
    """Released code's regrowth list: all C columns sorted ascending (stable) by c / var**γ,
    kept columns counted as 0 (they sit in the middle). [R, C] -> [R, C] int64.

    The definition; the loop reads only its two ends, from ``official_growth_ends``.
    """
    xp = array_module(c)
    return xp.argsort(official_growth_metric(c, var, pruned0, pow_of_var), axis=1,
                      kind="stable").astype(xp.int64)


def official_growth_metric(c, var, pruned0, pow_of_var: float):
    """c / var**γ where initially pruned, 0 where kept. [R, C] -> [R, C] float64.

    A product, not ``where``: several times faster on a random mask; a kept entry may be -0.0,
    which sorts as 0.
    """
    return regrowth_metric(c, var, pow_of_var) * pruned0


def official_growth_ends(c, var, pruned0, pow_of_var: float, k: int):
    """The two ends of ``official_growth_order`` that k cycles can reach, without a full sort.

    -> (left [R, min(k, C)]: positions 0, 1, ... ; right [R, min(k, C)]: positions C−1, C−2, ...).
    ``right`` lists the largest metrics first and, among ties, the higher column first: the
    order in which a pointer walking left from the end of a stable ascending sort meets them.
    """
    metric = official_growth_metric(c, var, pruned0, pow_of_var)         # [R, C]
    return smallest_and_largest(metric, k)


def official_prune_order(c, wanda, pruned0):
    """Released code's pruning list (``return_reorder_indice``), per row.

    The K_r kept columns sorted ascending (stable) by Wanda score; reordered so that slots
    [0, n_neg) hold the c < 0 ones in that order, slots [K_r − n_pos, K_r) the c > 0 ones in
    reverse order (the list ends with the smallest-score positive), and the n_zero slots in
    between all hold list position 0 (the smallest-score kept column: the released code's
    quirk for c == 0). Slots >= K_r are padding (-1).
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

    -> (left [R, W]: slots 0, 1, ... ; right [R, W]: slots K_r−1, K_r−2, ...), W = min(k, C),
    −1 where a slot is outside the row's K_r kept weights. Built from the k smallest and k
    largest Wanda scores among the negative- and positive-contribution kept weights, which is
    all a pointer can reach in k steps from either end (see ``official_prune_order`` for the
    layout: negatives ascending | position-0 repeats for c == 0 | positives descending).
    """
    xp = array_module(c)
    width = min(int(k), c.shape[1])
    if width == 0:
        empty = xp.zeros((c.shape[0], 0), dtype=xp.int64)
        return empty, empty
    kept = ~pruned0
    # Wide layers: every row has >= k kept weights of each sign, so k reads from the left
    # stay among the negatives and k reads from the right among the positives.
    ends = smallest_kept_of_each_sign(c, wanda, kept, width)
    if ends is not None:
        return ends
    return _official_prune_ends_any_row(c, wanda, kept, width)


def smallest_kept_of_each_sign(c, wanda, kept, k: int):
    """The k smallest-score kept columns with c < 0 and those with c > 0 (each ascending,
    ties: lower column first), or None unless every row has k of each among its 3k smallest
    kept scores (one partition instead of two; with balanced signs that fails with
    probability ~1e-5 per row). [R, C] ... -> ([R, k], [R, k]) int64 | None.
    """
    xp = array_module(c)
    selected = stable_smallest(masked_key(wanda, kept, xp.inf), 3 * k)   # [R, 3k] (score, column) order
    is_kept = xp.take_along_axis(kept, selected, axis=1)
    c_sel = xp.take_along_axis(c, selected, axis=1)
    neg, pos = is_kept & (c_sel < 0), is_kept & (c_sel > 0)              # [R, 3k]
    if not (bool(xp.all(xp.sum(neg, axis=1) >= k)) and bool(xp.all(xp.sum(pos, axis=1) >= k))):
        return None

    def first_k(of_sign):            # the first k selected entries of one sign, in order
        return xp.take_along_axis(selected, xp.argsort(~of_sign, axis=1, kind="stable")[:, :k], axis=1)

    return first_k(neg), first_k(pos)


def _official_prune_ends_any_row(c, wanda, kept, width: int):
    """``official_prune_ends`` for rows with few kept weights of a sign (narrow layers, high
    sparsity): each part of the list selected on its own, pointers that cross the middle
    (the c == 0 repeats) or the whole other side included."""
    xp = array_module(c)
    neg, pos = kept & (c < 0), kept & (c > 0)
    n_kept, n_neg, n_pos = (xp.sum(a, axis=1, keepdims=True) for a in (kept, neg, pos))  # [R, 1]

    def smallest(mask, k):           # ascending score, ties: lower column first
        return stable_smallest(masked_key(wanda, mask, xp.inf), k)

    def largest(mask, k):            # descending score, ties: higher column first
        return stable_largest(masked_key(wanda, mask, -xp.inf), k)

    neg_asc, pos_asc, first = smallest(neg, width), smallest(pos, width), smallest(kept, 1)
    # The far ends are reached only by a pointer that crosses the whole other side: from the
    # left when n_neg + n_zero < k, from the right when n_pos + n_zero < k.
    unused = xp.zeros_like(neg_asc)
    pos_desc = largest(pos, width) if bool(xp.any(n_kept - n_pos < width)) else unused
    neg_desc = largest(neg, width) if bool(xp.any(n_kept - n_neg < width)) else unused

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


def _pointer_error(kind: str, bad, cycle: int, detail: str):
    row = int(to_numpy(bad).nonzero()[0][0])
    raise DSnoTPointerError(
        f"official DSnoT: the {kind} pointer of row {row} at cycle {cycle} {detail}; the released "
        "code misbehaves here (layer too narrow or too few candidates for max_cycle_time); "
        "use variant 'reference' or fewer cycles"
    )


def row_entries(table, position):
    """table[r, position[r]] for every row r. [R, W], [R] -> [R].

    One gather from the flattened table (several times faster than ``table[rows, position]``).
    """
    xp = array_module(table)
    n_rows, width = table.shape
    return xp.take(table.reshape(-1), xp.arange(n_rows, dtype=xp.int64) * width + position)


def read_growth_pointers(ends, c_ends, ok, n_left, n_right, go_right, cycle: int):
    """Official regrowth side: the column under the left or right pointer of every row, and
    its contribution.

    ``ends`` [R, 2W] holds the regrowth list's left end (positions 0, 1, ...) then its right
    end (C−1, C−2, ...) (``official_growth_ends``), ``c_ends`` their contributions and ``ok``
    whether the initial mask prunes them. The left pointer has read n_left entries, the right
    one n_right. Raises DSnoTPointerError if the pointer is past its end of the list or on a
    column that the initial mask keeps. -> (g [R] int64, c_g [R] float64).
    """
    xp = array_module(ends)
    width = ends.shape[1] // 2
    read = xp.where(go_right, n_right, n_left)                            # entries read so far
    outside = read >= width
    if bool(xp.any(outside)):
        _pointer_error("regrowth", outside, cycle, "left its list")
    position = read + width * go_right                                    # [R] in [0, 2W)
    kept = ~row_entries(ok, position)
    if bool(xp.any(kept)):
        _pointer_error("regrowth", kept, cycle, "reached a weight the initial mask keeps")
    return row_entries(ends, position), row_entries(c_ends, position)


def read_prune_pointers(ends, c_ends, n_kept, n_left, n_right, go_right, cycle: int):
    """Official pruning side: slot n_left, or slot K_r−1−n_right when reading from the right,
    and its contribution (``ends`` [R, 2W]: the left then the right end from
    ``official_prune_ends``). Raises DSnoTPointerError outside [0, K_r). -> (q [R], c_q [R])."""
    xp = array_module(ends)
    width = ends.shape[1] // 2
    read = xp.where(go_right, n_right, n_left)
    outside = read >= n_kept
    if bool(xp.any(outside)):
        _pointer_error("pruning", outside, cycle, "left its list of kept weights")
    position = xp.minimum(read, width - 1) + width * go_right
    return row_entries(ends, position), row_entries(c_ends, position)


def official_accept(still_active, eps, eps_after, sign0, threshold: float, sign_check: bool):
    """Released code's rule: still_active &= |ε| > threshold (ε before the swap), and with the
    sign check sign(ε_after) == sign(initial ε). -> [R] bool."""
    xp = array_module(eps)
    accept = still_active & (xp.abs(eps) > threshold)
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

def official_lists(w, pruned0, seq_sum, seq_sq, var, pow_of_var: float, k: int,
                   with_pruning: bool = True):
    """ε and the reachable ends of the released code's two lists for a block of rows, each
    end with what the loop reads at its entries (so the loop never gathers from [R, C]).

    -> (eps [R], grow [R, 2W], c_grow [R, 2W], ok_grow [R, 2W] bool (initially pruned)
        [, n_kept [R], prune [R, 2W], c_prune [R, 2W]]); the two ends side by side, left
    first; no pruning list for N:M. W = min(k, C).
    """
    xp = array_module(w)
    w = w.astype(xp.float64, copy=False)                                  # widened once for c and Wanda
    c = contributions(w, seq_sum)                                         # [R, C]
    eps = row_errors(c, pruned0)
    grow = xp.concatenate(official_growth_ends(c, var, pruned0, pow_of_var, k), axis=1)
    c_grow = xp.take_along_axis(c, grow, axis=1)
    ok_grow = xp.take_along_axis(pruned0, grow, axis=1)
    if not with_pruning:
        return eps, grow, c_grow, ok_grow
    prune = xp.concatenate(official_prune_ends(c, wanda_score(w, seq_sq), pruned0, k), axis=1)
    c_prune = xp.take_along_axis(c, xp.maximum(prune, 0), axis=1)       # -1: never read
    n_kept = pruned0.shape[1] - row_counts(pruned0)
    return eps, grow, c_grow, ok_grow, n_kept, prune, c_prune


def dsnot_official(w, pruned0, seq_sum, seq_sq, var, settings: DSnoTSettings, trace: bool = False):
    """Official DSnoT loop, unstructured (§4b). -> (pruned [R, C], ε [R], recorder)."""
    xp = array_module(w)
    n_rows = w.shape[0]
    eps, grow, c_grow, ok_grow, n_kept, prune, c_prune = by_row_chunks(
        official_lists, (w, pruned0), seq_sum, seq_sq, var, settings.pow_of_var_regrowing,
        settings.max_cycle_time)
    sign0 = xp.sign(eps)
    rec = _Recorder(eps, trace)
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
        eps = (eps + xp.where(active, c_q, 0.0)) - xp.where(active, c_g, 0.0)
        rec.cycle(eps, active, g, q)
    return pruned, eps, rec


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
    """Official DSnoT loop, N:M branch (§4b). -> (pruned [R, C], ε [R], recorder)."""
    xp = array_module(w)
    n_rows = w.shape[0]
    eps, grow, c_grow, ok_grow = by_row_chunks(
        official_lists, (w, pruned0), seq_sum, seq_sq, var, settings.pow_of_var_regrowing,
        settings.max_cycle_time, False)
    sign0 = xp.sign(eps)
    rec = _Recorder(eps, trace)
    nm_score = xp.where(pruned0, xp.inf, xp.asarray(initial_score, dtype=xp.float64))
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
        eps = (eps + xp.where(active, c_q, 0.0)) - xp.where(active, c_g, 0.0)
        rec.cycle(eps, active, g, q)
    return pruned, eps, rec


# --------------------------------------------------------------------------- entry point

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


def dsnot(weight, pruned0, seq_sum, seq_sq, var, settings: DSnoTSettings = DSnoTSettings(), *,
          nm: tuple[int, int] | None = None, initial_score=None, trace: bool = False) -> DSnoTResult:
    """DSnoT on one weight matrix: a new mask with the same number of pruned weights per row.

    weight [R, C] (any float dtype; never changed), pruned0 [R, C] bool (initial mask, True =
    pruned), seq_sum / seq_sq / var [C] input statistics (see docs/design.md LinearStats; the
    reference variant expects ``var_pooled``, the official ``var_within``). ``initial_score``
    [R, C] is the initial pruner's score, used by N:M to pick the pruned weight (default: the
    Wanda score). Variants "reference" and "official"; "exact" lives in ``dsnot_exact``.
    """
    check_inputs(weight, pruned0, seq_sum, seq_sq, var, nm, initial_score)
    xp = array_module(weight)
    # every input on the weight's device (no-op when already there), statistics in float64
    pruned0 = to_device(pruned0, xp)                                      # [R, C]
    seq_sum, seq_sq, var = (to_device(a, xp).astype(xp.float64, copy=False) for a in (seq_sum, seq_sq, var))
    var = floored_variance(var)                                           # [C]
    if nm is not None and initial_score is None:
        initial_score = wanda_score(weight, seq_sq)
    if initial_score is not None:
        initial_score = to_device(initial_score, xp)                      # [R, C]
    stats = (seq_sum, seq_sq, var)
    if settings.variant == "reference":
        pruned, eps, rec = dsnot_reference(weight, pruned0, *stats, settings, nm, initial_score, trace)
    elif settings.variant == "official" and nm is None:
        pruned, eps, rec = dsnot_official(weight, pruned0, *stats, settings, trace)
    elif settings.variant == "official":
        pruned, eps, rec = dsnot_official_nm(weight, pruned0, *stats, initial_score, settings, nm[1], trace)
    else:
        raise UserError(f"variant {settings.variant!r} is not handled by dsnot(); "
                        "use methods.prune_linear or methods.dsnot_exact")
    return DSnoTResult(pruned=pruned, eps_before=rec.eps_before,
                       eps_after=to_numpy(eps).astype(np.float64), n_swaps=rec.n_swaps,
                       cycles=rec.cycles, trace=rec.trace())
