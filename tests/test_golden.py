"""Golden fixtures: committed files equal what the code computes now; read/write/check CLI.

The exact-variant cases are checked against ``exact_per_row.exact_per_row`` (the plain per-row
loop, every candidate error computed as dᵀGd), the SparseSwaps cases against ``swaps.swaps_plain``
(the plain per-row search) and E_r computed from the tokens, and G against the synthetic tokens it
was built from.
"""

import shutil
from dataclasses import replace

import numpy as np
import pytest

from dsnot_ref.cli import main
from dsnot_ref.errors import UserError
from dsnot_ref.golden_check import compare_outputs
from dsnot_ref.methods.dsnot.exact_per_row import exact_per_row
from dsnot_ref.methods.dsnot.official_per_row import official_per_row
from dsnot_ref.methods.dsnot.per_row import dsnot_per_row
from dsnot_ref.methods.swaps import SwapSettings, swaps_plain
from dsnot_ref.golden import (
    GOLDEN_DIR,
    GRAM_VARIANTS,
    HARD_CASES,
    STANDARD_CASES,
    GoldenOutputs,
    case_activations,
    case_arrays,
    read_case,
    run_case,
    standard_cases,
    write_case,
)

FILES = sorted(GOLDEN_DIR.glob("*.npz"))
EXACT_FILES = [p for p in FILES if read_case(p)[0].variant == "exact"]
SWAP_FILES = [p for p in FILES if read_case(p)[0].variant == "swaps"]
GRAM_FILES = EXACT_FILES + SWAP_FILES
V1_FILE = GOLDEN_DIR / "v1" / "wanda_2of4_reference.npz"   # a file as format version 1 wrote it


def test_every_standard_case_is_committed():
    assert sorted(p.stem for p in FILES) == sorted(c[0] for c in STANDARD_CASES + HARD_CASES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_committed_outputs_equal_current_code(path):
    case, expected = read_case(path)
    got = run_case(case)
    np.testing.assert_array_equal(got.pruned, expected.pruned)
    np.testing.assert_array_equal(got.active_trace, expected.active_trace)
    np.testing.assert_array_equal(got.swaps, expected.swaps)
    assert got.cycles == expected.cycles
    assert expected.swaps.shape[0] > 0                       # every case exercises swaps
    if case.variant == "swaps":
        assert got.eps_trace is None and expected.eps_trace is None
        np.testing.assert_allclose(got.error_trace, expected.error_trace, rtol=1e-12, atol=0)
        return                                               # its oracle: test_swaps_case_matches_plain_search
    np.testing.assert_allclose(got.eps_trace, expected.eps_trace, rtol=1e-12, atol=0)
    if case.settings.variant == "exact":
        np.testing.assert_allclose(got.error_trace, expected.error_trace, rtol=1e-12, atol=0)
        return                                               # its oracle: test_exact_case_matches_oracle
    assert expected.error_trace is None
    # and the row-loop oracle agrees with the committed outputs
    plain = official_per_row if case.variant == "official" else dsnot_per_row
    slow = plain(case.weight, case.pruned0, case.seq_sum, case.seq_sq, case.var, case.settings,
                 nm=case.nm, initial_score=case.initial_score, trace=True)
    np.testing.assert_array_equal(slow.pruned, expected.pruned)
    np.testing.assert_array_equal(slow.trace.swaps, expected.swaps)


def test_exact_cases_are_committed():
    names = {p.stem for p in EXACT_FILES}
    assert {"wanda_u60_exact", "wanda_2of4_exact", "magnitude_u60_exact_k2_skip"} <= names
    skip = read_case(GOLDEN_DIR / "magnitude_u60_exact_k2_skip.npz")[0].settings
    assert (skip.lookahead, skip.on_reject, skip.cycle_fraction) == (2, "skip", None)


@pytest.mark.parametrize("path", EXACT_FILES, ids=lambda p: p.stem)
def test_exact_case_matches_oracle(path):
    """The committed exact outputs, rebuilt by the plain per-row loop (direct dᵀGd per candidate)."""
    case, expected = read_case(path)
    wanda = np.abs(case.weight) * np.sqrt(case.seq_sq)[None, :]   # unstructured pruning order
    want = exact_per_row(case.weight, case.pruned0, case.seq_sum, case.var, wanda, case.gram, case.settings,
                         nm=case.nm, initial_score=case.initial_score, trace=True)
    assert expected.cycles == want.cycles
    np.testing.assert_array_equal(expected.pruned, want.pruned)
    np.testing.assert_array_equal(expected.swaps, want.trace.swaps)
    np.testing.assert_array_equal(expected.active_trace, want.trace.active)
    np.testing.assert_allclose(expected.eps_trace, want.trace.eps, rtol=0,
                               atol=1e-12 * np.max(np.abs(want.trace.eps)))
    np.testing.assert_allclose(expected.error_trace, want.trace.error, rtol=1e-9)
    assert np.all(np.diff(expected.error_trace, axis=0) <= 0)          # E_r never increases
    assert expected.error_trace[-1].sum() < expected.error_trace[0].sum()


@pytest.mark.parametrize("path", SWAP_FILES, ids=lambda p: p.stem)
def test_swaps_case_matches_plain_search(path):
    """The committed SparseSwaps outputs, rebuilt by the plain per-row search; E_r from the tokens."""
    case, expected = read_case(path)
    plain = swaps_plain(case.weight, case.pruned0, case.gram, case.swap_settings, nm=case.nm)
    np.testing.assert_array_equal(expected.pruned, plain.pruned)
    np.testing.assert_array_equal(expected.swaps, plain.log)
    assert expected.cycles == plain.steps
    np.testing.assert_array_equal(expected.active_trace.sum(axis=0) - 1, plain.swaps)   # swaps per row
    np.testing.assert_allclose(expected.error_trace[-1], plain.error_after, rtol=1e-9)
    assert np.all(np.diff(expected.error_trace, axis=0) <= 0)          # E_r never increases
    x = case_activations(case.name)
    tokens = x.reshape(-1, x.shape[-1])                                 # [T, C]
    for k, mask in ((0, case.pruned0), (-1, expected.pruned)):
        direct = np.sum((tokens @ np.where(mask, case.weight, 0.0).T) ** 2, axis=0)  # ‖X d_r‖², [R]
        np.testing.assert_allclose(expected.error_trace[k], direct, rtol=1e-9)
    assert np.all(expected.pruned.sum(axis=1) == case.pruned0.sum(axis=1))       # counts kept
    if case.nm is not None:
        groups = expected.pruned.reshape(expected.pruned.shape[0], -1, case.nm[1]).sum(axis=2)
        assert np.all(groups == case.nm[1] - case.nm[0])


def test_exact_gram_is_the_sum_over_tokens_of_x_xt():
    """G in the files is Σ_tokens x xᵀ of the synthetic inputs (x² · tokens, not divided by S),
    and the stored statistics come from the same tokens."""
    for path in GRAM_FILES:
        case, _ = read_case(path)
        x = case_activations(case.name)                               # [S, L, C]
        tokens = x.reshape(-1, x.shape[-1])
        direct = np.einsum("ti,tj->ij", tokens, tokens)
        np.testing.assert_allclose(case.gram, direct, rtol=1e-10, atol=1e-10 * np.abs(direct).max())
        np.testing.assert_allclose(case.seq_sq * x.shape[0], np.diag(direct), rtol=1e-12)
        np.testing.assert_allclose(case.var, tokens.var(axis=0), rtol=1e-12)  # pooled variance


def test_committed_inputs_equal_regenerated_inputs():
    by_name = {c.name: c for c in standard_cases()}
    for path in FILES:
        case, _ = read_case(path)
        fresh = by_name[case.name]
        np.testing.assert_array_equal(case.pruned0, fresh.pruned0)
        np.testing.assert_allclose(case.weight, fresh.weight, rtol=1e-15)
        np.testing.assert_allclose(case.var, fresh.var, rtol=1e-12)
        assert case.settings == fresh.settings and case.nm == fresh.nm
        assert case.swap_settings == fresh.swap_settings
        assert (case.gram is None) == (fresh.gram is None) == (case.variant not in GRAM_VARIANTS)
        if case.gram is not None:
            np.testing.assert_allclose(case.gram, fresh.gram, rtol=1e-12, atol=1e-12 * np.abs(fresh.gram).max())


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
    case, ours = read_case(GOLDEN_DIR / "wanda_u50_reference.npz")
    pruned = ours.pruned.copy()
    pruned[5, :3] = ~pruned[5, :3]
    theirs = replace(ours, pruned=pruned, eps_trace=ours.eps_trace * (1 + 1e-9))
    cmp = compare_outputs(ours, theirs, case)
    assert not cmp.identical and cmp.first_diff_row == 5 and cmp.n_mask_diff == 3
    assert cmp.eps.max_diff > 0 and not cmp.eps.within          # 1e-9 is float32-sized: outside the contract
    close = compare_outputs(ours, replace(ours, eps_trace=ours.eps_trace * (1 + 1e-14)), case)
    assert close.identical                                       # float64 rounding: inside
    assert compare_outputs(ours, theirs, rtol=1e-6).eps.within   # the override
    assert not compare_outputs(ours, replace(ours, eps_trace=ours.eps_trace * 1.01), case).identical


def test_cli_run_and_check(tmp_path, capsys):
    src = FILES[0]
    case, ours = read_case(src)
    write_case(tmp_path / "in.npz", case)                      # inputs only
    assert main(["golden", "run", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz")]) == 0
    assert main(["golden", "check", str(tmp_path / "out.npz")]) == 0
    assert "IDENTICAL" in capsys.readouterr().out
    # another implementation that stopped one swap earlier (its mask and swap list agree with
    # each other, not with ours): exit 1 and the row is named
    row, grown, pruned, _ = ours.swaps[-1]
    bad = ours.pruned.copy()
    bad[row, grown], bad[row, pruned] = True, False
    write_case(tmp_path / "bad.npz", case, GoldenOutputs(bad, ours.eps_trace, ours.active_trace,
                                                         ours.swaps[:-1], ours.cycles))
    assert main(["golden", "check", str(tmp_path / "bad.npz"), "--against", str(src)]) == 1
    assert f"first differing swap at cycle {ours.swaps[-1, 3]}, row {row}" in capsys.readouterr().out
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


def test_exact_write_read_roundtrip(tmp_path):
    case = next(c for c in standard_cases(n_rows=3, n_cols=64) if c.name == "magnitude_u60_exact_k2_skip")
    out = run_case(case)
    write_case(tmp_path / "x.npz", case, out)
    case2, out2 = read_case(tmp_path / "x.npz")
    assert case2.settings == case.settings and case2.settings.lookahead == 2
    np.testing.assert_array_equal(case2.gram, case.gram)
    np.testing.assert_array_equal(out2.error_trace, out.error_trace)
    assert out2.error_trace.shape == (out.cycles + 1, 3)
    # cycle_fraction is stored as a float, NaN meaning None
    fraction = replace(case, settings=replace(case.settings, cycle_fraction=0.25))
    write_case(tmp_path / "f.npz", fraction)
    assert read_case(tmp_path / "f.npz")[0].settings.cycle_fraction == 0.25
    assert np.isnan(np.load(tmp_path / "x.npz")["cycle_fraction"])


def test_version_1_file_is_read_with_the_exact_defaults():
    """The committed version-1 copy reads as the same case and outputs as today's version-2 file."""
    assert int(np.load(V1_FILE)["format_version"]) == 1 and "lookahead" not in np.load(V1_FILE).files
    old_case, old_out = read_case(V1_FILE)
    new_case, new_out = read_case(GOLDEN_DIR / V1_FILE.name)
    assert old_case.settings == new_case.settings
    old = old_case.settings
    assert (old.lookahead, old.cycle_fraction, old.on_reject) == (1, None, "stop")
    assert old_case.gram is None and old_out.error_trace is None
    assert compare_outputs(new_out, old_out, rtol=0).identical
    np.testing.assert_array_equal(old_case.weight, new_case.weight)


def _save_modified(tmp_path, name, source, **changes):
    arrays = {k: v for k, v in np.load(source).items()}
    for k, v in changes.items():
        if v is None:
            del arrays[k]
        else:
            arrays[k] = v
    np.savez(tmp_path / name, **arrays)
    return tmp_path / name


def test_bad_versions_and_missing_gram_are_user_errors(tmp_path):
    src = GOLDEN_DIR / "wanda_u60_exact.npz"
    with pytest.raises(UserError, match="v4.npz.*format_version 4"):
        read_case(_save_modified(tmp_path, "v4.npz", src, format_version=np.array(4)))
    with pytest.raises(UserError, match="nogram.npz.*'gram'"):
        read_case(_save_modified(tmp_path, "nogram.npz", src, gram=None))
    with pytest.raises(UserError, match="badgram.npz.*'gram' has shape"):
        read_case(_save_modified(tmp_path, "badgram.npz", src, gram=np.zeros((3, 3))))
    with pytest.raises(UserError, match="badreject.npz.*on_reject"):
        read_case(_save_modified(tmp_path, "badreject.npz", src, on_reject=np.array("retry")))


def test_compare_checks_error_trace_when_both_have_it():
    case, ours = read_case(GOLDEN_DIR / "wanda_u60_exact.npz")
    assert compare_outputs(ours, ours, case).identical
    off = replace(ours, error_trace=ours.error_trace * 1.01)
    cmp = compare_outputs(ours, off, case)
    assert not cmp.identical and cmp.error.max_diff > 0 and "error departs at cycle" in cmp.describe()
    assert compare_outputs(ours, replace(ours, error_trace=ours.error_trace * (1 + 1e-12)), case).identical
    without = compare_outputs(ours, replace(ours, error_trace=None), case)    # theirs has no E_r trace
    assert without.identical and "error" not in without.describe()
    short = compare_outputs(ours, replace(ours, error_trace=ours.error_trace[:-1]), case)
    assert not short.identical and short.error.max_diff is None and "shape" in short.describe()


def test_cli_run_and_check_exact_case(tmp_path, capsys):
    src = GOLDEN_DIR / "magnitude_u60_exact_k2_skip.npz"
    case, ours = read_case(src)
    write_case(tmp_path / "in.npz", case)                      # inputs only
    assert "error_trace" not in np.load(tmp_path / "in.npz").files
    assert main(["golden", "run", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz")]) == 0
    assert main(["golden", "check", str(tmp_path / "out.npz")]) == 0
    out = capsys.readouterr().out
    # E_r goes through BLAS products: identical within the check's tolerance, not bit for bit
    # across BLAS builds (data/golden/FORMAT.md, "What is bit for bit").
    assert "IDENTICAL" in out and "max |error diff|" in out
    arrays = case_arrays(case, replace(ours, error_trace=ours.error_trace * 1.5))
    np.savez(tmp_path / "worse.npz", **arrays)
    assert main(["golden", "check", str(tmp_path / "worse.npz"), "--against", str(src)]) == 1
    assert "DIFFERENT" in capsys.readouterr().out


def test_swaps_write_read_roundtrip_and_bad_files(tmp_path):
    case = next(c for c in standard_cases(n_rows=3, n_cols=64) if c.name == "magnitude_u70_swaps_all_pairs")
    out = run_case(case)
    write_case(tmp_path / "x.npz", case, out)
    files = np.load(tmp_path / "x.npz").files
    assert "eps_trace" not in files and "max_cycle_time" not in files and "swap_window" in files
    case2, out2 = read_case(tmp_path / "x.npz")
    assert case2.variant == "swaps" and case2.swap_settings == SwapSettings(window=0, refresh=1)
    assert compare_outputs(out, out2, rtol=0).identical and out2.eps_trace is None
    src = SWAP_FILES[0]
    with pytest.raises(UserError, match="v2.npz.*'swaps' needs format_version 3"):
        read_case(_save_modified(tmp_path, "v2.npz", src, format_version=np.array(2)))
    with pytest.raises(UserError, match="noerror.npz lacks the output error_trace"):
        read_case(_save_modified(tmp_path, "noerror.npz", src, error_trace=None))
    with pytest.raises(UserError, match="nogram.npz.*'gram'"):
        read_case(_save_modified(tmp_path, "nogram.npz", src, gram=None))
    with pytest.raises(UserError, match="badwindow.npz.*window"):
        read_case(_save_modified(tmp_path, "badwindow.npz", src, swap_window=np.array(-3)))


def test_cli_run_and_check_swaps_case(tmp_path, capsys):
    src = SWAP_FILES[0]
    case, ours = read_case(src)
    write_case(tmp_path / "in.npz", case)                      # inputs only
    assert main(["golden", "run", str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz")]) == 0
    assert main(["golden", "check", str(tmp_path / "out.npz")]) == 0
    out = capsys.readouterr().out
    assert "IDENTICAL" in out and "max |error diff|" in out and "eps" not in out
    swaps = ours.swaps.copy()
    swaps[-1, 3] -= 1                                          # the last swap one step earlier: same masks
    np.savez(tmp_path / "other.npz", **case_arrays(case, replace(ours, swaps=swaps)))
    assert main(["golden", "check", str(tmp_path / "other.npz"), "--against", str(src)]) == 1
    assert "first differing swap at cycle" in capsys.readouterr().out


@pytest.mark.parametrize("edit, match", [
    (lambda swaps, pruned: swaps.__setitem__((0, 2), (swaps[0, 2] + 1) % pruned.shape[1]), "contradict"),
    (lambda swaps, pruned: pruned.__setitem__((0, 0), ~pruned[0, 0]), "do not give its 'pruned' mask"),
    (lambda swaps, pruned: swaps.__setitem__((0, 1), 10**6), "outside"),
])
def test_golden_file_whose_swaps_contradict_its_mask_is_refused(tmp_path, capsys, edit, match):
    """golden check vouches for masks and swap lists: a file whose swap list, applied to its
    initial mask, does not give its final mask is refused (exit 2), not reported as different."""
    src = SWAP_FILES[0] if SWAP_FILES else FILES[0]
    case, ours = read_case(src)
    swaps, pruned = ours.swaps.copy(), ours.pruned.copy()
    edit(swaps, pruned)
    np.savez(tmp_path / "other.npz", **case_arrays(case, replace(ours, swaps=swaps, pruned=pruned)))
    assert main(["golden", "check", str(tmp_path / "other.npz"), "--against", str(src)]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
