"""The optimal weight update on a fixed mask (dsnot_ref.methods.weight_update, docs/weight_update.md).

Independent evidence: the minimum is computed from the calibration tokens X by NumPy's
least squares (SVD, no Gram matrix): min over v of ‖X_S v − X w‖² + λ‖v − w_S‖², as the
stacked system [X_S; √λ I] v = [X w; √λ w_S]. Errors are ‖X(w − ŵ)‖² from X.

Tolerances: the solves are O(κ · 2⁻⁵²) accurate, κ the condition number of G_SS + λI; the
problems below keep κ below about 1e5, so 1e-9 relative (of the largest weight, or of the
dense output energy for errors) is far above rounding and far below any real difference.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsnot_ref.errors import UserError
from dsnot_ref.methods.scores import nm_mask, unstructured_mask
from dsnot_ref.methods.weight_update import (
    WeightUpdateSettings,
    exact_update,
    update_grouped,
    update_plain,
    update_row,
)

from tiny_prune import run_prune


def problem(seed, rows=6, cols=16, tokens=48, sparsity=0.5, nm=None, ragged=False):
    """Correlated tokens X [T, C] with uneven column scales, weights W [R, C], a mask.

    ``ragged``: a different number of pruned weights in every row (as SparseGPT's masks)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((tokens, cols)) @ (np.eye(cols) + rng.standard_normal((cols, cols)) / 3)
    x *= rng.uniform(0.3, 3.0, size=cols)[None, :]
    w = rng.standard_normal((rows, cols))
    score = np.abs(w) * np.sqrt((x**2).sum(axis=0))[None, :]
    if ragged:
        pruned = score < np.quantile(score, sparsity)  # one threshold for the whole layer
    else:
        pruned = unstructured_mask(score, sparsity) if nm is None else nm_mask(score, *nm)
    return x, w, pruned


def errors(x, w, w_new):
    """‖X(w_r − ŵ_r)‖² per row, from the tokens: -> [R]."""
    return np.sum((x @ (w - w_new).T) ** 2, axis=0)


def damping(hessian, percdamp):
    """λ as SparseGPT takes it (no dead columns in these problems)."""
    return percdamp * np.mean(np.diag(hessian))


def least_squares(x, w_row, pruned_row, lam):
    """The independent minimiser: ŵ_S from lstsq on [X_S; √λ I] v = [X w; √λ w_S]; ŵ_P = 0."""
    kept = ~pruned_row
    k = int(kept.sum())
    a = np.vstack([x[:, kept], np.sqrt(lam) * np.eye(k)])  # [T + k, k]
    b = np.concatenate([x @ w_row, np.sqrt(lam) * w_row[kept]])  # [T + k]
    out = np.zeros_like(w_row)
    out[kept] = np.linalg.lstsq(a, b, rcond=None)[0]
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), sparsity=st.sampled_from([0.3, 0.5, 0.7]),
       percdamp=st.sampled_from([1e-6, 1e-2, 0.3]), nm=st.sampled_from([None, (2, 4), (1, 4)]),
       ragged=st.booleans())
def test_update_is_the_least_squares_minimum(seed, sparsity, percdamp, nm, ragged):
    """Mask unchanged, pruned exactly zero, error never above the mask alone's, and ŵ equal to
    the least-squares solution computed from X."""
    x, w, pruned = problem(seed, sparsity=sparsity, nm=None if ragged else nm, ragged=ragged)
    hessian = 2.0 / 3 * (x.T @ x)  # LinearStats.hessian for S = 3: any positive multiple of G
    new = exact_update(w, pruned, hessian, WeightUpdateSettings("exact", percdamp))
    assert new.dtype == w.dtype
    assert np.all(new[pruned] == 0.0)
    assert np.all(new[~pruned] != 0.0)  # generic data: no kept weight lands on zero
    lam = damping(x.T @ x, percdamp)
    expected = np.stack([least_squares(x, w[r], pruned[r], lam) for r in range(w.shape[0])])
    np.testing.assert_allclose(new, expected, rtol=0, atol=1e-9 * np.abs(w).max())
    alone, after = errors(x, w, np.where(pruned, 0.0, w)), errors(x, w, new)
    energy = np.sum((x @ w.T) ** 2)
    assert np.all(after <= alone + 1e-12 * energy)  # never increases, row by row
    penalty = lam * np.sum((new - w)[:, :] ** 2 * ~pruned, axis=1)  # the ridge term of §1
    assert np.all(after + penalty <= alone + 1e-12 * energy)


@pytest.mark.parametrize("seed", range(4))
def test_undamped_solve_reaches_the_closed_form_minimum(seed):
    """update_row on G itself (λ = 0, G_SS nonsingular as T > C) gives min_v ‖X_S v − X w‖²."""
    x, w, pruned = problem(seed, rows=4, cols=12, tokens=40, sparsity=0.6)
    gram = x.T @ x
    for r in range(w.shape[0]):
        new = update_row(w[r], pruned[r], gram)
        expected = least_squares(x, w[r], pruned[r], 0.0)
        np.testing.assert_allclose(new, expected, rtol=0, atol=1e-9 * np.abs(w).max())
        kept = ~pruned[r]
        residual = x[:, kept] @ expected[kept] - x @ w[r]
        assert errors(x, w[r:r + 1], new[None])[0] == pytest.approx(residual @ residual, rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_a_mask_that_can_represent_the_dense_output_reaches_zero_error(seed):
    """Pruned inputs that are combinations of kept ones, X_P = X_S M: the dense output X w is
    X_S (w_S + M w_P), so the update reaches zero error with exactly those weights."""
    rng = np.random.default_rng(seed)
    kept_cols, cut_cols, tokens, rows = 8, 5, 30, 4
    x_s = rng.standard_normal((tokens, kept_cols))
    mix = rng.standard_normal((kept_cols, cut_cols))  # M [k, C − k]
    x = np.hstack([x_s, x_s @ mix])  # [T, C]; columns k.. are pruned in every row
    w = rng.standard_normal((rows, kept_cols + cut_cols))
    pruned = np.zeros(w.shape, dtype=bool)
    pruned[:, kept_cols:] = True
    expected = np.hstack([w[:, :kept_cols] + w[:, kept_cols:] @ mix.T, np.zeros((rows, cut_cols))])
    energy = np.sum((x @ w.T) ** 2)
    undamped = np.stack([update_row(w[r], pruned[r], x.T @ x) for r in range(rows)])
    np.testing.assert_allclose(undamped, expected, rtol=0, atol=1e-9 * np.abs(expected).max())
    assert errors(x, w, undamped).sum() <= 1e-18 * energy
    # with damping the ridge term keeps ŵ near w: the error is small, of the order of λ, not zero
    damped = update_grouped(w, pruned, x.T @ x, percdamp=1e-9)
    assert errors(x, w, damped).sum() <= 1e-12 * energy


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6), nm=st.sampled_from([None, (2, 4)]), ragged=st.booleans(),
       block_bytes=st.sampled_from([1, 8 * 30, 2**26]))
def test_grouped_equals_plain(seed, nm, ragged, block_bytes):
    """The batched form (any block height, rows of many support sizes) against the per-row
    Cholesky solves: equal to 1e-9 of the largest weight (LU against Cholesky rounding)."""
    x, w, pruned = problem(seed, rows=9, cols=16, sparsity=0.55, nm=None if ragged else nm, ragged=ragged)
    pruned[0] = True  # a row with nothing kept
    pruned[1] = False  # a row with nothing pruned
    hessian = x.T @ x
    plain = update_plain(w, pruned, hessian, 0.01)
    fast = update_grouped(w, pruned, hessian, 0.01, block_bytes=block_bytes)
    np.testing.assert_allclose(fast, plain, rtol=0, atol=1e-9 * np.abs(w).max())
    assert np.all(plain[0] == 0.0) and np.array_equal(plain[1], w[1])


def test_damping_is_sparsegpts():
    """λ = percdamp · mean(diag H) with dead diagonal entries counted as 1, as SparseGPT; a dead
    input (its column of X is zero) keeps its weight when kept, and the solve does not fail."""
    x, w, pruned = problem(7, rows=5, cols=10, sparsity=0.5)
    x[:, 3] = 0.0  # a dead input
    pruned[:, 3] = [True, False, True, False, False]
    hessian = x.T @ x
    new = update_grouped(w, pruned, hessian, 0.05)
    assert np.all(new[~pruned[:, 3], 3] == w[~pruned[:, 3], 3])
    diag = np.diag(hessian).copy()
    diag[3] = 1.0
    lam = 0.05 * diag.mean()
    expected = np.stack([least_squares(x, w[r], pruned[r], lam) for r in range(w.shape[0])])
    np.testing.assert_allclose(new, expected, rtol=0, atol=1e-9 * np.abs(w).max())


def test_float32_weights_come_back_float32_with_exact_zeros():
    x, w, pruned = problem(3, rows=4, cols=8, nm=(2, 4))
    new = exact_update(w.astype(np.float32), pruned, x.T @ x, WeightUpdateSettings("exact"))
    assert new.dtype == np.float32
    assert np.all(new[pruned] == 0.0)
    assert np.array_equal(new != 0, ~pruned)


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "optimal"}, "unknown weight update 'optimal'"),
    ({"mode": "exact", "percdamp": 0.0}, "damping must be in (0, 1]"),
    ({"mode": "exact", "percdamp": float("nan")}, "damping must be in (0, 1]"),
    ({"mode": "exact", "percdamp": 2.0}, "damping must be in (0, 1]"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        WeightUpdateSettings(**kwargs)


def test_bad_problems_are_refused():
    x, w, pruned = problem(0, rows=3, cols=8)
    with pytest.raises(UserError, match="mask has shape"):
        update_grouped(w, pruned[:, :4], x.T @ x)
    with pytest.raises(UserError, match="Hessian has shape"):
        update_grouped(w, pruned, np.eye(4))
    w[0, 0] = np.nan
    with pytest.raises(UserError, match="NaN or inf"):
        update_grouped(w, pruned, x.T @ x)
    with pytest.raises(ValueError, match="non-finite"):
        update_grouped(np.ones((3, 8)), pruned, np.full((8, 8), np.inf))


# --- in prune_linear, the pipeline and the command line ----------------------------------------


def layer_stats(x, with_hessian=True):
    """LinearStats of tokens x [T, C] as two sequences."""
    from dsnot_ref.stats import StatsAccumulator  # noqa: PLC0415

    acc = StatsAccumulator(x.shape[1], with_hessian=with_hessian)
    acc.update(x.reshape(2, x.shape[0] // 2, x.shape[1]))
    return acc.finalize()


SPECS = [
    ("magnitude", {}), ("wanda", {}), ("sparsegpt", {}),
    ("dsnot", {}), ("dsnot", {"initial_method": "sparsegpt"}),
    ("swaps", {}), ("swaps", {"initial_method": "magnitude"}),
]


@pytest.mark.parametrize("method, extra", SPECS)
@pytest.mark.parametrize("nm", [None, (2, 4)])
def test_prune_linear_updates_the_kept_weights_of_every_method(method, extra, nm):
    """The update keeps each method's final mask, zeroes the pruned weights and lowers the
    calibration error below the mask alone's (and below SparseGPT's own update)."""
    from dsnot_ref.diagnostics import gram_form, relative_errors  # noqa: PLC0415
    from dsnot_ref.methods import PruneSpec, prune_linear  # noqa: PLC0415

    x, w, _ = problem(11, rows=8, cols=16, tokens=64)
    stats = layer_stats(x)
    base = PruneSpec(method=method, sparsity=0.5, nm=nm, **extra)
    spec = PruneSpec(method=method, sparsity=0.5, nm=nm, weight_update=WeightUpdateSettings("exact"), **extra)
    plain, updated = prune_linear(w, stats, base), prune_linear(w, stats, spec)
    assert np.array_equal(updated.pruned, plain.pruned)
    assert np.all(updated.weight[updated.pruned] == 0.0)
    d = relative_errors(w, updated.initial, updated.weight, gram_form(x.T @ x), final_mask=updated.pruned)
    alone = errors(x, w, np.where(plain.pruned, 0.0, w)).sum()
    after = errors(x, w, updated.weight).sum()
    energy = np.sum((x @ w.T) ** 2)
    assert d["recon_mask"] == pytest.approx(alone / energy, rel=1e-9)
    assert d["recon_after"] == pytest.approx(after / energy, rel=1e-9)
    assert after < alone
    if method == "sparsegpt":  # SparseGPT's own column-by-column update, on the same mask
        assert after <= errors(x, w, plain.weight).sum()


def test_the_pipeline_asks_for_float64_hessians_for_the_update():
    from dsnot_ref.methods import PruneSpec, statistics_needed  # noqa: PLC0415

    exact = WeightUpdateSettings("exact")
    assert statistics_needed(PruneSpec("wanda", 0.5)).gram is None
    assert statistics_needed(PruneSpec("wanda", 0.5, weight_update=exact)).gram == "float64"
    assert statistics_needed(PruneSpec("swaps", 0.5, weight_update=exact)).gram == "float64"
    with pytest.raises(UserError, match="needs a pruning method, not dense"):
        PruneSpec("dense", 0.0, weight_update=exact)


@pytest.mark.parametrize("argv", [
    ("--prune-method", "swaps", "--sparsity-ratio", "0.6", "--swap-max-iter", "5"),
    ("--prune-method", "wanda", "--sparsity-type", "2:4"),
    ("--prune-method", "dsnot", "--sparsity-ratio", "0.5", "--sparsity-profile", "owl"),
    ("--prune-method", "dsnot", "--sparsity-ratio", "0.5", "--dsnot-variant", "official", "--max-cycle-time", "3"),
])
def test_cli_weight_update_lowers_every_sublayers_error(tmp_path, argv):
    rc, res = run_prune(tmp_path, *argv, "--weight-update", "exact", "--weight-update-damp", "0.02",
                        "--recon-error")
    assert rc == 0
    assert (res["settings"]["weight_update"], res["settings"]["weight_update_damp"]) == ("exact", 0.02)
    rows = res["layers"]
    assert rows
    for row in rows:
        assert row["recon_after"] < row["recon_mask"], row


def test_cli_default_is_no_update(tmp_path):
    rc, res = run_prune(tmp_path, "--prune-method", "wanda", "--sparsity-ratio", "0.5")
    assert rc == 0
    assert res["settings"]["weight_update"] == "none"
    assert all("recon_mask" not in row for row in res["layers"])


@pytest.mark.parametrize("argv, message", [
    (("--prune-method", "wanda", "--sparsity-ratio", "0.5", "--weight-update", "best"), "unknown --weight-update"),
    (("--prune-method", "dense", "--weight-update", "exact"), "needs a pruning method, not dense"),
    (("--prune-method", "wanda", "--sparsity-ratio", "0.5", "--weight-update-damp", "0.1"),
     "--weight-update-damp only applies to --weight-update exact"),
    (("--prune-method", "wanda", "--sparsity-ratio", "0.5", "--weight-update", "exact", "--weight-update-damp", "0"),
     "damping must be in (0, 1]"),
])
def test_cli_weight_update_flags_are_checked(tmp_path, capsys, argv, message):
    rc, _ = run_prune(tmp_path, *argv)
    assert rc == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_spd_solve_is_a_cholesky_solve_with_an_lu_fallback():
    """spd_solve: the solution of every system; a matrix that is not positive definite (what
    rounding could leave) is still solved, by LU."""
    from dsnot_ref.methods.weight_update import spd_solve

    rng = np.random.default_rng(5)
    a = rng.standard_normal((4, 6, 9))
    a = a @ a.transpose(0, 2, 1) + 0.1 * np.eye(6)              # [4, 6, 6] positive definite
    a[2] = np.diag([3.0, -1.0, 2.0, 1.0, 5.0, 4.0])              # symmetric, indefinite
    b = rng.standard_normal((4, 6))
    x = spd_solve(a.copy(), b.copy(), lambda i: a[i].copy())
    np.testing.assert_allclose(np.einsum("nij,nj->ni", a, x), b, rtol=1e-10, atol=1e-12)
