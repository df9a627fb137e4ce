"""Scores and initial masks (docs/dsnot.md §2), checked against plain Python sorting."""

import numpy as np
import pytest

from dsnot_ref.errors import UserError
from dsnot_ref.methods.scores import (
    check_sparsity,
    initial_mask,
    magnitude_score,
    nm_mask,
    unstructured_mask,
    wanda_score,
)


def python_unstructured(score, p):
    """Per row: Python's stable sorted() on (score, column), prune the first int(C*p)."""
    n_rows, n_cols = score.shape
    pruned = np.zeros(score.shape, dtype=bool)
    for r in range(n_rows):
        order = sorted(range(n_cols), key=lambda j: score[r, j])
        pruned[r, order[: int(n_cols * p)]] = True
    return pruned


def test_magnitude_and_wanda_scores_match_definitions():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 5)).astype(np.float32)
    seq_sq = rng.random(5) * 4
    assert magnitude_score(w).dtype == np.float64
    np.testing.assert_array_equal(magnitude_score(w), np.abs(w.astype(np.float64)))
    expected = np.array([[abs(float(w[r, j])) * np.sqrt(seq_sq[j]) for j in range(5)] for r in range(3)])
    np.testing.assert_allclose(wanda_score(w, seq_sq), expected, rtol=1e-15)


def test_wanda_rejects_bad_statistics():
    w = np.ones((2, 3))
    with pytest.raises(UserError, match="seq_sq has shape"):
        wanda_score(w, np.ones(4))
    with pytest.raises(UserError, match="negative"):
        wanda_score(w, np.array([1.0, -1.0, 0.0]))


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 0.7, 0.99])
def test_unstructured_mask_matches_python_sort_with_ties(p):
    rng = np.random.default_rng(1)
    score = rng.integers(0, 4, size=(6, 37)).astype(np.float64)   # many ties
    pruned = unstructured_mask(score, p)
    np.testing.assert_array_equal(pruned, python_unstructured(score, p))
    assert (pruned.sum(axis=1) == int(37 * p)).all()


def test_unstructured_ties_prune_lower_columns_first():
    pruned = unstructured_mask(np.zeros((2, 10)), 0.3)
    assert pruned[:, :3].all() and not pruned[:, 3:].any()


def test_unstructured_count_uses_int_truncation_like_released_code():
    # 100 * 0.29 = 28.999999999999996 in floating point: int() gives 28, as torch code does.
    assert unstructured_mask(np.arange(100.0)[None, :], 0.29).sum() == 28


def test_nm_mask_prunes_n_smallest_per_group_stably():
    score = np.array([[4.0, 1.0, 3.0, 2.0, 0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(nm_mask(score, 2, 4)[0], [0, 1, 0, 1, 1, 1, 0, 0])
    rng = np.random.default_rng(2)
    score = rng.integers(0, 3, size=(5, 24)).astype(np.float64)
    pruned = nm_mask(score, 4, 8)
    for r in range(5):
        for start in range(0, 24, 8):
            order = sorted(range(start, start + 8), key=lambda j: score[r, j])
            expected = np.zeros(8, dtype=bool)
            expected[np.array(order[:4]) - start] = True
            np.testing.assert_array_equal(pruned[r, start:start + 8], expected)


def test_nm_mask_errors():
    with pytest.raises(UserError, match="divisible by 4"):
        nm_mask(np.zeros((2, 6)), 2, 4)
    with pytest.raises(UserError, match="N < M"):
        nm_mask(np.zeros((2, 8)), 4, 4)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_out_of_range_is_user_error(p):
    with pytest.raises(UserError, match="sparsity"):
        unstructured_mask(np.zeros((1, 4)), p)


def test_sparsity_must_equal_n_over_m():
    check_sparsity(0.5, (2, 4))
    with pytest.raises(UserError, match="does not match 2:4"):
        check_sparsity(0.6, (2, 4))
    with pytest.raises(UserError, match="does not match"):
        initial_mask(np.zeros((1, 8)), 0.6, (2, 4))


def test_nan_score_is_rejected():
    with pytest.raises(UserError, match="NaN"):
        unstructured_mask(np.array([[1.0, np.nan]]), 0.5)
