"""The exact DSnoT variant against its plain per-row version, and properties checked against X itself.

The per-row version (``exact_per_row.exact_per_row``) recomputes every candidate's error
directly as ``dᵀ G d`` (no incremental G d_r), and builds its candidate lists with Python
``sorted`` from the rules in docs/dsnot.md §4a.
The monotonicity tests compute the true error ``‖X d_r‖²`` from the calibration tokens X, not
from G.
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsnot_ref.errors import UserError
from dsnot_ref.methods import PruneSpec, prune_linear
from dsnot_ref.methods.dsnot.common import DSnoTSettings, cycle_budget
from dsnot_ref.methods.contract import layer_problem
from dsnot_ref.methods.dsnot.exact import Exact, exact_swaps
from dsnot_ref.methods.gram import row_squared_errors
from dsnot_ref.methods.dsnot.exact_per_row import exact_per_row
from dsnot_ref.methods.refiners import dsnot
from dsnot_ref.methods.scores import nm_mask, unstructured_mask
from dsnot_ref.stats import StatsAccumulator


def calibration(seed, rows=6, cols=16, seqs=3, seq_len=20):
    """Random correlated tokens X [S, L, C] with a non-zero mean, and weights W [R, C]."""
    rng = np.random.default_rng(seed)
    mixing = np.eye(cols) + rng.standard_normal((cols, cols)) / np.sqrt(cols)
    x = rng.standard_normal((seqs, seq_len, cols)) @ mixing + rng.standard_normal(cols)
    x *= rng.uniform(0.3, 2.0, size=cols)
    w = rng.standard_normal((rows, cols))
    return x, w


def inputs(seed, nm=None, sparsity=0.5, **shape):
    """Everything exact_swaps needs, from one random problem."""
    x, w = calibration(seed, **shape)
    tokens = x.reshape(-1, x.shape[-1])  # [T, C]
    seq_sum = tokens.sum(axis=0) / x.shape[0]
    seq_sq = (tokens**2).sum(axis=0) / x.shape[0]
    var = tokens.var(axis=0)
    wanda = np.abs(w) * np.sqrt(seq_sq)[None, :]
    pruned0 = unstructured_mask(wanda, sparsity) if nm is None else nm_mask(wanda, *nm)
    return dict(w=w, pruned0=pruned0, seq_sum=seq_sum, var=var, wanda=wanda, gram=tokens.T @ tokens), tokens


def true_errors(w, pruned, tokens):
    """‖X d_r‖² for every row, straight from the tokens."""
    d = np.where(pruned, w, 0.0)  # [R, C]
    return np.sum((tokens @ d.T) ** 2, axis=0)  # [T, R] -> [R]


def run(args, fn=None, nm=None, cycles=50, gamma=1.0, lookahead=1, on_reject="stop", trace=False):
    """The vectorised exact variant (or ``fn``, e.g. the per-row ``exact_per_row``) on ``args``."""
    settings = DSnoTSettings(variant="exact", max_cycle_time=cycles, pow_of_var_regrowing=gamma,
                             lookahead=lookahead, on_reject=on_reject)
    return (fn or exact_swaps)(args["w"], args["pruned0"], args["seq_sum"], args["var"], args["wanda"],
                               args["gram"], settings, nm=nm, trace=trace)


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**31),
    nm=st.sampled_from([None, (2, 4), (1, 4)]),
    lookahead=st.sampled_from([1, 2, 3]),
    on_reject=st.sampled_from(["stop", "skip"]),
    cycles=st.sampled_from([0, 1, 4, 50]),
    gamma=st.sampled_from([0.0, 1.0]),
)
def test_vectorised_matches_oracle(seed, nm, lookahead, on_reject, cycles, gamma):
    args, _ = inputs(seed, nm=nm, sparsity=0.5 if nm is None else nm[0] / nm[1])
    got = run(args, nm=nm, cycles=cycles, gamma=gamma, lookahead=lookahead, on_reject=on_reject)
    want = run(args, exact_per_row, nm=nm, cycles=cycles, gamma=gamma, lookahead=lookahead, on_reject=on_reject)
    np.testing.assert_array_equal(got.pruned, want.pruned)


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**31),
    nm=st.sampled_from([None, (2, 4)]),
    sparsity=st.sampled_from([0.3, 0.5, 0.7]),
    lookahead=st.sampled_from([1, 3]),
    on_reject=st.sampled_from(["stop", "skip"]),
)
def test_true_error_never_increases_and_sparsity_is_kept(seed, nm, sparsity, lookahead, on_reject):
    args, tokens = inputs(seed, nm=nm, sparsity=sparsity if nm is None else 0.5, rows=5, cols=24)
    w, pruned0 = args["w"], args["pruned0"]
    previous = true_errors(w, pruned0, tokens)
    for budget in range(1, 13):  # a run of t cycles is the first t cycles of a longer run
        result = run(args, nm=nm, cycles=budget, lookahead=lookahead, on_reject=on_reject)
        now = true_errors(w, result.pruned, tokens)
        assert np.all(now <= previous * (1 + 1e-9) + 1e-12)
        np.testing.assert_allclose(result.error_after, now, rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(result.pruned.sum(axis=1), pruned0.sum(axis=1))
        if nm is not None:
            groups = result.pruned.reshape(w.shape[0], -1, nm[1]).sum(axis=2)
            assert np.all(groups == nm[0])
        changed = result.pruned != pruned0
        assert np.all(changed.sum(axis=1) == 2 * result.row_swaps)  # each weight flips at most once
        previous = now


def test_error_from_gram_matches_tokens():
    args, tokens = inputs(1)
    np.testing.assert_allclose(
        row_squared_errors(args["w"], args["pruned0"], args["gram"]), true_errors(args["w"], args["pruned0"], tokens),
        rtol=1e-12)


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_zero_cycles_is_the_identity(nm):
    args, _ = inputs(2, nm=nm)
    result = run(args, nm=nm, cycles=0)
    np.testing.assert_array_equal(result.pruned, args["pruned0"])
    assert result.cycles == 0 and result.n_swaps == 0


def test_masks_do_not_depend_on_the_scale_of_g_and_inputs_are_untouched():
    args, _ = inputs(3, rows=8, cols=24)
    before = {k: v.copy() for k, v in args.items()}
    a = run(args)
    b = run({**args, "gram": args["gram"] * (2.0 / 3.0)})  # the hessian of 3 sequences
    np.testing.assert_array_equal(a.pruned, b.pruned)
    for k, v in before.items():
        np.testing.assert_array_equal(args[k], v)
    assert a.n_swaps > 0  # the instance exercises swaps


def swaps_by_budget(args, on_reject, budgets):
    return np.stack([run(args, cycles=t, on_reject=on_reject).row_swaps for t in budgets])


def test_stop_ends_the_row_at_its_first_rejection():
    args, _ = inputs(4, rows=12, cols=32)
    history = swaps_by_budget(args, "stop", range(0, 16))  # [t, R]
    for row in history.T:
        stalled = np.flatnonzero(np.diff(row) == 0)
        if stalled.size:  # once a cycle passes without a swap, no later swap
            assert row[-1] == row[stalled[0]]


def test_skip_continues_after_a_rejection():
    """Under "skip" some row accepts a swap after a cycle in which it rejected one."""
    found = False
    for seed in range(5):
        args, _ = inputs(seed, rows=12, cols=32)
        history = swaps_by_budget(args, "skip", range(0, 16))
        steps = np.diff(history, axis=0)  # [t, R] 1 = swap accepted in that cycle
        for col in steps.T:
            first_reject = np.flatnonzero(col == 0)
            if first_reject.size and col[first_reject[0] :].any():
                found = True
    assert found


def test_lookahead_finds_at_least_the_first_step_of_lookahead_one():
    """With k > 1 the first accepted swap lowers E at least as much as with k = 1."""
    args, tokens = inputs(5, rows=10, cols=32)
    e1 = run(args, cycles=1, lookahead=1).error_after
    e4 = run(args, cycles=1, lookahead=4).error_after
    assert np.all(e4 <= e1 * (1 + 1e-12))
    assert np.any(e4 < e1)


def test_cycle_budget():
    assert cycle_budget(DSnoTSettings(variant="exact"), 576) == 50
    assert cycle_budget(DSnoTSettings(variant="exact", cycle_fraction=0.25), 576) == 144
    assert cycle_budget(DSnoTSettings(variant="exact", cycle_fraction=0.0), 1536) == 0
    with pytest.raises(UserError):
        DSnoTSettings(variant="exact", cycle_fraction=-0.5)


def test_entry_point_with_linear_stats():
    x, w = calibration(6, rows=8, cols=16, seqs=4)
    acc = StatsAccumulator(16, with_hessian=True)
    acc.update(x[:2])
    acc.update(x[2:])
    stats = acc.finalize()
    tokens = x.reshape(-1, 16)
    wanda = np.abs(w) * np.sqrt(stats.seq_sq)[None, :]
    pruned0 = unstructured_mask(wanda, 0.5)
    refiner = Exact(DSnoTSettings(variant="exact", lookahead=2, cycle_fraction=0.5))
    diag = refiner.refine(layer_problem(w.astype(np.float32), pruned0, stats, refiner.needs)).summary()
    pruned = refiner.refine(layer_problem(w.astype(np.float32), pruned0, stats, refiner.needs)).pruned
    w32 = w.astype(np.float32).astype(np.float64)  # the weights the function saw
    want = run(dict(w=w32, pruned0=pruned0, seq_sum=stats.seq_sum, var=stats.var_pooled, wanda=wanda,
                    gram=tokens.T @ tokens), exact_per_row, cycles=8, lookahead=2)
    np.testing.assert_array_equal(pruned, want.pruned)
    assert diag["error_before"] == pytest.approx(true_errors(w32, pruned0, tokens).sum(), rel=1e-9)
    assert diag["error_after"] == pytest.approx(true_errors(w32, pruned, tokens).sum(), rel=1e-9)
    assert diag["error_after"] <= diag["error_before"]
    assert diag["cycles"] <= 8 and diag["swaps"] >= 0
    with pytest.raises(UserError, match="Gram"):
        refiner.refine(dataclasses.replace(layer_problem(w, pruned0, stats, refiner.needs), gram=None))
    with pytest.raises(ValueError, match="Hessian"):
        layer_problem(w, pruned0, _no_hessian(stats), refiner.needs)


def _no_hessian(stats):
    return dataclasses.replace(stats, hessian=None)


@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_lookahead_one_proposes_the_reference_pair(nm):
    """Where both the reference variant and the exact one swap in the first cycle, it is the same swap."""
    x, w = calibration(8, rows=40, cols=32)
    tokens = x.reshape(-1, 32)
    seq_sum, seq_sq = tokens.sum(axis=0) / 3, (tokens**2).sum(axis=0) / 3
    wanda = np.abs(w) * np.sqrt(seq_sq)[None, :]
    pruned0 = unstructured_mask(wanda, 0.5) if nm is None else nm_mask(wanda, *nm)
    ref = dsnot(w, pruned0, seq_sum, seq_sq, tokens.var(axis=0), DSnoTSettings(max_cycle_time=1, update_threshold=0.0),
                nm=nm)
    args = dict(w=w, pruned0=pruned0, seq_sum=seq_sum, var=tokens.var(axis=0), wanda=wanda, gram=tokens.T @ tokens)
    exact = run(args, nm=nm, cycles=1)
    both = (ref.pruned != pruned0).any(axis=1) & (exact.row_swaps == 1)
    assert both.sum() >= 3
    np.testing.assert_array_equal(ref.pruned[both], exact.pruned[both])


def test_settings_carry_the_exact_options_and_validate_them():
    s = DSnoTSettings(variant="exact", lookahead=3, cycle_fraction=0.1, on_reject="skip")
    assert (s.lookahead, s.cycle_fraction, s.on_reject) == (3, 0.1, "skip")
    for bad in ({"lookahead": 0}, {"cycle_fraction": 1.5}, {"on_reject": "retry"}):
        with pytest.raises(UserError):
            DSnoTSettings(variant="exact", **bad)


def test_settings_options_reach_the_exact_variant_through_prune_linear():
    """lookahead / on_reject set in DSnoTSettings change what prune_linear does (not ignored)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 32, 48)) @ rng.normal(size=(48, 48)) * 0.3 + 0.2   # correlated inputs
    acc = StatsAccumulator(48, with_hessian=True)
    acc.update(x)
    stats = acc.finalize()
    w = rng.normal(size=(24, 48))
    results = {}
    for k, mode in ((1, "stop"), (4, "skip")):
        spec = PruneSpec("dsnot", 0.6, dsnot=DSnoTSettings(variant="exact", lookahead=k, on_reject=mode))
        results[(k, mode)] = prune_linear(w, stats, spec)
    base, wide = results[(1, "stop")], results[(4, "skip")]
    assert base.diagnostics["error_after"] <= base.diagnostics["error_before"]
    assert wide.diagnostics["error_after"] <= wide.diagnostics["error_before"]
    # A wider search with skipping finds at least as many accepted swaps here, and a different mask.
    assert wide.diagnostics["swaps"] >= base.diagnostics["swaps"]
    assert not np.array_equal(base.pruned, wide.pruned)


@settings(max_examples=30)
@given(
    seed=st.integers(0, 2**31),
    nm=st.sampled_from([None, (2, 4)]),
    lookahead=st.sampled_from([1, 2]),
    on_reject=st.sampled_from(["stop", "skip"]),
    cycles=st.sampled_from([0, 3, 50]),
)
def test_trace_equals_the_oracle_history(seed, nm, lookahead, on_reject, cycles):
    """Every array of the trace, rebuilt independently row by row by the plain loop."""
    args, _ = inputs(seed, nm=nm, rows=7, cols=24)
    got = run(args, nm=nm, cycles=cycles, lookahead=lookahead, on_reject=on_reject, trace=True)
    want = run(args, exact_per_row, nm=nm, cycles=cycles, lookahead=lookahead, on_reject=on_reject, trace=True)
    assert got.cycles == want.cycles
    np.testing.assert_array_equal(got.pruned, want.pruned)
    np.testing.assert_array_equal(got.trace.swaps, want.trace.swaps)
    np.testing.assert_array_equal(got.trace.active, want.trace.active)
    scale_eps = np.max(np.abs(want.trace.eps), initial=1.0)
    np.testing.assert_allclose(got.trace.eps, want.trace.eps, rtol=0, atol=1e-12 * scale_eps)
    np.testing.assert_allclose(got.trace.error, want.trace.error, rtol=1e-9, atol=1e-9 * np.max(want.trace.error))


@pytest.mark.parametrize("nm,on_reject", [(None, "stop"), (None, "skip"), ((2, 4), "stop")])
def test_trace_ends_at_the_results_and_error_never_increases(nm, on_reject):
    args, tokens = inputs(9, nm=nm, rows=12, cols=32)
    plain = run(args, nm=nm, lookahead=2, on_reject=on_reject)
    traced = run(args, nm=nm, lookahead=2, on_reject=on_reject, trace=True)
    assert plain.trace is None
    np.testing.assert_array_equal(traced.pruned, plain.pruned)            # tracing changes nothing
    np.testing.assert_array_equal(traced.error_after, plain.error_after)
    t = traced.trace
    k, r = traced.cycles + 1, args["w"].shape[0]
    assert t.eps.shape == t.error.shape == t.active.shape == (k, r) and traced.cycles > 0
    np.testing.assert_array_equal(t.eps[0], traced.eps_before)
    np.testing.assert_array_equal(t.eps[-1], traced.eps_after)
    np.testing.assert_array_equal(t.error[0], traced.error_before)
    np.testing.assert_array_equal(t.error[-1], traced.error_after)
    assert np.all(np.diff(t.error, axis=0) <= 0)                            # E_r never increases
    np.testing.assert_allclose(t.error[-1], true_errors(args["w"], traced.pruned, tokens), rtol=1e-9)
    np.testing.assert_array_equal(np.bincount(t.swaps[:, 0], minlength=r), traced.row_swaps)
    assert np.all(t.active[0]) and np.all(t.active[1:] <= t.active[:-1])  # a stopped row stays stopped
