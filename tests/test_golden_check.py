"""`golden check` as a debugging tool: where two implementations part, and the output contract."""

import shutil
from dataclasses import replace

import numpy as np
import pytest

from dsnot_ref.cli import main
from dsnot_ref.golden import GOLDEN_DIR, case_arrays, read_case
from dsnot_ref.golden_check import compare_outputs

REFERENCE = GOLDEN_DIR / "wanda_u50_reference.npz"
OFFICIAL = GOLDEN_DIR / "wanda_u50_official.npz"


def outputs_only(path, outputs, name, **extra):
    """The minimal file of the output contract: the case name and the outputs."""
    arrays = {"case": np.array(name), "pruned": outputs.pruned, "cycles": np.array(outputs.cycles),
              "swaps": outputs.swaps, "active_trace": outputs.active_trace, **extra}
    if outputs.eps_trace is not None:
        arrays["eps_trace"] = outputs.eps_trace
    np.savez(path, **arrays)
    return path


def check(capsys, *argv):
    capsys.readouterr()
    status = main(["golden", "check", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_outputs_only_file_in_fortran_order_is_checked(tmp_path, capsys):
    case, ours = read_case(REFERENCE)
    fortran = replace(ours, pruned=np.asfortranarray(ours.pruned),
                      active_trace=np.asfortranarray(ours.active_trace), eps_trace=np.asfortranarray(ours.eps_trace))
    assert not fortran.pruned.flags.c_contiguous                  # what t.T.numpy() gives
    path = outputs_only(tmp_path / "mine.npz", fortran, case.name)
    status, out, _ = check(capsys, path)
    assert status == 0 and "IDENTICAL" in out


def test_every_missing_output_is_named_at_once(tmp_path, capsys):
    case, ours = read_case(REFERENCE)
    np.savez(tmp_path / "few.npz", case=np.array(case.name), pruned=ours.pruned)
    status, _, err = check(capsys, tmp_path / "few.npz")
    assert status == 2 and "lacks the outputs cycles, swaps, active_trace, eps_trace" in err
    assert err.count("\n") == 1


def test_negative_cycles_is_a_clear_error(tmp_path, capsys):
    case, ours = read_case(REFERENCE)
    path = outputs_only(tmp_path / "neg.npz", ours, case.name)
    arrays = dict(np.load(path))
    arrays["cycles"] = np.array(-1)
    np.savez(path, **arrays)
    status, _, err = check(capsys, path)
    assert status == 2 and "'cycles' is -1; it counts the cycles run" in err


def test_first_differing_swap_and_active_flag_are_named(tmp_path, capsys):
    case, ours = read_case(REFERENCE)
    r, g, q, k = ours.swaps[-1]                                   # theirs stops one swap earlier
    pruned = ours.pruned.copy()
    pruned[r, g], pruned[r, q] = True, False
    path = outputs_only(tmp_path / "s.npz", replace(ours, swaps=ours.swaps[:-1], pruned=pruned), case.name)
    status, out, _ = check(capsys, path)
    assert status == 1
    assert f"first differing swap at cycle {k}, row {r}: ours grows {g}, prunes {q}, theirs no swap" in out
    active = ours.active_trace.copy()
    active[2, 6] = ~active[2, 6]                                  # only the flags differ
    cmp = compare_outputs(ours, replace(ours, active_trace=active), case)
    assert not cmp.identical and "active_trace differs first at cycle 2, row 6" in cmp.describe()
    reordered = replace(ours, swaps=ours.swaps[::-1].copy())
    assert "the same swaps in another order" in compare_outputs(ours, reordered, case).describe()


def test_eps_departure_names_cycle_row_and_both_values(tmp_path, capsys):
    case, ours = read_case(REFERENCE)
    eps = ours.eps_trace.copy()
    eps[4:, 3] += 1e-6
    cmp = compare_outputs(ours, replace(ours, eps_trace=eps), case)
    assert "eps departs at cycle 4, row 3" in cmp.describe()
    assert cmp.eps.first[2] == ours.eps_trace[4, 3] and cmp.eps.first[3] == eps[4, 3]


def test_official_traces_must_be_float32_numbers():
    """The float64 mistake differs from ours by as much as another float32 order, so it is told
    apart by the values themselves."""
    case, ours = read_case(OFFICIAL)
    wider = replace(ours, eps_trace=ours.eps_trace + ours.eps_trace * 2.0**-30)
    cmp = compare_outputs(ours, wider, case)
    assert not cmp.identical and "not float32 numbers" in cmp.describe()
    rounded = replace(ours, eps_trace=wider.eps_trace.astype(np.float32).astype(np.float64))
    assert compare_outputs(ours, rounded, case).eps.within


def test_changed_input_is_named_and_missing_cases_listed(tmp_path, capsys):
    case, ours = read_case(REFERENCE)
    arrays = case_arrays(case, ours)
    arrays["seq_sum"] = arrays["seq_sum"].copy()
    arrays["seq_sum"][7] += 1.0
    np.savez(tmp_path / "changed.npz", **arrays)
    shutil.copy(OFFICIAL, tmp_path / OFFICIAL.name)
    status, out, _ = check(capsys, tmp_path)
    assert status == 1 and "INPUTS DIFFER" in out and "seq_sum differs in 1 entries, first at (7,)" in out
    assert "not checked:" in out and "wanda_u70_reference" in out and "wanda_u50_official," not in out


def test_verbose_lists_every_difference(tmp_path, capsys):
    case, ours = read_case(REFERENCE)
    r, g, q, _ = ours.swaps[-1]                                   # one swap fewer, and ε off
    pruned = ours.pruned.copy()
    pruned[r, g], pruned[r, q] = True, False
    eps = ours.eps_trace.copy()
    eps[1, 0] += 1.0
    path = outputs_only(tmp_path / "v.npz", replace(ours, pruned=pruned, swaps=ours.swaps[:-1], eps_trace=eps),
                        case.name)
    status, out, _ = check(capsys, path)
    assert status == 1 and len(out.strip().splitlines()) == 1 and "more, --verbose" in out
    status, out, _ = check(capsys, path, "--verbose")
    assert f"masks differ in 2 entries, rows {r}" in out and "eps departs at cycle 1, row 0" in out


@pytest.mark.parametrize("flag", ["--rtol", "--atol"])
def test_tolerance_overrides_are_validated(flag, capsys):
    assert main(["golden", "check", str(REFERENCE), flag, "-1"]) == 2


def test_official_swap_lists_need_not_replay_to_the_mask():
    """The released code's c == 0 quirk prunes a weight twice (its swap list cannot replay), and
    such official files are read (test_golden.py: other files whose swaps contradict their mask
    are refused)."""
    case, ours = read_case(GOLDEN_DIR / "hard_u75_official_sign_cap3.npz")
    pruned_cols = [(r, q) for r, _, q, _ in ours.swaps.tolist()]
    assert len(pruned_cols) > len(set(pruned_cols))                # the same weight pruned twice
