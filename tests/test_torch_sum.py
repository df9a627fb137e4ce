"""torch_row_sum adds in torch's CPU order (tools/check_torch_float32.py checks it against torch)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsnot_ref.released.torch_sum import ceil_log2, multi_row_sum, multi_row_sum_plain, torch_row_sum


@pytest.mark.parametrize("lanes", [8, 16])
@pytest.mark.parametrize("width", [0, 1, 3, 7, 8, 9, 16, 17, 33, 127, 129, 576, 1536, 4099])
def test_exact_when_every_partial_sum_is_exact(width, lanes):
    # small integers: every order gives the exact sum
    x = np.random.default_rng(width).integers(-50, 50, size=(5, width)).astype(np.float32)
    got = torch_row_sum(x, lanes)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x.astype(np.int64).sum(axis=1).astype(np.float32))


def test_the_tail_comes_before_the_lanes():
    # C = 9, 8 lanes: torch adds x[8] to 0 first, then lanes 0..7: (2^24 + 1) + 1 rounds to 2^24
    # both times, while the left-to-right order 1 + 1 + 2^24 gives 2^24 + 2.
    x = np.zeros((1, 9), dtype=np.float32)
    x[0, 0] = x[0, 1] = 1.0
    x[0, 8] = 2.0**24
    assert torch_row_sum(x, 8)[0] == np.float32(2.0**24)
    assert np.float32(np.float32(1) + np.float32(1)) + np.float32(2.0**24) == np.float32(2.0**24 + 2)


def test_accumulators_interleave_by_four():
    # 4 vectors of 8 lanes: vector i goes to accumulator i mod 4, and the accumulators are
    # added 0 + 1 + 2 + 3 at the end, so lane 0 is ((2^24 + 1) + 1) + 0 = 2^24
    x = np.zeros((1, 32), dtype=np.float32)
    x[0, 0], x[0, 8], x[0, 16] = 2.0**24, 1.0, 1.0
    assert torch_row_sum(x, 8)[0] == np.float32(2.0**24)             # ((2^24 + 1) + 1) + 0


def test_ceil_log2():
    assert [ceil_log2(n) for n in (0, 1, 2, 3, 4, 5, 16, 17)] == [1, 1, 1, 2, 2, 3, 4, 5]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 5000), rows=st.integers(1, 3), seed=st.integers(0, 2**32 - 1), zeros=st.booleans())
def test_level_by_level_cascade_equals_the_loop(n, rows, seed, zeros):
    """multi_row_sum makes multi_row_sum_plain's additions: equal bit for bit, −0.0 included."""
    rng = np.random.default_rng(seed)
    blocks = (rng.standard_normal((rows, n, 3)) * 10.0 ** rng.integers(-3, 4, (rows, n, 3))).astype(np.float32)
    if zeros:
        blocks[rng.random(blocks.shape) < 0.3] = np.float32(-0.0)
    fast, plain = multi_row_sum(blocks), multi_row_sum_plain(blocks)
    assert fast.shape == plain.shape == (rows, 3)
    assert fast.tobytes() == plain.tobytes()
