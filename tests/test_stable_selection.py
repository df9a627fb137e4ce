"""The seam of methods/selection.py, ``first_k`` / ``last_k``, equals full stable sorts, ties included.

DSnoT's lists are read only at their first K entries, so the vectorised variants select those
by partitioning instead of sorting every row. These tests hold the seam to the definition it
replaces (a full ``argsort(kind="stable")``) on tie-heavy inputs: small integers, ±inf padding,
-0.0 next to 0.0, rows of all-equal keys.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import dsnot_ref.methods.selection as selection  # by_row_chunks reads its constants there
from dsnot_ref.methods.dsnot.common import DSnoTSettings
from dsnot_ref.methods.dsnot.per_row import row_errors
from dsnot_ref.methods.refiners import dsnot
from dsnot_ref.methods.scores import unstructured_mask, wanda_score
from dsnot_ref.methods.selection import first_and_last_k, first_k, first_k_each, last_k

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
def test_first_and_last_k_equal_full_stable_sort(key, k):
    np.testing.assert_array_equal(first_k(key, k), full_smallest(key, k))
    np.testing.assert_array_equal(last_k(key, k), full_largest(key, k))


@settings(max_examples=300, deadline=None)
@given(key=tie_heavy_keys(), k=st.integers(0, 70), data=st.data())
def test_first_and_last_k_among_a_mask_equal_the_where_definition(key, k, data):
    values = np.where(np.isfinite(key), key, 0.75)                 # finite values, as DSnoT's
    among = data.draw(arrays(np.bool_, key.shape))
    np.testing.assert_array_equal(first_k(values, k, among), full_smallest(np.where(among, values, np.inf), k))
    np.testing.assert_array_equal(last_k(values, k, among), full_largest(np.where(among, values, -np.inf), k))


@settings(max_examples=300, deadline=None)
@given(key=tie_heavy_keys(min_cols=20), k=st.integers(0, 12))
def test_both_ends_at_once_equal_full_sort(key, k):
    # the official growth metric's layout: negatives, zeros (kept weights), positives
    smallest, largest = first_and_last_k(key, k)
    np.testing.assert_array_equal(smallest, full_smallest(key, k))
    np.testing.assert_array_equal(largest, full_largest(key, k))


def test_both_ends_fast_path_runs_and_agrees():
    # wide rows with enough of each sign take the single-partition path
    rng = np.random.default_rng(0)
    key = np.round(rng.standard_normal((6, 2000)) * 4) / 4          # heavy ties, both signs
    key[:, ::3] = 0.0
    for k in (1, 5, 50):
        smallest, largest = first_and_last_k(key, k)
        np.testing.assert_array_equal(smallest, full_smallest(key, k))
        np.testing.assert_array_equal(largest, full_largest(key, k))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), k=st.integers(0, 15))
def test_first_k_each_equals_separate_selections(data, k):
    n_rows, n_cols = data.draw(st.integers(1, 4)), data.draw(st.integers(4, 300))
    values = data.draw(arrays(np.float64, (n_rows, n_cols), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0])))
    c = data.draw(arrays(np.float64, (n_rows, n_cols), elements=st.sampled_from([-1.0, -0.0, 0.0, 1.0])))
    kept = data.draw(arrays(np.bool_, (n_rows, n_cols)))
    groups = (kept & (c < 0), kept & (c > 0))
    for got, group in zip(first_k_each(values, k, groups), groups):
        np.testing.assert_array_equal(got, full_smallest(np.where(group, values, np.inf), min(k, n_cols)))


def test_first_k_each_fast_path_on_a_wide_layer():
    rng = np.random.default_rng(1)
    c = rng.standard_normal((8, 1024))
    values = np.round(rng.random((8, 1024)) * 20)                           # ties
    kept = rng.random((8, 1024)) < 0.4
    groups = (kept & (c < 0), kept & (c > 0))
    for got, group in zip(first_k_each(values, 50, groups), groups):
        np.testing.assert_array_equal(got, full_smallest(np.where(group, values, np.inf), 50))


@settings(max_examples=200, deadline=None)
@given(c=tie_heavy_keys(), data=st.data())
def test_row_errors_equal_the_masked_sum_bit_for_bit(c, data):
    c = np.where(np.isfinite(c), c, 0.25)
    pruned = data.draw(arrays(np.bool_, c.shape))
    got = row_errors(c, pruned)
    expect = np.array([np.sum(np.where(pruned[r], c[r], 0.0)) for r in range(len(c))]).reshape(-1)
    np.testing.assert_array_equal(got.view(np.int64), expect.view(np.int64))


@pytest.mark.parametrize("variant", ["reference", "official"])
def test_threads_and_block_sizes_do_not_change_results(monkeypatch, variant):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((48, 512)) * 0.05
    x = rng.standard_normal((3, 16, 512)) + rng.standard_normal(512)
    seq_sum, seq_sq, var = x.sum(1).mean(0), (x**2).sum(1).mean(0), x.reshape(-1, 512).var(0)
    p0 = unstructured_mask(wanda_score(w, seq_sq), 0.6)
    s = DSnoTSettings(variant=variant, max_cycle_time=30)
    whole = dsnot(w, p0, seq_sum, seq_sq, var, s, trace=True)
    for threads, entries in ((1, 5 * 512), (3, 5 * 512), (4, 512)):
        monkeypatch.setattr(selection, "LIST_THREADS", threads)
        monkeypatch.setattr(selection, "ROW_CHUNK_ENTRIES", entries)
        got = dsnot(w, p0, seq_sum, seq_sq, var, s, trace=True)
        np.testing.assert_array_equal(got.pruned, whole.pruned)
        np.testing.assert_array_equal(got.trace.eps, whole.trace.eps)
        np.testing.assert_array_equal(got.trace.swaps, whole.trace.swaps)
    assert whole.n_swaps > 0


@settings(max_examples=300, deadline=None)
@given(key=tie_heavy_keys(), p=st.sampled_from([0.0, 0.1, 0.5, 0.6, 0.7, 0.9, 0.99]))
def test_unstructured_mask_equals_stable_argsort_prefix(key, p):
    score = np.abs(key)                                      # scores are >= 0; inf allowed
    expect = np.zeros(score.shape, dtype=bool)
    n_prune = int(score.shape[1] * p)
    np.put_along_axis(expect, full_smallest(score, n_prune), True, axis=1)
    np.testing.assert_array_equal(unstructured_mask(score, p), expect)
