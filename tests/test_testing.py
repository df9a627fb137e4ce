"""dsnot_ref.testing: problems with the hard cases on, our answers, golden check's verdict."""

import re

import numpy as np
import pytest
from hypothesis import given, settings

import golden_mutants as gm
from dsnot_ref.golden import GOLDEN_DIR
from dsnot_ref.testing import as_outputs, assert_matches, expected_outputs, make_problem, problems

FORMAT = GOLDEN_DIR / "FORMAT.md"


def test_problems_are_reproducible_and_hard():
    a, b = make_problem(5, "official", max_cycle_time=8), make_problem(5, "official", max_cycle_time=8)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.pruned0, b.pruned0)
    assert np.all(a.weight * 8 == np.round(a.weight * 8))                     # exact grid: ties
    assert len(np.unique(a.seq_sum)) < a.weight.shape[1]                       # repeated channels
    assert np.any(a.seq_sq == 0) and np.any(a.var == 0)                        # dead or constant channels
    assert a.settings.max_cycle_time == 8
    for variant in ("reference", "official"):                                  # rows still active at the cap
        runs = [expected_outputs(make_problem(seed, variant)) for seed in range(20)]
        assert any(o.cycles == 3 and o.active_trace[-1].any() for o in runs), variant
    nm = make_problem(5, "exact", nm=(2, 4))
    assert nm.sparsity == 0.5 and nm.gram is not None
    plain = make_problem(5, "reference", ties=False, dead_channels=False)
    assert np.all(plain.var > 0) and len(np.unique(plain.seq_sum)) > 0.8 * plain.weight.shape[1]   # few chance collisions


def test_assert_matches_passes_the_plain_code_and_names_a_bug():
    problem = make_problem(3, "reference", max_cycle_time=8, update_threshold=0.1)
    assert_matches(problem, gm.plain_outputs(problem))
    theirs = gm.outputs(problem, next(m for m in gm.MUTANTS if m.name == "pruning ties to the higher column"))
    if not np.array_equal(theirs.swaps, expected_outputs(problem).swaps):
        with pytest.raises(AssertionError, match="first differing swap at cycle"):
            assert_matches(problem, theirs)
    wrong = {"pruned": theirs.pruned, "cycles": theirs.cycles, "swaps": theirs.swaps[:-1],
             "active_trace": theirs.active_trace, "eps_trace": theirs.eps_trace}
    with pytest.raises(AssertionError, match="DIFFERENT"):
        assert_matches(problem, wrong)
    with pytest.raises(ValueError, match="lack cycles"):
        as_outputs({"pruned": theirs.pruned})


@settings(max_examples=40, deadline=None)
@given(problems(n_rows=4, n_cols=32))
def test_plain_per_row_code_matches_on_any_problem(problem):
    """The vectorised code (expected_outputs) against the plain per-row code, every variant."""
    assert_matches(problem, gm.plain_outputs(problem))


def test_format_example_runs():
    text = FORMAT.read_text()
    code = re.search(r"<!-- testing-example -->\n```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 22
    namespace = {}
    exec(compile(code, str(FORMAT), "exec"), namespace)
    namespace["test_hard_official_2of4"]()
    namespace["test_any_problem"]()
