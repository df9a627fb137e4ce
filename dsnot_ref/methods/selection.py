"""The one place where a fast selection replaces a sort: ``first_k`` and ``last_k``.

DSnoT reads only the first D = min(K, C) entries of its candidate lists (K = max_cycle_time),
so the vectorised variants ask for

    first_k(values, k, among) = argsort(where(among, values, +inf), axis=1, kind="stable")[:, :k]
    last_k(values, k, among)  = argsort(where(among, values, −inf), axis=1, kind="stable")[:, ::-1][:, :k]

(first: ties to the lower column; last: to the higher one; ``among`` None = every column), or
both ends at once, ``first_and_last_k``, or the first k of several disjoint groups at once,
``first_k_each`` (one partition where the definition needs two), and nothing else. Behind
them the key is built without ``where`` (which branches per element and
is several times slower on a random mask), the k entries are found by partitioning, O(C) per
row, and only those k are sorted; a tie at the k-th place falls back to the definition. Each
returns exactly the definition (tests/test_stable_selection.py holds them to it, ties included).
``by_row_chunks`` builds the lists per block of rows, on threads with NumPy.

Shape letters: R rows, C columns, k entries wanted per row. No function edits its inputs.
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module
from ..threads import ordered_map, usable_cores


# --------------------------------------------------------------------------- stable selection

def first_k(values, k: int, among=None):
    """Column indices of the k smallest values per row among the ``among`` columns (all when
    None), in stable ascending order; columns outside ``among`` come last, as +inf.

    Equals ``argsort(where(among, values, inf), axis=1, kind="stable")[:, :k]`` (ties: lower
    column first) but costs O(C) per row when k is small: the k smallest under the (key, column)
    order are selected by partitioning, then only those are sorted. [R, C] -> [R, min(k, C)] int64.
    """
    key = values if among is None else masked_key(values, among, float("inf"))
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


def last_k(values, k: int, among=None):
    """Column indices of the k largest values per row among the ``among`` columns (all when
    None), largest first, ties: higher column first; columns outside ``among`` count as −inf.

    The order in which a pointer walking left from the end of a stable ascending argsort meets
    the columns: equals ``argsort(where(among, values, -inf), axis=1, kind="stable")[:, ::-1][:, :k]``.
    [R, C] -> [R, min(k, C)] int64.
    """
    key = values if among is None else masked_key(values, among, -float("inf"))
    xp = array_module(key)
    n_rows, n_cols = key.shape
    k = min(int(k), n_cols)
    if k <= 1 or 4 * k >= n_cols:
        return (n_cols - 1) - first_k(-key[:, ::-1], k)          # mirror the columns
    kth = xp.partition(key, n_cols - k, axis=1)[:, n_cols - k:n_cols - k + 1]   # [R, 1] k-th largest
    take = key >= kth
    if int(xp.count_nonzero(take)) != n_rows * k:                       # a tie at the k-th place
        return (n_cols - 1) - first_k(-key[:, ::-1], k)
    return _ordered_by_key(key, selected_columns(take, k)[:, ::-1], descending=True)


def first_and_last_k(values, k: int):
    """``(first_k(values, k), last_k(values, k))`` with one partition instead of two.

    When the k smallest values of a row are negative and the k largest positive (the official
    growth metric of a wide layer), both lie among the 3k values of largest |value|: those are
    selected once and each end is sorted within them. A row where that does not hold, or a tie
    at the selection's edge, falls back to the two separate selections. [R, C] -> ([R, k], [R, k]).
    """
    xp = array_module(values)
    n_rows, n_cols = values.shape
    width = 3 * int(k)
    if k == 0 or 4 * width >= n_cols:
        return first_k(values, k), last_k(values, k)
    size = xp.abs(values)                                                 # [R, C]
    edge = xp.partition(size, n_cols - width, axis=1)[:, n_cols - width:n_cols - width + 1]  # [R, 1]
    take = size >= edge                                                   # the 3k largest |value|
    if int(xp.count_nonzero(take)) != n_rows * width:                    # a tie at the edge
        return first_k(values, k), last_k(values, k)
    cols = selected_columns(take, width)                                  # [R, 3k] ascending
    picked = xp.take_along_axis(values, cols, axis=1)
    if not (bool(xp.all(xp.sum(picked < 0, axis=1) >= k)) and bool(xp.all(xp.sum(picked > 0, axis=1) >= k))):
        return first_k(values, k), last_k(values, k)
    smallest = xp.take_along_axis(cols, _stable_order(xp.where(picked < 0, picked, xp.inf), k), axis=1)
    cols, picked = cols[:, ::-1], picked[:, ::-1]                         # descending columns
    largest = xp.take_along_axis(cols, _stable_order(-xp.where(picked > 0, picked, -xp.inf), k), axis=1)
    return smallest, largest


def first_k_each(values, k: int, groups):
    """``[first_k(values, k, g) for g in groups]`` for disjoint masks, with one partition: the
    (len(groups) + 1)·k smallest of their union are selected once and split by group. A row
    where some group has fewer than k of them falls back to the separate selections (with
    balanced groups that happens with probability ~1e-5 per row). [R, C] -> list of [R, k].
    """
    xp = array_module(values)
    union = groups[0]
    for group in groups[1:]:
        union = union | group
    selected = first_k(values, (len(groups) + 1) * int(k), union)        # [R, (n+1)k] in order
    members = [xp.take_along_axis(group, selected, axis=1) for group in groups]
    if k == 0 or not all(bool(xp.all(xp.sum(m, axis=1) >= k)) for m in members):
        return [first_k(values, k, group) for group in groups]
    # the first k selected members of a group, in the selection's (value, column) order
    return [xp.take_along_axis(selected, xp.argsort(~m, axis=1, kind="stable")[:, :k], axis=1) for m in members]


def masked_key(values, mask, fill: float):
    """``where(mask, values, fill)`` for fill = ±inf, as values + [fill, 0][mask]: the same sort
    key (a -0.0 becomes 0.0, which no comparison tells apart), without a branch per element."""
    xp = array_module(values)
    table = xp.zeros(2, dtype=values.dtype)                              # built where the arrays live
    table[0] = fill                                                       # index 0: not in mask
    return values + xp.take(table, mask.view(xp.uint8))


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
    Otherwise (ties, e.g. padding with inf) the stable sort is used. [R, n] -> [R, min(k, n)].
    """
    xp = array_module(values)
    k = values.shape[1] if k is None else min(int(k), values.shape[1])
    values = values + 0.0                      # -0.0 -> 0.0: the two zeros are one key
    order = xp.argsort(values, axis=1)
    head = xp.take_along_axis(values, order[:, :k + 1], axis=1)          # [R, k + 1]
    if bool(xp.all(head[:, 1:] > head[:, :-1])):
        return order[:, :k]
    return xp.argsort(values, axis=1, kind="stable")[:, :k]


# --------------------------------------------------------------------------- row blocks

# Rows per block in ``by_row_chunks``: about 2**18 entries (2 MiB per float64 temporary), so a
# block's temporaries stay in cache. Tests lower it to exercise the chunking on small inputs.
ROW_CHUNK_ENTRIES = 1 << 18
# On a GPU small blocks only add kernel launches: blocks of 2**24 entries (128 MiB per float64
# temporary) bound the memory and keep the device busy.
DEVICE_ROW_CHUNK_ENTRIES = 1 << 24
# NumPy releases the GIL in partitions, comparisons and reductions, so blocks are built on
# this many threads (the calibration forward pass uses every core too). 1 = serial.
LIST_THREADS = min(8, usable_cores())


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
    parts = list(ordered_map(block, starts, LIST_THREADS if xp is np else 1))  # in block order
    return tuple(xp.concatenate([p[j] for p in parts], axis=0) for j in range(len(parts[0])))
