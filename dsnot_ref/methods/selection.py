"""Fast stable selection: the first k entries of a stable argsort per row, without sorting rows.

DSnoT reads only the first K = max_cycle_time entries of its candidate lists, so the lists are
built by partitioning instead of sorting. Each selection here returns exactly what the full
``argsort(key, axis=1, kind="stable")`` prefix it replaces would (ties by column included);
``tests/test_stable_selection.py`` holds each one to that definition on tie-heavy inputs.

- ``stable_smallest`` / ``stable_largest``: the k smallest / largest keys per row in stable
  order, ties at the k-th place resolved by column;
- ``smallest_and_largest``, ``smallest_kept_of_each_sign``: two such selections with one
  partition (the official variant's growth ends and pruning-list parts), falling back to
  separate selections for unbalanced rows;
- ``masked_key``, ``row_counts``, ``row_entries``: sort keys, counts and gathers without
  per-element branches;
- ``by_row_chunks``: builds the lists per block of rows (blocks on threads with NumPy).

Shape letters: R rows, C columns, k entries wanted per row. No function edits its inputs.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..backend import array_module


# --------------------------------------------------------------------------- keys, counts, gathers

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


def row_counts(mask):
    """Number of True entries in each row. [R, C] bool -> [R] int64.

    Summed as bytes with an int32 accumulator: about 4x faster than ``sum`` of a bool array,
    which widens every entry to int64 first.
    """
    xp = array_module(mask)
    return xp.sum(mask.view(xp.uint8), axis=1, dtype=xp.int32).astype(xp.int64)


def row_entries(table, position):
    """table[r, position[r]] for every row r. [R, W], [R] -> [R].

    One gather from the flattened table (several times faster than ``table[rows, position]``).
    """
    xp = array_module(table)
    n_rows, width = table.shape
    return xp.take(table.reshape(-1), xp.arange(n_rows, dtype=xp.int64) * width + position)


# --------------------------------------------------------------------------- stable selection

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


# --------------------------------------------------------------------------- row blocks

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
