"""The official variant's statistics: the released wrapper's float32 running averages
(dsnot_ref/released/averages.py). tools/check_torch_float32.py and ``tools/compare_released.py statistics``
check them against torch and the released code; here, their arithmetic without torch."""

import numpy as np
import pytest

from dsnot_ref.released.torch_sum import sequential_sum, torch_column_sum
from dsnot_ref.stats import StatsAccumulator
from dsnot_ref.released.averages import ReleasedAverages


def sequences(n_seq=7, seq_len=40, n_cols=24, seed=0):
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.standard_normal(n_cols)).astype(np.float32)                  # [C]
    return (rng.standard_normal((n_seq, seq_len, n_cols)) * scale + 0.5).astype(np.float32)


def test_column_sum_is_a_cascade_of_16_token_blocks():
    # 2^24 then 31 ones: one after the other the ones vanish (2^24 + 1 rounds to 2^24); torch
    # adds tokens 0..15 (2^24, 15 ones lost), then 16..31 apart (16), then the two blocks.
    x = np.ones((1, 32, 1), dtype=np.float32)
    x[0, 0, 0] = 2.0**24
    assert torch_column_sum(x)[0, 0] == np.float32(2.0**24 + 16)
    assert sequential_sum(x)[0, 0] == np.float32(2.0**24)


@pytest.mark.parametrize("seq_len", [1, 15, 16, 17, 256, 300])
def test_sums_exact_on_small_integers(seq_len):
    x = np.random.default_rng(seq_len).integers(-9, 9, size=(3, seq_len, 5)).astype(np.float32)
    expected = x.astype(np.int64).sum(axis=1).astype(np.float32)                      # [B, C]
    np.testing.assert_array_equal(torch_column_sum(x), expected)
    np.testing.assert_array_equal(sequential_sum(x), expected)


def test_chunking_does_not_change_a_bit():
    x = sequences()
    whole, ones, threes = ReleasedAverages(), ReleasedAverages(), ReleasedAverages()
    whole.update(x)
    for s in range(len(x)):
        ones.update(x[s:s + 1])
    for s in range(0, len(x), 3):
        threes.update(x[s:s + 3])
    for name in ("sum_metric_row", "scaler_row", "var"):
        ref = getattr(whole, name)
        assert ref.dtype == np.float32
        np.testing.assert_array_equal(getattr(ones, name), ref)
        np.testing.assert_array_equal(getattr(threes, name), ref)


def test_one_sequence_is_its_own_statistics():
    x = sequences(n_seq=1)
    acc = ReleasedAverages()
    acc.update(x)
    np.testing.assert_array_equal(acc.sum_metric_row, torch_column_sum(x)[0])
    np.testing.assert_array_equal(acc.scaler_row, np.square(np.sqrt(sequential_sum(x * x)[0])))
    np.testing.assert_array_equal(acc.var, x[0].astype(np.float64).var(axis=0).astype(np.float32))


def test_close_to_the_float64_statistics_and_used_when_asked():
    x = sequences()
    exact, official = StatsAccumulator(x.shape[2]), StatsAccumulator(x.shape[2], moments=ReleasedAverages)
    for s in range(0, len(x), 2):
        exact.update(x[s:s + 2])
        official.update(x[s:s + 2])
    e, o = exact.finalize(), official.finalize()
    for name in ("seq_sum", "seq_sq", "var_within"):
        assert getattr(o, name).dtype == np.float32
        np.testing.assert_allclose(getattr(o, name), getattr(e, name), rtol=2e-5)
    assert e.seq_sq.dtype == np.float64
    np.testing.assert_array_equal(o.var_pooled, e.var_pooled)                        # the rest stays float64
