"""SparseSwaps (dsnot_ref.methods.swaps): brute force from X, monotone error, counts, plain = vectorised.

Errors are computed from the calibration tokens X (``‖X d_r‖²``), not from G. Bit-for-bit mask
comparisons between the per-row and the vectorised search use integer data, on which every
product and sum is exact in float64 whatever the BLAS: then their decisions cannot differ by
rounding, and ties (frequent with integers) test the documented tie-breaking.
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsnot_ref.diagnostics import gram_form, relative_errors
from dsnot_ref.errors import UserError
from dsnot_ref.methods import PruneSpec, prune_linear
from dsnot_ref.methods.gram import row_squared_errors
from dsnot_ref.methods.scores import nm_mask, unstructured_mask
from dsnot_ref.methods.swaps import (
    SwapSettings,
    smallest_k,
    smallest_row,
    sparse_swaps_from_gram,
    swaps_plain,
)
from dsnot_ref.stats import StatsAccumulator

from tiny_prune import run_prune

EXACT = SwapSettings(window=0, refresh=1, tol=0.0, max_swaps=1000)  # exact best pair every swap


def float_problem(seed, rows=5, cols=12, tokens=40, sparsity=0.5, nm=None):
    """Correlated float tokens X [T, C], weights W [R, C], a Wanda mask."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tokens, cols)) @ (np.eye(cols) + rng.standard_normal((cols, cols)) / 3)
    x += rng.standard_normal(cols)
    w = rng.standard_normal((rows, cols))
    return x, w, mask(w, x, sparsity, nm)


def integer_problem(seed, rows=6, cols=16, tokens=24, sparsity=0.5, nm=None, span=3):
    """Small integers: every quantity of the search is exact in float64."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-span, span + 1, size=(tokens, cols)).astype(np.float64)
    w = rng.integers(-span, span + 1, size=(rows, cols)).astype(np.float64)
    return x, w, mask(w, x, sparsity, nm)


def mask(w, x, sparsity, nm):
    score = np.abs(w) * np.sqrt((x**2).sum(axis=0))[None, :]
    return unstructured_mask(score, sparsity) if nm is None else nm_mask(score, *nm)


def true_errors(w, pruned, x):
    """‖X d_r‖² per row, straight from the tokens: -> [R]."""
    return np.sum((x @ np.where(pruned, w, 0.0).T) ** 2, axis=0)


def brute_force_pair(w_row, pruned_row, x, nm=None):
    """Over every (pruned i, kept j) pair (same group for N:M): (E after, i, j) of the best,
    E from X directly; ties to the lowest i, then the lowest j."""
    best = None
    for i in np.flatnonzero(pruned_row):
        for j in np.flatnonzero(~pruned_row):
            if nm is not None and i // nm[1] != j // nm[1]:
                continue
            trial = pruned_row.copy()
            trial[i], trial[j] = False, True
            err = float(true_errors(w_row[None], trial[None], x)[0])
            if best is None or err < best[0]:
                best = (err, int(i), int(j))
    return best


def replay(w, pruned0, log):
    """Masks after each logged swap, per row: {row: [mask after swap 1, ...]}."""
    out, current = {}, pruned0.copy()
    for row, i, j, _step in log:
        assert current[row, i] and not current[row, j]
        current[row, i], current[row, j] = False, True
        out.setdefault(int(row), []).append(current[row].copy())
    return out


# --- the chosen pair is the brute-force best pair -------------------------------------------------


@pytest.mark.parametrize("nm", [None, (2, 4)])
@pytest.mark.parametrize("seed", range(4))
def test_every_swap_is_the_brute_force_best_pair(seed, nm):
    x, w, pruned0 = float_problem(seed, nm=nm)
    result = swaps_plain(w, pruned0, x.T @ x, EXACT, nm=nm)
    assert len(result.log) > 0
    current = pruned0.copy()
    for (row, i, j, _step), delta in zip(result.log, result.log_delta):
        before = float(true_errors(w[row][None], current[row][None], x)[0])
        err, bi, bj = brute_force_pair(w[row], current[row], x, nm)
        chosen = current[row].copy()
        chosen[i], chosen[j] = False, True
        chosen_err = float(true_errors(w[row][None], chosen[None], x)[0])
        assert chosen_err == pytest.approx(err, rel=1e-9, abs=1e-9 * before)  # the best pair's error
        assert delta == pytest.approx(chosen_err - before, rel=1e-7, abs=1e-9 * before)
        current[row] = chosen
    # a row stops only when no pair lowers its error
    for row in range(w.shape[0]):
        err, _, _ = brute_force_pair(w[row], result.pruned[row], x, nm)
        assert err >= float(true_errors(w[row][None], result.pruned[row][None], x)[0]) * (1 - 1e-9)


def test_vectorised_exact_search_matches_brute_force_on_floats():
    x, w, pruned0 = float_problem(7, rows=8)
    result = sparse_swaps_from_gram(w, pruned0, x.T @ x, EXACT)
    after = true_errors(w, result.pruned, x)
    for row in range(w.shape[0]):
        err, _, _ = brute_force_pair(w[row], result.pruned[row], x)
        assert err >= after[row] * (1 - 1e-9)  # a local optimum for 1-swaps
    np.testing.assert_allclose(result.error_after, after, rtol=1e-9)


# --- guarantees --------------------------------------------------------------------------------

search_settings = st.builds(
    SwapSettings,
    max_swaps=st.integers(0, 30),
    tol=st.sampled_from([0.0, 1e-6, 1e-3, 0.05]),
    window=st.integers(0, 9),
    refresh=st.integers(1, 6),
)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), nm=st.sampled_from([None, (2, 4), (1, 4), (4, 8)]),
       sparsity=st.sampled_from([0.3, 0.5, 0.7]), cfg=search_settings)
def test_error_never_increases_and_counts_are_kept(seed, nm, sparsity, cfg):
    x, w, pruned0 = float_problem(seed, rows=4, cols=16, sparsity=sparsity, nm=nm)
    result = sparse_swaps_from_gram(w, pruned0, x.T @ x, cfg, nm=nm)
    np.testing.assert_array_equal(result.pruned.sum(axis=1), pruned0.sum(axis=1))
    if nm is not None:
        groups = result.pruned.reshape(w.shape[0], -1, nm[1]).sum(axis=2)
        np.testing.assert_array_equal(groups, nm[0])
    assert result.swaps.max(initial=0) <= cfg.max_swaps
    errors = {row: [e] for row, e in enumerate(true_errors(w, pruned0, x))}
    for row, masks in replay(w, pruned0, result.log).items():
        errors[row] += [float(true_errors(w[row][None], m[None], x)[0]) for m in masks]
    for row, trace in errors.items():
        scale = max(trace[0], 1.0)
        assert all(b <= a + 1e-9 * scale for a, b in zip(trace, trace[1:])), trace
        assert all(b < a for a, b in zip(trace, trace[1:]) if abs(b - a) > 1e-9 * scale)
    np.testing.assert_allclose(result.error_after, true_errors(w, result.pruned, x), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(result.pruned, replay_final(pruned0, result.log))


def replay_final(pruned0, log):
    current = pruned0.copy()
    for row, i, j, _step in log:
        current[row, i], current[row, j] = False, True
    return current


def test_no_budget_returns_the_initial_mask():
    x, w, pruned0 = float_problem(1)
    result = sparse_swaps_from_gram(w, pruned0, x.T @ x, SwapSettings(max_swaps=0))
    np.testing.assert_array_equal(result.pruned, pruned0)
    assert result.log.shape == (0, 4) and result.steps == 0


# --- plain per-row search = vectorised search, bit for bit on exact data -----------------------


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), nm=st.sampled_from([None, None, (2, 4), (4, 8)]),
       sparsity=st.sampled_from([0.25, 0.5, 0.75]), cfg=search_settings,
       block_rows=st.sampled_from([0, 1, 4]), span=st.sampled_from([1, 3]), threads=st.sampled_from([1, 2]))
def test_plain_and_vectorised_are_identical(seed, nm, sparsity, cfg, block_rows, span, threads):
    """Also in blocks of rows searched by two threads (block_rows 0 then gives one block per thread)."""
    x, w, pruned0 = integer_problem(seed, sparsity=sparsity, nm=nm, span=span)
    cfg = dataclasses.replace(cfg, block_rows=block_rows, threads=threads)
    plain = swaps_plain(w, pruned0, x.T @ x, cfg, nm=nm)
    fast = sparse_swaps_from_gram(w, pruned0, x.T @ x, cfg, nm=nm)
    np.testing.assert_array_equal(fast.pruned, plain.pruned)
    np.testing.assert_array_equal(fast.log, plain.log)
    np.testing.assert_array_equal(fast.log_delta, plain.log_delta)
    np.testing.assert_array_equal(fast.swaps, plain.swaps)
    np.testing.assert_array_equal(fast.error_after, plain.error_after)
    assert fast.steps == plain.steps


def test_ties_go_to_the_lowest_columns():
    """Two identical pruned columns and two identical kept ones: the lowest of each is swapped."""
    x = np.array([[1.0, 1.0, 1.0, 1.0, 2.0], [1.0, 1.0, 0.0, 0.0, 1.0]]).T @ np.ones((2, 6))  # [5, 6]
    x = np.concatenate([x, np.eye(6)])  # [T, C]: G positive definite
    x[:, [1, 3]] = x[:, [0, 2]]  # columns 0, 1 identical; 2, 3 identical
    w = np.array([[4.0, 4.0, 1.0, 1.0, 0.5, 0.5]])
    pruned0 = np.array([[True, True, False, False, False, False]])
    for search in (swaps_plain, sparse_swaps_from_gram):
        result = search(w, pruned0, x.T @ x, SwapSettings(window=0, refresh=1, max_swaps=1))
        if len(result.log):
            row, i, j, _ = result.log[0]
            assert i == 0  # regrown: the lower of the two identical pruned columns
            assert j in (2, 4)  # pruned: never column 3 (it ties with 2, the lower)


def test_windows_break_ties_by_column():
    values = np.array([[3.0, 1.0, 1.0, np.inf, 1.0, 0.5], [np.inf] * 6, [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]])
    for k in (1, 2, 3, 4, 6, 7):
        cols, valid = smallest_k(values, min(k, 6) if k < 7 else k)
        for r in range(values.shape[0]):
            ref_cols, ref_valid = smallest_row(values[r], k)
            np.testing.assert_array_equal(cols[r], ref_cols)
            np.testing.assert_array_equal(valid[r], ref_valid)
    cols, _ = smallest_k(values, 2)
    np.testing.assert_array_equal(cols[0], [1, 5])
    np.testing.assert_array_equal(cols[2], [0, 1])


# --- windows against the exact best pair --------------------------------------------------------


def test_a_window_as_wide_as_the_row_with_refresh_one_is_exact():
    x, w, pruned0 = float_problem(3, rows=6, cols=20)
    exact = sparse_swaps_from_gram(w, pruned0, x.T @ x, EXACT)
    wide = sparse_swaps_from_gram(w, pruned0, x.T @ x, dataclasses.replace(EXACT, window=20))
    np.testing.assert_array_equal(wide.pruned, exact.pruned)


# --- settings, wiring --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [dict(max_swaps=-1), dict(tol=-1.0), dict(tol=float("nan")),
                                 dict(window=-2), dict(refresh=0), dict(block_rows=-1),
                                 dict(threads=-1)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(UserError):
        SwapSettings(**bad)


def test_bad_shapes_are_refused():
    x, w, pruned0 = float_problem(0)
    with pytest.raises(UserError, match="gram"):
        sparse_swaps_from_gram(w, pruned0, np.eye(3), SwapSettings())
    with pytest.raises(UserError, match="multiple of M"):
        sparse_swaps_from_gram(w[:, :10], pruned0[:, :10], np.eye(10), SwapSettings(), nm=(2, 4))


def test_prune_linear_runs_swaps_and_lowers_the_error():
    x, w, _ = float_problem(5, rows=8, cols=16)
    acc = StatsAccumulator(16, with_hessian=True)
    acc.update(x.reshape(2, 20, 16))
    stats = acc.finalize()
    spec = PruneSpec(method="swaps", sparsity=0.5, initial_method="magnitude")
    result = prune_linear(w, stats, spec)
    d = result.diagnostics
    assert d["swaps"] > 0
    errors = relative_errors(w, result.initial, result.weight, gram_form(x.T @ x))
    assert errors["recon_after"] < errors["recon_before"]
    assert d["error_after"] < d["error_before"]
    np.testing.assert_allclose(d["error_after"], true_errors(w, result.pruned, x).sum(), rtol=1e-9)
    assert row_squared_errors(w, result.pruned, x.T @ x).sum() == pytest.approx(d["error_after"], rel=1e-9)
    same = prune_linear(w, stats, spec, apply_refiner=False)
    assert same.diagnostics["swaps"] == 0


# --- the command line --------------------------------------------------------------------------


def test_cli_swaps_refine_every_sublayer_and_lower_each_error(tmp_path):
    rc, res = run_prune(tmp_path, "--prune-method", "swaps", "--initial-method", "magnitude",
                        "--sparsity-ratio", "0.6", "--swap-max-iter", "7", "--swap-window", "4", "--recon-error")
    assert rc == 0
    s = res["settings"]
    assert (s["prune_method"], s["initial_method"], s["skip_layer"]) == ("swaps", "magnitude", None)
    assert (s["swap_max_iter"], s["swap_window"], s["swap_refresh"]) == (7, 4, SwapSettings().refresh)
    assert s["swap_gram"] == "float32"
    rows = res["layers"]
    assert all(row["dsnot"] for row in rows)  # every sublayer refined, MLP included
    assert any(row["swaps"] > 0 for row in rows if row["sublayer"].startswith("mlp."))
    for row in rows:
        assert row["recon_after"] <= row["recon_before"] * (1 + 1e-12), row


@pytest.mark.parametrize("argv, message", [
    (("--prune-method", "wanda", "--swap-tol", "0.1"), "--swap-tol only apply to --prune-method swaps"),
    (("--prune-method", "swaps", "--swap-refresh", "0"), "refresh must be >= 1"),
    (("--prune-method", "swaps", "--swap-window", "-1"), "window must be >= 0"),
    (("--prune-method", "swaps", "--swap-gram", "half"), "gram must be float32 or float64"),
    (("--prune-method", "dsnot", "--swap-gram", "float64"), "--swap-gram only apply to --prune-method swaps"),
])
def test_cli_swap_flags_are_checked(tmp_path, capsys, argv, message):
    rc, _ = run_prune(tmp_path, "--sparsity-ratio", "0.5", *argv)
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_gram_precision_per_method():
    """Which methods ask for G, and in which precision (``statistics_needed``, docs/swaps.md §1):
    anything with a SparseGPT mask and DSnoT's exact variant float64 chunk products; SparseSwaps
    from Wanda or magnitude the input's float32; Wanda and DSnoT's reference variant no G."""
    from dsnot_ref.methods import statistics_needed  # noqa: PLC0415
    from dsnot_ref.methods.dsnot.common import DSnoTSettings  # noqa: PLC0415

    def gram(spec):
        return statistics_needed(spec).gram

    assert gram(PruneSpec("sparsegpt", 0.6)) == "float64"
    assert gram(PruneSpec("dsnot", 0.6, dsnot=DSnoTSettings(variant="exact"))) == "float64"
    assert gram(PruneSpec("dsnot", 0.6, initial_method="sparsegpt")) == "float64"
    assert gram(PruneSpec("swaps", 0.6)) == "input"
    assert gram(PruneSpec("swaps", 0.6, initial_method="sparsegpt")) == "float64"
    assert gram(PruneSpec("swaps", 0.6, initial_method="magnitude")) == "input"
    assert gram(PruneSpec("swaps", 0.6, swaps=SwapSettings(gram="float64"))) == "float64"  # --swap-gram
    with pytest.raises(UserError, match="gram must be float32 or float64"):
        SwapSettings(gram="float16")
    assert gram(PruneSpec("wanda", 0.6)) is None
    assert gram(PruneSpec("dsnot", 0.6)) is None
