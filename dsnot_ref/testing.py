"""Checking another DSnoT or SparseSwaps implementation from its own pytest suite.

    from dsnot_ref.testing import make_problem, assert_matches

    problem = make_problem(seed=7, variant="official", nm=(2, 4))
    assert_matches(problem, my_kernel(problem))     # AssertionError with golden check's messages

A problem is a ``golden.GoldenCase``: the inputs of one weight matrix (``weight`` [R, C],
``pruned0``, ``seq_sum``, ``seq_sq``, ``var``, ``initial_score``, ``gram`` for "exact" and "swaps")
and its settings. It is built on an exact-arithmetic layer (``golden.quantised_activations``):
every sum DSnoT or SparseSwaps forms is exact in float32 and float64 in any order, so a correct
kernel agrees with ours on every decision whatever order it sums in, and the hard cases are
switched on: exact ties, dead, constant and zero-mean channels, a small cycle cap (rows stop at
it), a threshold that stops rows before the sign rule does, N:M. ``problems()`` is a hypothesis
strategy over such problems (hypothesis is needed only for it).

The outputs to pass to ``assert_matches``: a ``golden.GoldenOutputs``, or a mapping with the
arrays of data/golden/FORMAT.md, "Output contract" (``pruned``, ``cycles``, ``swaps``,
``active_trace``, ``eps_trace``; ``error_trace`` for "swaps", optional for "exact").
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import UserError
from .golden import SWAPS, GoldenCase, GoldenOutputs, build_case, quantised_activations, quantised_weight, run_case
from .golden_check import compare_outputs

VARIANTS = ("reference", "official", "exact", SWAPS)


def make_problem(seed: int, variant: str = "reference", *, nm: tuple[int, int] | None = None,
                 sparsity: float = 0.5, n_rows: int = 8, n_cols: int = 64, method: str = "wanda",
                 ties: bool = True, dead_channels: bool = True, **settings) -> GoldenCase:
    """A DSnoT (or SparseSwaps, ``variant="swaps"``) problem from a seed, the hard cases on.

    ``ties``: channels repeat a few prototypes and weights sit on a 1/8 grid, so scores, growth
    metrics and ΔE tie exactly; ``dead_channels``: about 6 % each of dead, constant (variance 0)
    and zero-mean (c = 0) input channels. ``settings``: DSnoTSettings fields (SwapSettings
    fields for "swaps"); unless given, ``max_cycle_time`` is 3 (rows reach the cap) and
    ``update_threshold`` 3.3 (rows stop on it). With ``nm`` the sparsity is N/M. C must be a
    multiple of M and at most 1024 (exactness).
    """
    if variant not in VARIANTS:
        raise UserError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if not 1 <= n_cols <= 1024:
        raise UserError(f"n_cols must be in [1, 1024] for exact arithmetic, got {n_cols}")
    if variant != SWAPS:
        settings = {"max_cycle_time": 3, "update_threshold": 3.3, **settings}
    sparsity = nm[0] / nm[1] if nm is not None else sparsity
    x = quantised_activations(seed, n_cols, repeat=ties, special=dead_channels)
    w = quantised_weight(seed, n_rows, n_cols)
    if not ties:   # a 1/64 grid: few equal weights (still exact: 6 bits more)
        w = w + np.random.default_rng(seed).integers(-3, 4, size=w.shape) / 64.0
    name = f"problem_{variant}_seed{seed}"
    return build_case(name, seed, x, w, method, sparsity, nm, variant, settings, layer="exact-arithmetic layer")


def expected_outputs(problem: GoldenCase) -> GoldenOutputs:
    """Our outputs for a problem (what ``dsnot-ref golden run`` writes)."""
    return run_case(problem)


def as_outputs(theirs) -> GoldenOutputs:
    """A ``GoldenOutputs`` from one, or from a mapping of the output contract's arrays."""
    if isinstance(theirs, GoldenOutputs):
        return theirs
    if not isinstance(theirs, Mapping):
        raise TypeError(f"outputs must be GoldenOutputs or a mapping of arrays, got {type(theirs).__name__}")
    missing = [k for k in ("pruned", "cycles", "swaps", "active_trace") if k not in theirs]
    if missing:
        raise ValueError(f"outputs lack {', '.join(missing)} (data/golden/FORMAT.md, 'Output contract')")

    def trace(key):
        return None if theirs.get(key) is None else np.asarray(theirs[key], dtype=np.float64)
    return GoldenOutputs(pruned=np.asarray(theirs["pruned"], dtype=np.bool_), eps_trace=trace("eps_trace"),
                         active_trace=np.asarray(theirs["active_trace"], dtype=np.bool_),
                         swaps=np.asarray(theirs["swaps"], dtype=np.int64).reshape(-1, 4),
                         cycles=int(theirs["cycles"]), error_trace=trace("error_trace"))


def assert_matches(problem: GoldenCase, theirs, *, rtol: float | None = None, atol: float | None = None,
                   expected: GoldenOutputs | None = None) -> None:
    """Raise AssertionError, with golden check's messages (every difference, first differing
    swap first), unless ``theirs`` equals our outputs for ``problem`` under the precision
    contract (or ``rtol``/``atol``)."""
    ours = expected if expected is not None else expected_outputs(problem)
    cmp = compare_outputs(ours, as_outputs(theirs), problem, rtol=rtol, atol=atol)
    if not cmp.identical:
        raise AssertionError(f"{problem.name} ({problem.description}): DIFFERENT\n    "
                             + "\n    ".join(cmp.problems()))


def runs(problem: GoldenCase) -> bool:
    """False when our official variant refuses the problem (a pointer would leave its list)."""
    try:
        run_case(problem)
    except UserError:
        return False
    return True


def problems(variants=VARIANTS, nm=(None, (2, 4)), n_rows: int = 4, n_cols: int = 32):
    """A hypothesis strategy of problems: any seed, variant, structure, initial method, cap,
    threshold and the hard cases on or off. Problems our official variant refuses (pointers
    leaving their lists on such narrow layers) are left out."""
    from hypothesis import strategies as st

    variants, structures = tuple(variants), tuple(nm)

    @st.composite
    def problem(draw):
        variant = draw(st.sampled_from(variants))
        options = {}
        if variant == SWAPS:
            options = {"max_swaps": draw(st.sampled_from((1, 3, 100))), "window": draw(st.sampled_from((0, 2, 4))),
                       "refresh": draw(st.sampled_from((1, 2, 8))), "tol": draw(st.sampled_from((1e-4, 3e-2)))}
        else:
            options = {"max_cycle_time": draw(st.sampled_from((0, 1, 3, 8, 50))),
                       "update_threshold": draw(st.sampled_from((0.1, 1.3, 3.3, 13.3)))}
        if variant == "official":
            options["without_same_sign"] = draw(st.booleans())
        if variant == "exact":
            options.update(lookahead=draw(st.sampled_from((1, 2))), on_reject=draw(st.sampled_from(("stop", "skip"))))
        return make_problem(draw(st.integers(0, 2**32 - 1)), variant, nm=draw(st.sampled_from(structures)),
                            sparsity=draw(st.sampled_from((0.25, 0.5, 0.75))), n_rows=n_rows, n_cols=n_cols,
                            method=draw(st.sampled_from(("wanda", "magnitude"))), ties=draw(st.booleans()),
                            dead_channels=draw(st.booleans()), **options)
    return problem().filter(runs)


__all__ = ["VARIANTS", "as_outputs", "assert_matches", "expected_outputs", "make_problem", "problems", "runs"]
