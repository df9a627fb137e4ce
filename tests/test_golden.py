"""Golden fixtures: committed files equal what the code computes now; read/write/check CLI."""

import shutil
from dataclasses import replace

import numpy as np
import pytest

from dsnot_ref.cli import main
from dsnot_ref.errors import UserError
from dsnot_ref.methods.dsnot_loop import dsnot_loop
from dsnot_ref.methods.golden import (
    GOLDEN_DIR,
    STANDARD_CASES,
    GoldenOutputs,
    compare_outputs,
    read_case,
    run_case,
    standard_cases,
    write_case,
)

FILES = sorted(GOLDEN_DIR.glob("*.npz"))


def test_every_standard_case_is_committed():
    assert sorted(p.stem for p in FILES) == sorted(c[0] for c in STANDARD_CASES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_committed_outputs_equal_current_code(path):
    case, expected = read_case(path)
    got = run_case(case)
    np.testing.assert_array_equal(got.pruned, expected.pruned)
    np.testing.assert_allclose(got.eps_trace, expected.eps_trace, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(got.active_trace, expected.active_trace)
    np.testing.assert_array_equal(got.swaps, expected.swaps)
    assert got.cycles == expected.cycles
    assert expected.swaps.shape[0] > 0                       # every case exercises swaps
    # and the row-loop oracle agrees with the committed outputs
    slow = dsnot_loop(case.weight, case.pruned0, case.seq_sum, case.seq_sq, case.var, case.settings,
                      nm=case.nm, initial_score=case.initial_score, trace=True)
    np.testing.assert_array_equal(slow.pruned, expected.pruned)
    np.testing.assert_array_equal(slow.trace.swaps, expected.swaps)


def test_committed_inputs_equal_regenerated_inputs():
    by_name = {c.name: c for c in standard_cases()}
    for path in FILES:
        case, _ = read_case(path)
        fresh = by_name[case.name]
        np.testing.assert_array_equal(case.pruned0, fresh.pruned0)
        np.testing.assert_allclose(case.weight, fresh.weight, rtol=1e-15)
        np.testing.assert_allclose(case.var, fresh.var, rtol=1e-12)
        assert case.settings == fresh.settings and case.nm == fresh.nm


def test_write_read_roundtrip(tmp_path):
    case = standard_cases(n_rows=3, n_cols=64)[3]
    out = run_case(case)
    write_case(tmp_path / "x.npz", case, out)
    case2, out2 = read_case(tmp_path / "x.npz")
    assert case2.name == case.name and case2.settings == case.settings and case2.nm == (2, 4)
    np.testing.assert_array_equal(case2.pruned0, case.pruned0)
    np.testing.assert_array_equal(out2.eps_trace, out.eps_trace)
    write_case(tmp_path / "inputs_only.npz", case)
    assert read_case(tmp_path / "inputs_only.npz")[1] is None


def test_compare_reports_first_differing_row():
    case, ours = read_case(FILES[0])
    pruned = ours.pruned.copy()
    pruned[5, :3] = ~pruned[5, :3]
    theirs = replace(ours, pruned=pruned, eps_trace=ours.eps_trace * (1 + 1e-9))
    cmp = compare_outputs(ours, theirs)
    assert not cmp.identical and cmp.first_diff_row == 5 and cmp.n_mask_diff == 3
    assert cmp.max_eps_diff > 0
    close = compare_outputs(ours, replace(ours, eps_trace=ours.eps_trace * (1 + 1e-9)))
    assert close.identical
    assert not compare_outputs(ours, replace(ours, eps_trace=ours.eps_trace * 1.01)).identical


def test_cli_run_and_check(tmp_path, capsys):
    src = FILES[0]
    case, ours = read_case(src)
    write_case(tmp_path / "in.npz", case)                      # inputs only
    assert main(["golden", "run", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz")]) == 0
    assert main(["golden", "check", str(tmp_path / "out.npz")]) == 0
    assert "IDENTICAL" in capsys.readouterr().out
    # another implementation that differs in one mask entry: exit 1 and the row is named
    bad = ours.pruned.copy()
    bad[2, 7] = ~bad[2, 7]
    write_case(tmp_path / "bad.npz", case, GoldenOutputs(bad, ours.eps_trace, ours.active_trace,
                                                         ours.swaps, ours.cycles))
    assert main(["golden", "check", str(tmp_path / "bad.npz"), "--against", str(src)]) == 1
    assert "first differing row 2" in capsys.readouterr().out
    # a directory of outputs, checked case by case
    shutil.copy(GOLDEN_DIR / FILES[1].name, tmp_path / FILES[1].name)
    (tmp_path / "bad.npz").unlink()
    (tmp_path / "in.npz").unlink()
    assert main(["golden", "check", str(tmp_path)]) == 0


def test_cli_bad_files_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert main(["golden", "check", str(tmp_path / "junk.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "junk.npz" in err
    np.savez(tmp_path / "partial.npz", format_version=np.array(1), weight=np.zeros((2, 4)))
    with pytest.raises(UserError, match="partial.npz.*seq_sum"):
        read_case(tmp_path / "partial.npz")
    assert main(["golden", "run", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "o.npz")]) == 2
    case, _ = read_case(FILES[0])
    write_case(tmp_path / "noout.npz", case)
    assert main(["golden", "check", str(tmp_path / "noout.npz")]) == 2
    assert "no outputs" in capsys.readouterr().err
