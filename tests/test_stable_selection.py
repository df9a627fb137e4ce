"""The partition-based list builders of methods/selection.py equal full stable sorts, ties included.

DSnoT's lists are read only at their first K entries, so dsnot.py selects those by partitioning
instead of sorting every row. These tests hold each shortcut to the definition it replaces
(a full ``argsort(kind="stable")``) on tie-heavy inputs: small integers, ±inf padding, -0.0
next to 0.0, rows of all-equal keys.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import dsnot_ref.methods.selection as dsnot_module  # by_row_chunks reads its constants there
from dsnot_ref.methods.dsnot import (
    masked_key,
    row_errors,
    smallest_and_largest,
    smallest_kept_of_each_sign,
    stable_largest,
    stable_smallest,
)

# Keys with many ties: a handful of values, infinities and both zeros.
TIE_VALUES = st.sampled_from([-3.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 2.0, np.inf, -np.inf])


@st.composite
def tie_heavy_keys(draw, min_cols=1, max_cols=240):
    n_rows = draw(st.integers(1, 5))
    n_cols = draw(st.integers(min_cols, max_cols))
    key = draw(arrays(np.float64, (n_rows, n_cols), elements=TIE_VALUES))
    # widen some rows to distinct values so that the fast (tie-free) paths run as well
    noise = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(key.shape)
    distinct_rows = draw(arrays(np.bool_, (n_rows, 1)))
    return np.where(distinct_rows & np.isfinite(key), key + noise, key)


def full_smallest(key, k):
    return np.argsort(key, axis=1, kind="stable")[:, :k]


def full_largest(key, k):
    return np.argsort(key, axis=1, kind="stable")[:, ::-1][:, :k]


@settings(max_examples=300, deadline=None)
@given(key=tie_heavy_keys(), k=st.integers(0, 70))
def test_stable_smallest_and_largest_equal_full_stable_sort(key, k):
    np.testing.assert_array_equal(stable_smallest(key, k), full_smallest(key, k))
    np.testing.assert_array_equal(stable_largest(key, k), full_largest(key, k))


@settings(max_examples=300, deadline=None)
@given(key=tie_heavy_keys(min_cols=20), k=st.integers(0, 12))
def test_both_ends_from_one_partition_equal_full_sort(key, k):
    # the growth metric's layout: negatives, zeros (kept weights), positives
    smallest, largest = smallest_and_largest(key, k)
    np.testing.assert_array_equal(smallest, full_smallest(key, k))
    np.testing.assert_array_equal(largest, full_largest(key, k))


def test_both_ends_fast_path_runs_and_agrees():
    # wide rows with enough of each sign take the single-partition path
    rng = np.random.default_rng(0)
    key = np.round(rng.standard_normal((6, 2000)) * 4) / 4          # heavy ties, both signs
    key[:, ::3] = 0.0
    for k in (1, 5, 50):
        smallest, largest = smallest_and_largest(key, k)
        np.testing.assert_array_equal(smallest, full_smallest(key, k))
        np.testing.assert_array_equal(largest, full_largest(key, k))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), k=st.integers(1, 15))
def test_kept_of_each_sign_equals_separate_selections(data, k):
    n_rows, n_cols = data.draw(st.integers(1, 4)), data.draw(st.integers(4, 300))
    wanda = data.draw(arrays(np.float64, (n_rows, n_cols), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0])))
    c = data.draw(arrays(np.float64, (n_rows, n_cols), elements=st.sampled_from([-1.0, -0.0, 0.0, 1.0])))
    kept = data.draw(arrays(np.bool_, (n_rows, n_cols)))
    neg, pos = kept & (c < 0), kept & (c > 0)
    width = min(k, n_cols)
    got = smallest_kept_of_each_sign(c, wanda, kept, width)
    if got is None:                  # allowed only when some row lacks k of a sign among its 3k smallest
        expect_fail = False
        sel = full_smallest(np.where(kept, wanda, np.inf), 3 * width)
        for r in range(n_rows):
            on = kept[r, sel[r]]
            expect_fail |= ((c[r, sel[r]] < 0) & on).sum() < width or ((c[r, sel[r]] > 0) & on).sum() < width
        assert expect_fail
        return
    np.testing.assert_array_equal(got[0], full_smallest(np.where(neg, wanda, np.inf), width))
    np.testing.assert_array_equal(got[1], full_smallest(np.where(pos, wanda, np.inf), width))
    assert (neg.sum(1) >= width).all() and (pos.sum(1) >= width).all()


def test_kept_of_each_sign_fast_path_on_a_wide_layer():
    rng = np.random.default_rng(1)
    c = rng.standard_normal((8, 1024))
    wanda = np.round(rng.random((8, 1024)) * 20)                           # ties
    kept = rng.random((8, 1024)) < 0.4
    got = smallest_kept_of_each_sign(c, wanda, kept, 50)
    assert got is not None
    np.testing.assert_array_equal(got[0], full_smallest(np.where(kept & (c < 0), wanda, np.inf), 50))
    np.testing.assert_array_equal(got[1], full_smallest(np.where(kept & (c > 0), wanda, np.inf), 50))


@settings(max_examples=200, deadline=None)
@given(key=tie_heavy_keys(), data=st.data())
def test_masked_key_equals_where(key, data):
    finite = np.where(np.isfinite(key), key, 1.5)
    mask = data.draw(arrays(np.bool_, key.shape))
    for fill in (np.inf, -np.inf):
        got = masked_key(finite, mask, fill)
        np.testing.assert_array_equal(got, np.where(mask, finite, fill))   # -0.0 == 0.0


@settings(max_examples=200, deadline=None)
@given(c=tie_heavy_keys(), data=st.data())
def test_row_errors_equal_the_masked_sum_bit_for_bit(c, data):
    c = np.where(np.isfinite(c), c, 0.25)
    pruned = data.draw(arrays(np.bool_, c.shape))
    got = row_errors(c, pruned)
    expect = np.sum(np.where(pruned, c, 0.0), axis=1)
    has_kept = ~pruned.all(axis=1)
    # identical bits wherever a row keeps a weight (a fully pruned row of -0.0 may give +0.0)
    np.testing.assert_array_equal(got.view(np.int64)[has_kept], expect.view(np.int64)[has_kept])
    np.testing.assert_array_equal(got, expect)


@pytest.mark.parametrize("variant", ["reference", "official"])
def test_threads_and_block_sizes_do_not_change_results(monkeypatch, variant):
    from dsnot_ref.methods.dsnot import DSnoTSettings, dsnot
    from dsnot_ref.methods.scores import unstructured_mask, wanda_score

    rng = np.random.default_rng(7)
    w = rng.standard_normal((48, 512)) * 0.05
    x = rng.standard_normal((3, 16, 512)) + rng.standard_normal(512)
    seq_sum, seq_sq, var = x.sum(1).mean(0), (x**2).sum(1).mean(0), x.reshape(-1, 512).var(0)
    p0 = unstructured_mask(wanda_score(w, seq_sq), 0.6)
    s = DSnoTSettings(variant=variant, max_cycle_time=30)
    whole = dsnot(w, p0, seq_sum, seq_sq, var, s, trace=True)
    for threads, entries in ((1, 5 * 512), (3, 5 * 512), (4, 512)):
        monkeypatch.setattr(dsnot_module, "LIST_THREADS", threads)
        monkeypatch.setattr(dsnot_module, "ROW_CHUNK_ENTRIES", entries)
        got = dsnot(w, p0, seq_sum, seq_sq, var, s, trace=True)
        np.testing.assert_array_equal(got.pruned, whole.pruned)
        np.testing.assert_array_equal(got.trace.eps, whole.trace.eps)
        np.testing.assert_array_equal(got.trace.swaps, whole.trace.swaps)
    assert whole.n_swaps > 0


@settings(max_examples=300, deadline=None)
@given(key=tie_heavy_keys(), p=st.sampled_from([0.0, 0.1, 0.5, 0.6, 0.7, 0.9, 0.99]))
def test_unstructured_mask_equals_stable_argsort_prefix(key, p):
    from dsnot_ref.methods.scores import unstructured_mask

    score = np.abs(key)                                      # scores are >= 0; inf allowed
    expect = np.zeros(score.shape, dtype=bool)
    n_prune = int(score.shape[1] * p)
    np.put_along_axis(expect, full_smallest(score, n_prune), True, axis=1)
    np.testing.assert_array_equal(unstructured_mask(score, p), expect)


def test_row_counts_equal_sum_on_views():
    from dsnot_ref.methods.dsnot import row_counts

    mask = np.random.default_rng(3).random((9, 301)) < 0.4
    for view in (mask, mask[2:7], mask[:, 5:200], mask[::2, ::3]):
        np.testing.assert_array_equal(row_counts(view), view.sum(axis=1))
        assert row_counts(view).dtype == np.int64
