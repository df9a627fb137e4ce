"""A float32 row sum added in the order of torch's CPU sum kernel.

The released DSnoT computes each row's ε with ``torch.sum(x, dim=1)`` on a float32 [R, C]
tensor. A float32 sum's value depends on the order of its additions, so reproducing the
released ε bit for bit means adding in torch's order. On CPU that order is fixed by
aten/src/ATen/native/cpu/SumKernel.cpp (``cascade_sum`` -> ``vectorized_inner_sum`` ->
``row_sum`` -> ``multi_row_sum``, float32 accumulators) and by one machine constant, the SIMD
width V = ``Vectorized<float>::size()``: 8 on AVX2, ARM and default builds, 16 when torch runs
its AVX512 kernels (``torch.backends.cpu.get_cpu_capability()``). For a contiguous row:

1. the first V·⌊C/V⌋ entries are read as ⌊C/V⌋ vectors of V lanes;
2. ``row_sum`` adds the vectors with 4 independent accumulators (vector i goes to
   accumulator i mod 4) through ``multi_row_sum``'s 4-level cascade, then the vectors left
   over after the last group of 4 into accumulator 0, then accumulators 1, 2, 3 into 0;
3. the scalar result starts at 0, adds the C mod V tail entries in order, then the V lanes
   of the vector accumulator in lane order, and is added to the zero-filled output.

Every step is an element-wise float32 addition in a fixed order (no ``np.sum``, whose
pairwise order is NumPy's choice), so the result equals torch's on any machine with IEEE
float32. Rows are independent: torch parallelises a row reduction over rows only.
On a GPU torch sums in another order (a tree per block), so the released code run on a GPU
can give a different ε in the last bits, and then decide a threshold crossing differently.
"""

from __future__ import annotations

from ..backend import array_module

TORCH_ILP = 4         # row_sum's independent accumulators (``ilp_factor``)
TORCH_LEVELS = 4      # multi_row_sum's cascade levels (``num_levels``)


def ceil_log2(n: int) -> int:
    """torch's ``utils::CeilLog2``: 1 for n <= 2, else ⌈log2 n⌉."""
    return 1 if n <= 2 else (n - 1).bit_length()


def multi_row_sum_plain(blocks):
    """torch's ``multi_row_sum``: sum n blocks of ``TORCH_ILP`` items with a 4-level cascade.

    Level 0 adds 2**p consecutive blocks (p = max(4, ⌈log2 n⌉ / 4)), then is added into
    level 1, and so on, so that only sums of similar size meet. [R, n, 4, ...] -> [R, 4, ...].
    This is torch's loop as written; ``multi_row_sum`` makes the same additions level by level.
    """
    xp = array_module(blocks)
    n = blocks.shape[1]
    step = cascade_step(n)
    power = step.bit_length() - 1
    zero = xp.zeros((blocks.shape[0], *blocks.shape[2:]), dtype=blocks.dtype)   # [R, 4, ...]
    acc = [zero] * TORCH_LEVELS
    i = 0
    while i + step <= n:
        for _ in range(step):
            acc[0] = acc[0] + blocks[:, i]
            i += 1
        for level in range(1, TORCH_LEVELS):
            acc[level] = acc[level] + acc[level - 1]
            acc[level - 1] = zero
            if i & ((step - 1) << (level * power)):
                break
    for j in range(i, n):
        acc[0] = acc[0] + blocks[:, j]
    total = acc[0]
    for level in range(1, TORCH_LEVELS):
        total = total + acc[level]
    return total


def cascade_step(n: int) -> int:
    """Blocks per level-0 group of ``multi_row_sum``: 2**max(4, ⌈log2 n⌉ / 4)."""
    return 1 << max(4, ceil_log2(n) // TORCH_LEVELS)


def multi_row_sum(blocks):
    """``multi_row_sum_plain``'s additions in the same order, one level at a time.

    In the loop, level k's accumulator adds, from zero and one after the other, the sums that
    level k−1 hands up, and hands its own sum up after every ``step`` of them; the last level
    never hands up; what is left in each accumulator at the end is added level by level. So
    every group of ``step`` consecutive items of one level is summed at once for all groups
    (``step`` additions on [R, n/step, ...] arrays instead of n additions on [R, ...]).
    [R, n, ...] -> [R, ...], bit for bit the loop's result.
    """
    step = cascade_step(blocks.shape[1])
    leftovers = []                                   # what stays in accumulators 0, 1, 2, then 3
    items = blocks                                   # [R, m, ...] the sums one level hands up
    for _ in range(TORCH_LEVELS - 1):
        full = items.shape[1] // step
        groups = items[:, :full * step].reshape(items.shape[0], full, step, *items.shape[2:])
        leftovers.append(sequential_from_zero(items[:, full * step:], axis=1))
        items = sequential_from_zero(groups, axis=2)                    # [R, full, ...]
    leftovers.append(sequential_from_zero(items, axis=1))
    total = leftovers[0]
    for rest in leftovers[1:]:
        total = total + rest
    return total


def sequential_from_zero(x, axis: int):
    """0 + x_0 + x_1 + ... along ``axis``, one addition after the other, in x's dtype (the
    leading 0 turns a −0.0 into +0.0, as the loop's zero accumulators do)."""
    xp = array_module(x)
    moved = xp.moveaxis(x, axis, 0)
    total = xp.zeros(moved.shape[1:], dtype=x.dtype)
    for item in moved:
        total = total + item
    return total


def ilp_row_sum(items):
    """torch's ``row_sum``: items i -> accumulator i mod 4, leftovers into accumulator 0,
    then accumulators 1, 2, 3 into 0. [R, n, ...] -> [R, ...]."""
    n_rows, n = items.shape[:2]
    n_groups = n // TORCH_ILP
    groups = items[:, :n_groups * TORCH_ILP].reshape(n_rows, n_groups, TORCH_ILP, *items.shape[2:])
    partial = multi_row_sum(groups)                                       # [R, 4, ...]
    total = partial[:, 0]
    for j in range(n_groups * TORCH_ILP, n):
        total = total + items[:, j]
    for k in range(1, TORCH_ILP):
        total = total + partial[:, k]
    return total


def torch_row_sum(x, lanes: int = 8):
    """Σ_j x[r, j] in x's dtype, in the order of torch's CPU ``sum(dim=1)`` with SIMD width
    ``lanes`` (8: AVX2/ARM/default, 16: AVX512). [R, C] -> [R]."""
    xp = array_module(x)
    n_rows, n_cols = x.shape
    zero = xp.zeros(n_rows, dtype=x.dtype)
    if n_cols < lanes:                                # scalar_inner_sum
        return zero + ilp_row_sum(x)
    n_vec = n_cols // lanes
    vectors = x[:, :n_vec * lanes].reshape(n_rows, n_vec, lanes)          # [R, n_vec, V]
    lane_sums = ilp_row_sum(vectors)                                      # [R, V]
    total = zero
    for j in range(n_vec * lanes, n_cols):                                # tail, in order
        total = total + x[:, j]
    for lane in range(lanes):
        total = total + lane_sums[:, lane]
    return zero + total                               # added to the zero-filled output


def torch_column_sum(x):
    """Σ_t x[b, t, j] in x's dtype, in the order of torch's CPU ``sum(dim=1)`` of the transposed
    [C, L] view that the released wrapper sums (``vectorized_outer_sum``): each column's L
    entries added one by one through ``multi_row_sum``'s 4-level cascade, without the 4
    interleaved accumulators of a contiguous row. [B, L, C] -> [B, C].

    torch takes this path for the columns that fall in whole groups of 4·V columns of one
    thread's share of C; the columns left over (when C / threads is not a multiple of 4·V:
    not for the demo model's 576 and 1536 on 2 threads) go through ``row_sum``'s order instead.
    """
    return multi_row_sum(x)


def sequential_sum(x):
    """Σ_t x[b, t, j] added one token after the other, in x's dtype: the order of torch's CPU
    ``norm(p=2, dim=1)`` of that transposed view (``binary_kernel_reduce``, a float32
    accumulator per column). [B, L, C] -> [B, C]"""
    total = x[:, 0].copy()                                                # [B, C]
    for t in range(1, x.shape[1]):
        total += x[:, t]
    return total
