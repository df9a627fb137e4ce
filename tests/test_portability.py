"""Every golden decision is portable across machines, NumPy versions and BLAS builds.

Masks, swaps, cycle counts and active flags are promised bit for bit (data/golden/FORMAT.md,
"What is bit for bit"). They are built from element-wise IEEE operations and stable sorts, which
every machine computes identically, *given* the few values that go through a reduction or a
matrix product, whose rounding depends on the summation order:

- ε₀[r] = Σ_{j pruned} c[r, j], the initial row error (``row_errors``: ``np.sum``'s pairwise,
  SIMD-dependent order; the official variant: ``torch_row_sum``, torch's CPU order, which a GPU
  or another SIMD width would change); the running ε after it is element-wise;
- exact variant: ΔE of each candidate pair (``swap_deltas``), through u = G d_r (a BLAS product);
- SparseSwaps: the one-sided terms a_i, b_j (``one_sided_terms``, through u = G d_r), which choose
  the windows, and ΔE of each window pair (``pair_deltas``), which decides the best pair and the
  acceptance ΔE < −tol · E_r.

A golden case is a good fixture only if no decision sits within rounding of its threshold. These
tests move each order-dependent value by more than its worst-case rounding, in both directions,
and require every decision to stay the same. A case that fails here would fail on some other
machine: regenerate it with another seed rather than loosen the test.
"""

import sys

import numpy as np
import pytest

from dsnot_ref.golden import GOLDEN_DIR, read_case, run_case

FILES = sorted(GOLDEN_DIR.glob("*.npz"))


def computes_exactly(case) -> bool:
    """True when every sum the exact variant and SparseSwaps form is exact in float64 in any
    order (the ``hard_*`` cases, golden.quantised_activations): weights on a 1/8 grid with
    |w| <= 1, G integer with |G| <= 2^20, C <= 1024, so u = G d (grid 1/8, below 2^30), a, b,
    ΔE and E_r (grid 1/64, below 2^41) need fewer than 53 bits. Their ties are exact ties in
    every order, broken by the documented column rule; moving ΔE or u by a pattern would split
    ties that no machine splits."""
    w, gram = case.weight, case.gram
    return bool(gram is not None and case.weight.shape[1] <= 1024 and np.all(w * 8 == np.round(w * 8))
                and np.max(np.abs(w)) <= 1 and np.all(gram == np.round(gram))
                and np.max(np.abs(gram)) <= 2**20)


ROUNDING_FILES = [p for p in FILES if not computes_exactly(read_case(p)[0])]   # ΔE and u have rounding


def patch_everywhere(monkeypatch, name: str, wrap) -> None:
    """Replace the function ``name`` in every loaded dsnot_ref.methods module that uses it."""
    import dsnot_ref.methods  # noqa: F401  (loads the package's modules)

    patched = 0
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("dsnot_ref.methods") and callable(getattr(module, name, None)):
            monkeypatch.setattr(module, name, wrap(getattr(module, name)))
            patched += 1
    assert patched, f"no dsnot_ref.methods module defines {name}; update this test's seam"


def shifted_row_errors(direction: float):
    """ε₀ moved by its worst-case summation error γ_C · Σ|c| (γ_C = C·u / (1 − C·u)), in the
    precision the code computes it in."""
    def wrap(row_errors):
        def shifted(c, pruned):
            eps = np.asarray(row_errors(c, pruned))
            u = np.finfo(eps.dtype).eps / 2
            n = c.shape[1]
            gamma = n * u / (1 - n * u)
            bound = gamma * np.sum(np.abs(np.asarray(c, dtype=np.float64)) * pruned, axis=1)
            return (eps + direction * bound).astype(eps.dtype)
        return shifted
    return wrap


def shifted_swap_deltas(pattern: str):
    """ΔE of every candidate pair moved by 1e-9 of the magnitude of its terms (float64 rounding
    through a C-long product is below C · 2^-53 ≈ 4e-14 of it here): all up, all down, or up and
    down alternately, so that both the acceptance threshold and the choice between pairs move."""
    def wrap(swap_deltas):
        def shifted(w, g_r, gram, grow, grow_valid, prune, prune_valid, paired):
            delta = swap_deltas(w, g_r, gram, grow, grow_valid, prune, prune_valid, paired)
            rows = np.arange(w.shape[0])[:, None]
            wg, wq = np.abs(w[rows, grow]), np.abs(w[rows, prune])
            scale = (2 * wg * np.abs(g_r[rows, grow]) + wg**2 * np.abs(np.diagonal(gram))[grow]
                     + 2 * wq * np.abs(g_r[rows, prune]) + wq**2 * np.abs(np.diagonal(gram))[prune])
            scale = scale if paired else scale[:, :, None] + scale[:, None, :]
            size = 1e-9 * np.max(np.where(np.isfinite(delta), scale + np.abs(delta), 0.0))
            sign = {"up": 1.0, "down": -1.0}.get(pattern)
            if sign is None:
                sign = np.where(np.indices(delta.shape).sum(axis=0) % 2 == 0, 1.0, -1.0)
            return np.where(np.isfinite(delta), delta + sign * size, delta)
        return shifted
    return wrap


def assert_same_decisions(got, expected, label):
    np.testing.assert_array_equal(got.pruned, expected.pruned, err_msg=label)
    np.testing.assert_array_equal(got.swaps, expected.swaps, err_msg=label)
    np.testing.assert_array_equal(got.active_trace, expected.active_trace, err_msg=label)
    assert got.cycles == expected.cycles, label


@pytest.mark.parametrize("direction", [-1.0, 1.0], ids=["down", "up"])
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_decisions_survive_summation_order_of_initial_error(path, direction, monkeypatch):
    case, expected = read_case(path)
    patch_everywhere(monkeypatch, "row_errors", shifted_row_errors(direction))
    assert_same_decisions(run_case(case), expected, f"{path.stem}: ε₀ moved {direction:+} bound")


def shifted_torch_row_sum(direction: float):
    """The official variant's ε₀ (a float32 sum in torch's CPU order) moved the same way: another
    order (torch on a GPU, another SIMD width) rounds it differently."""
    def wrap(torch_row_sum):
        def shifted(x, lanes=8):
            eps = np.asarray(torch_row_sum(x, lanes))
            n = x.shape[1]
            u = np.finfo(eps.dtype).eps / 2
            bound = n * u / (1 - n * u) * np.sum(np.abs(np.asarray(x, dtype=np.float64)), axis=1)
            return (eps + direction * bound).astype(eps.dtype)
        return shifted
    return wrap


OFFICIAL_FILES = [p for p in FILES if read_case(p)[0].variant == "official"]


@pytest.mark.parametrize("direction", [-1.0, 1.0], ids=["down", "up"])
@pytest.mark.parametrize("path", OFFICIAL_FILES, ids=lambda p: p.stem)
def test_official_decisions_survive_another_summation_order(path, direction, monkeypatch):
    case, expected = read_case(path)
    patch_everywhere(monkeypatch, "torch_row_sum", shifted_torch_row_sum(direction))
    assert_same_decisions(run_case(case), expected, f"{path.stem}: torch-order ε₀ moved {direction:+} bound")


@pytest.mark.parametrize("pattern", ["up", "down", "alternate"])
@pytest.mark.parametrize("path", [p for p in ROUNDING_FILES if read_case(p)[0].settings.variant == "exact"],
                         ids=lambda p: p.stem)
def test_exact_decisions_survive_rounding_of_delta_e(path, pattern, monkeypatch):
    case, expected = read_case(path)
    patch_everywhere(monkeypatch, "swap_deltas", shifted_swap_deltas(pattern))
    assert_same_decisions(run_case(case), expected, f"{path.stem}: ΔE moved {pattern}")


SWAP_FILES = [p for p in ROUNDING_FILES if read_case(p)[0].variant == "swaps"]
COLUMN_SIGNS = ("up", "down", "alternate", "alternate-flipped", "random-0", "random-1")


def column_signs(pattern: str, n_cols: int):
    """±1 per column: all +1, all −1, by column parity (either way), or seeded random signs."""
    if pattern in ("up", "down"):
        return np.full(n_cols, 1.0 if pattern == "up" else -1.0)
    if pattern.startswith("alternate"):
        even = np.arange(n_cols) % 2 == 0
        return np.where(even == (pattern == "alternate"), 1.0, -1.0)
    return np.random.default_rng(int(pattern.split("-")[1])).choice([-1.0, 1.0], size=n_cols)


def shifted_one_sided_terms(pattern: str, gram):
    """SparseSwaps: a_i = w_i² G_ii − 2 w_i u_i and b_j = w_j² G_jj + 2 w_j u_j, each moved by
    1e-9 · (w² G_ii + 2 |w_i| Σ_k |G_ik d_k|), far above the rounding of u = G d_r in any order
    (C · 2^-53 ≈ 4e-14 of that sum), by column signs. Dead input channels (G_ii = 0, u_i = 0 in
    every order) do not move, so the exact ties between them stay ties, broken by the lowest column
    as documented. This moves the windows' edges (the k smallest a, b) and every pair's ΔE
    through a and b, so near-ties between the best pairs of different columns split both ways."""
    def wrap(one_sided_terms):
        def shifted(w, u, w_sq_diag, pruned):
            a, b = one_sided_terms(w, u, w_sq_diag, pruned)
            reach = np.abs(np.where(pruned, w, 0.0)) @ np.abs(gram)              # [.., C] Σ_k |G_ik d_k|
            size = 1e-9 * (np.abs(w_sq_diag) + 2.0 * np.abs(w) * reach)
            sign = column_signs(pattern, w.shape[-1])
            return a + sign * size, b + sign * size                             # inf stays inf
        return shifted
    return wrap


def shifted_pair_deltas(direction: float):
    """SparseSwaps: ΔE of every window pair moved by 1e-9 of the largest magnitude of its terms,
    all up or all down: the acceptance ΔE < −tol · E_r (the stopping rule) must not sit within
    rounding of its threshold. (A uniform move keeps ties; near-ties between pairs are moved apart
    through a and b, above.)"""
    def wrap(pair_deltas):
        def shifted(a_win, b_win, cross):
            delta = pair_deltas(a_win, b_win, cross)
            finite = np.isfinite(delta)
            terms = (np.abs(np.where(np.isfinite(a_win), a_win, 0.0))[..., :, None]
                     + np.abs(np.where(np.isfinite(b_win), b_win, 0.0))[..., None, :] + np.abs(cross))
            size = 1e-9 * np.max(np.where(finite, terms + np.abs(delta), 0.0), initial=0.0)
            return np.where(finite, delta + direction * size, delta)
        return shifted
    return wrap


@pytest.mark.parametrize("pattern", COLUMN_SIGNS)
@pytest.mark.parametrize("path", SWAP_FILES, ids=lambda p: p.stem)
def test_swaps_windows_and_best_pairs_survive_rounding_of_u(path, pattern, monkeypatch):
    case, expected = read_case(path)
    patch_everywhere(monkeypatch, "one_sided_terms", shifted_one_sided_terms(pattern, case.gram))
    assert_same_decisions(run_case(case), expected, f"{path.stem}: a and b moved {pattern}")


@pytest.mark.parametrize("direction", [-1.0, 1.0], ids=["down", "up"])
@pytest.mark.parametrize("path", SWAP_FILES, ids=lambda p: p.stem)
def test_swaps_acceptance_survives_rounding_of_delta_e(path, direction, monkeypatch):
    case, expected = read_case(path)
    patch_everywhere(monkeypatch, "pair_deltas", shifted_pair_deltas(direction))
    assert_same_decisions(run_case(case), expected, f"{path.stem}: ΔE moved {direction:+}")


def test_exact_arithmetic_cases_are_exact():
    """Every exact-variant or swaps case is either shifted above or computes without rounding."""
    exact = [p.stem for p in FILES if p not in ROUNDING_FILES]
    assert {"hard_u75_exact_k2_skip", "hard_2of4_exact_skip_cap3", "hard_u75_swaps"} <= set(exact)
    for path in FILES:
        case, _ = read_case(path)
        if path.stem.startswith("hard_"):
            assert np.all(case.seq_sum * 4 == np.round(case.seq_sum * 4)), path.stem   # ε exact too
            assert case.gram is None or computes_exactly(case), path.stem


def test_the_swaps_seams_are_live(monkeypatch):
    case, expected = read_case(GOLDEN_DIR / "wanda_u60_swaps.npz")
    assert len(SWAP_FILES) >= 3 and expected.swaps.shape[0] > 0
    patch_everywhere(monkeypatch, "pair_deltas", lambda pair_deltas: lambda *a: pair_deltas(*a) + 1e30)
    assert run_case(case).swaps.shape[0] == 0                  # no pair lowers E now
    monkeypatch.undo()
    patch_everywhere(monkeypatch, "one_sided_terms", shifted_one_sided_terms("random-0", case.gram * 1e6))
    assert not np.array_equal(run_case(case).swaps, expected.swaps)   # a large move does change them


def test_the_perturbation_can_change_a_decision(monkeypatch):
    """The seam is live: a shift far larger than rounding does change some golden decision."""
    case, expected = read_case(GOLDEN_DIR / "wanda_u50_reference.npz")

    def wrap(row_errors):
        return lambda c, pruned: np.asarray(row_errors(c, pruned)) * 0.5
    patch_everywhere(monkeypatch, "row_errors", wrap)
    got = run_case(case)
    assert not np.array_equal(got.swaps, expected.swaps)


def test_the_delta_e_seam_is_live(monkeypatch):
    case, expected = read_case(GOLDEN_DIR / "wanda_u60_exact.npz")

    def wrap(swap_deltas):
        return lambda *args, **kwargs: swap_deltas(*args, **kwargs) + 1e30   # no pair lowers E now
    patch_everywhere(monkeypatch, "swap_deltas", wrap)
    assert run_case(case).swaps.shape[0] == 0 < expected.swaps.shape[0]
