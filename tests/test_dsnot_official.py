"""The official variant (the released code, zyxxmu/DSnoT 4c029df) on hand-worked examples, its
list ends against the full lists, and its float32 arithmetic (docs/dsnot.md §4b, §7).

In the small examples seq_sum = seq_sq = var = 1, so the contribution c equals the weight and
the Wanda score equals |W|; every expected value below was traced by hand from the released code.
"""

import numpy as np
import pytest

from dsnot_ref.errors import UserError
from dsnot_ref.methods.dsnot.common import DSnoTPointerError, DSnoTSettings
from dsnot_ref.methods.dsnot.official import (official_growth_ends, official_growth_order, official_prune_ends,
                                              official_prune_order)
from dsnot_ref.methods.dsnot.official_per_row import official_per_row
from dsnot_ref.methods.refiners import dsnot
from dsnot_ref.methods.scores import unstructured_mask, wanda_score
from dsnot_ref.released.torch_sum import torch_row_sum


def run(w, pruned0, settings, nm=None, seq_sum=None, fn=dsnot):
    w = np.asarray(w, dtype=np.float64)[None, :] if np.ndim(w) == 1 else np.asarray(w, np.float64)
    ones = np.ones(w.shape[1])
    return fn(w, np.asarray(pruned0, bool).reshape(w.shape), ones if seq_sum is None else seq_sum,
              ones, ones, settings, nm=nm, trace=True)


# ----------------------------------------------------------------------------- official

W8 = [0.5, -1.0, 2.0, -0.3, 0.2, -0.6, 1.5, 0.8]   # Wanda 50% prunes {0, 3, 4, 5}; ε = −0.2
P8 = [1, 0, 0, 1, 1, 1, 0, 0]


def test_official_reorder_matches_released_docstring_example():
    # lib/prune.py return_reorder_indice docstring: rows keep their ascending score order.
    c = np.array([[1.0, -2.0, 3.0], [-2, 2, -4], [5, 6, -7], [-6, -7, -4]])
    order, n_kept = official_prune_order(c, np.tile(np.arange(3.0), (4, 1)), np.zeros((4, 3), bool))
    np.testing.assert_array_equal(order, [[1, 2, 0], [0, 2, 1], [2, 1, 0], [0, 1, 2]])
    np.testing.assert_array_equal(n_kept, [3, 3, 3, 3])


def test_official_reorder_zero_contribution_quirk():
    # negatives [2]; positives [0, 4] reversed at the end; the two zeros map to position 0.
    c = np.array([[1.0, 0.0, -2.0, 0.0, 3.0, 9.0]])
    pruned0 = np.array([[0, 0, 0, 0, 0, 1]], bool)
    order, n_kept = official_prune_order(c, np.arange(6.0)[None, :], pruned0)
    np.testing.assert_array_equal(order[0, :5], [2, 0, 0, 4, 0])
    assert n_kept[0] == 5 and order[0, 5] == -1


def test_official_three_cycles_by_hand():
    # Growth list [5, 3, 1, 2, 6, 7, 4, 0]; pruning list [1, 2, 6, 7].
    # 1: ε<0: g=5 (left), q=7 (right): −0.2 + 0.8 + 0.6 = 1.2   (sign check off: accept)
    # 2: ε>0: g=0 (right), q=1 (left): 1.2 − 1.0 − 0.5 = −0.3
    # 3: ε<0: g=3 (left), q=6 (right): −0.3 + 1.5 + 0.3 = 1.5
    for fn in (dsnot, official_per_row):
        r = run(W8, P8, DSnoTSettings(variant="official", max_cycle_time=3), fn=fn)
        np.testing.assert_array_equal(np.nonzero(r.pruned[0])[0], [1, 4, 6, 7])
        np.testing.assert_allclose(r.trace.eps[:, 0], [-0.2, 1.2, -0.3, 1.5], atol=1e-6)  # float32
        np.testing.assert_array_equal(r.trace.swaps, [[0, 5, 7, 1], [0, 0, 1, 2], [0, 3, 6, 3]])


def test_official_sign_check_and_reference_reject_first_swap():
    official = DSnoTSettings(variant="official", without_same_sign=False)
    for settings in (official, DSnoTSettings()):
        r = run(W8, P8, settings)
        np.testing.assert_array_equal(r.pruned[0], P8)
        assert r.cycles == 1 and r.n_swaps == 0


def test_official_pointer_leaving_its_list_raises_clear_error():
    with pytest.raises(DSnoTPointerError, match=r"row 0 at cycle \d+"):
        run(W8, P8, DSnoTSettings(variant="official", max_cycle_time=50))
    with pytest.raises(DSnoTPointerError):
        run(W8, P8, DSnoTSettings(variant="official", max_cycle_time=50), fn=official_per_row)
    assert issubclass(DSnoTPointerError, ValueError) and issubclass(DSnoTPointerError, UserError)


def test_official_nm_marks_proposed_weight_and_errors_at_kept_column():
    seq_sum = np.array([1, 0.2, 1, 1])
    settings = DSnoTSettings(variant="official", max_cycle_time=1)
    r = run([1, 2, 3, 4], [1, 0, 0, 0], settings, nm=(1, 4), seq_sum=seq_sum)
    np.testing.assert_array_equal(r.pruned[0], [0, 1, 0, 0])
    # Cycle 2 reads the growth list's right end again: column 3, which is kept -> error.
    with pytest.raises(DSnoTPointerError, match="cycle 2"):
        run([1, 2, 3, 4], [1, 0, 0, 0], DSnoTSettings(variant="official"), nm=(1, 4), seq_sum=seq_sum)


@pytest.mark.parametrize("seed", range(6))
def test_official_list_ends_equal_the_full_lists(seed):
    # The loop reads only the ends of the released code's two lists; they must be exactly the
    # first / last entries of the full lists, ties and zero contributions included.
    rng = np.random.default_rng(seed)
    r, c_cols = 5, 40
    c = np.round(rng.standard_normal((r, c_cols)), 0)                   # ties and zeros
    wanda = np.round(rng.random((r, c_cols)) * 4, 0)
    var = rng.random(c_cols) + 0.5
    pruned0 = rng.random((r, c_cols)) < [[0.1], [0.5], [0.9], [0.97], [0.0]]
    full_grow = official_growth_order(c, var, pruned0, 1.0)
    full_prune, n_kept = official_prune_order(c, wanda, pruned0)
    for k in (1, 7, 40, 60):
        left, right = official_growth_ends(c, var, pruned0, 1.0, k)
        w = min(k, c_cols)
        np.testing.assert_array_equal(left, full_grow[:, :w])
        np.testing.assert_array_equal(right, full_grow[:, ::-1][:, :w])
        p_left, p_right = official_prune_ends(c, wanda, pruned0, k)
        for row in range(r):
            kr = int(n_kept[row])
            expect_left = [full_prune[row, s] if s < kr else -1 for s in range(w)]
            expect_right = [full_prune[row, kr - 1 - b] if b < kr else -1 for b in range(w)]
            np.testing.assert_array_equal(p_left[row], expect_left)
            np.testing.assert_array_equal(p_right[row], expect_right)


def test_official_arithmetic_is_float32_with_torch_order_row_sum():
    # c, ε and the running ε are float32 values; ε₀ is torch's CPU row-sum order of c over
    # the pruned entries, bit for bit, and the threshold is compared in float32.
    rng = np.random.default_rng(11)
    w = rng.standard_normal((6, 200))
    x = rng.standard_normal((3, 10, 200)) + 0.2
    seq_sum, seq_sq, var = x.sum(1).mean(0), (x**2).sum(1).mean(0), x.var(axis=1).mean(0)
    p0 = unstructured_mask(wanda_score(w, seq_sq, np.float32), 0.5)
    r = dsnot(w, p0, seq_sum, seq_sq, var, DSnoTSettings(variant="official", max_cycle_time=5), trace=True)
    c = w.astype(np.float32) * seq_sum.astype(np.float32)[None, :]
    np.testing.assert_array_equal(r.eps_before, torch_row_sum(np.where(p0, c, np.float32(0)), 8))
    assert np.array_equal(r.trace.eps, r.trace.eps.astype(np.float32))  # every value a float32
    slow = official_per_row(w, p0, seq_sum, seq_sq, var, DSnoTSettings(variant="official", max_cycle_time=5),
                         trace=True)
    np.testing.assert_array_equal(slow.trace.eps, r.trace.eps)
