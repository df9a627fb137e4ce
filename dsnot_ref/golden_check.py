"""Comparing another implementation's golden outputs with ours: the precision contract and the
messages of ``dsnot-ref golden check`` (data/golden/FORMAT.md, "Precision contract").

Decisions (masks, swap lists, cycle counts, active flags) must be equal. Traces are compared to
a tolerance per variant, derived from the case itself unless ``rtol``/``atol`` override it:

- ε traces: per row ``2 · (C + 2K) · u · Σ_j |c[r, j]|``, twice the worst-case rounding of ε₀
  summed in any order plus two roundings per cycle, u = 2⁻²⁴ for the official variant (float32,
  and every value must be a float32 number), 2⁻⁵³ for the others (float64);
- E_r traces (exact variant, swaps): ``1e-9 · max E_r``, far above float64 rounding through a
  C-long product (about C · 2⁻⁵³) and far below float32's.

Pure: arrays in, a ``Comparison`` out; the CLI prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from .errors import UserError
from .golden import INPUT_ARRAYS, GoldenCase, GoldenOutputs

ERROR_RTOL = 1e-9           # E_r traces: relative to the trace's largest E_r
UNIT_ROUNDOFF = {"official": 2.0**-24}   # every other variant: float64, 2⁻⁵³
MAX_LISTED = 5              # rows or entries named in a message


@dataclass(frozen=True)
class Tolerance:
    """What traces must satisfy: ε within ``eps_atol`` per row, E_r within ``error_atol``."""

    eps_atol: np.ndarray | None      # [R] float64; None: no ε trace (swaps)
    error_atol: float | None         # None: no E_r trace
    float32_eps: bool                # ε values must be float32 numbers (official variant)
    source: str                      # "contract" or "--rtol/--atol"


def contract(case: GoldenCase, ours: GoldenOutputs) -> Tolerance:
    """The per-variant precision contract for a case (module docstring)."""
    n_cols = case.weight.shape[1]
    eps_atol = None
    if ours.eps_trace is not None:
        u = UNIT_ROUNDOFF.get(case.variant, 2.0**-53)
        size = np.sum(np.abs(case.weight * case.seq_sum[None, :]), axis=1)             # [R] Σ_j |c|
        eps_atol = 2.0 * (n_cols + 2 * ours.cycles) * u * size
    error_atol = None
    if ours.error_trace is not None:
        error_atol = ERROR_RTOL * float(np.max(np.abs(ours.error_trace), initial=0.0))
    return Tolerance(eps_atol, error_atol, case.variant == "official", "contract")


def override(ours: GoldenOutputs, rtol: float, atol: float) -> Tolerance:
    """``atol + rtol · max|trace|`` for every trace, as given on the command line."""
    def scaled(trace):
        return None if trace is None else atol + rtol * float(np.max(np.abs(trace), initial=0.0))
    eps = scaled(ours.eps_trace)
    eps_atol = None if eps is None else np.full(ours.eps_trace.shape[1], eps)
    return Tolerance(eps_atol, scaled(ours.error_trace), False, "--rtol/--atol")


@dataclass(frozen=True)
class TraceReport:
    """One trace compared: the largest difference and the first cycle where it exceeds the tolerance."""

    name: str                        # "eps" or "error"
    max_diff: float | None           # None: shapes differ or one side lacks the trace
    within: bool
    first: tuple | None = None       # (cycle, row, ours, theirs, tolerance) of the first excess
    note: str = ""                   # shape mismatch, missing trace, non-float32 values

    def line(self) -> str:
        if self.note:
            return f"{self.name} trace: {self.note}"
        if self.first is None:
            return f"max |{self.name} diff| {self.max_diff:.3g}"
        k, r, a, b, tol = self.first
        return (f"{self.name} departs at cycle {k}, row {r}: ours {a!r}, theirs {b!r} "
                f"(diff {abs(a - b):.3g} > tolerance {tol:.3g}; max |{self.name} diff| {self.max_diff:.3g})")


def compare_trace(name: str, ours, theirs, atol, float32: bool = False) -> TraceReport:
    """ours, theirs [K+1, R]; atol [R] or a number."""
    if ours is None and theirs is None:
        return TraceReport(name, None, True)
    if ours is None or theirs is None:
        side = "ours" if ours is None else "theirs"
        return TraceReport(name, None, False, note=f"missing in {side}")
    if ours.shape != theirs.shape:
        return TraceReport(name, None, False, note=f"shape {theirs.shape}, expected {ours.shape}")
    diff = np.abs(ours - theirs)                                                   # [K+1, R]
    tol = np.broadcast_to(np.asarray(atol, dtype=np.float64), ours.shape[1:])      # [R]
    bad = ~(diff <= tol[None, :])                                                  # NaN counts as bad
    max_diff = float(np.max(diff, initial=0.0))
    if float32:
        not32 = theirs != theirs.astype(np.float32).astype(np.float64)
        if np.any(not32):
            k, r = np.argwhere(not32)[0]
            return TraceReport(name, max_diff, False, note=(
                f"{int(not32.sum())} of {not32.size} values are not float32 numbers (the official "
                f"variant computes in float32), first at cycle {k}, row {r}: {theirs[k, r]!r}"))
    if not bad.any():
        return TraceReport(name, max_diff, True)
    k, r = np.argwhere(bad)[0]
    return TraceReport(name, max_diff, False,
                       (int(k), int(r), float(ours[k, r]), float(theirs[k, r]), float(tol[r])))


def swap_table(swaps) -> dict:
    """(cycle, row) -> (grown, pruned) of a swap list [n, 4]."""
    return {(int(k), int(r)): (int(g), int(q)) for r, g, q, k in swaps}


def first_swap_difference(ours, theirs) -> str | None:
    """The first (cycle, row) at which the swap lists differ, both sides named; None if equal."""
    if ours.shape == theirs.shape and np.array_equal(ours, theirs):
        return None
    a, b = swap_table(ours), swap_table(theirs)
    if len(a) != len(ours) or len(b) != len(theirs):
        return f"a row swaps twice in one cycle ({len(theirs)} swaps, {len(b)} distinct (cycle, row))"
    if a == b:
        return "the same swaps in another order (sort by cycle, then row)"
    k, r = min(key for key in set(a) | set(b) if a.get(key) != b.get(key))

    def side(pair):
        return "no swap" if pair is None else f"grows {pair[0]}, prunes {pair[1]}"
    return f"first differing swap at cycle {k}, row {r}: ours {side(a.get((k, r)))}, theirs {side(b.get((k, r)))}"


@dataclass(frozen=True)
class Comparison:
    identical: bool
    n_mask_diff: int
    mask_rows: tuple[int, ...]       # rows whose masks differ, lowest first
    cycles: tuple[int, int]          # (ours, theirs)
    swap_difference: str | None      # first differing swap, None when the lists are equal
    active_difference: str | None    # first differing active flag
    eps: TraceReport
    error: TraceReport
    tolerance_source: str = "contract"
    details: tuple[str, ...] = field(default_factory=tuple)

    @property
    def first_diff_row(self) -> int | None:
        return self.mask_rows[0] if self.mask_rows else None

    @property
    def swaps_equal(self) -> bool:
        return self.swap_difference is None

    def problems(self) -> list[str]:
        """Every difference, most telling first (the first differing swap says where it starts)."""
        out = []
        if self.swap_difference:
            out.append(self.swap_difference)
        if self.cycles[0] != self.cycles[1]:
            out.append(f"cycles {self.cycles[0]} vs {self.cycles[1]} (ours vs theirs)")
        if self.n_mask_diff:
            rows = ", ".join(map(str, self.mask_rows[:MAX_LISTED]))
            more = f" and {len(self.mask_rows) - MAX_LISTED} more" if len(self.mask_rows) > MAX_LISTED else ""
            out.append(f"masks differ in {self.n_mask_diff} entries, rows {rows}{more}")
        if self.active_difference:
            out.append(self.active_difference)
        for trace in (self.eps, self.error):
            if not trace.within:
                out.append(trace.line())
        return out

    def describe(self) -> str:
        """One line: what agrees, or the first differences."""
        if self.identical:
            traces = "; ".join(t.line() for t in (self.eps, self.error) if t.max_diff is not None)
            return (f"masks, swaps, cycles ({self.cycles[0]}) and active flags equal"
                    + (f"; {traces}" if traces else "") + f" (tolerance: {self.tolerance_source})")
        return "; ".join(self.problems())


def compare_outputs(ours: GoldenOutputs, theirs: GoldenOutputs, case: GoldenCase | None = None,
                    rtol: float | None = None, atol: float | None = None) -> Comparison:
    """Our outputs against theirs. Tolerances: the case's precision contract (``contract``),
    or ``atol + rtol · max|trace|`` when either is given (then ``case`` may be None)."""
    if ours.pruned.shape != theirs.pruned.shape:
        raise UserError(f"mask shapes differ: {ours.pruned.shape} vs {theirs.pruned.shape}")
    if rtol is None and atol is None:
        if case is None:
            raise ValueError("compare_outputs needs the case for its precision contract, or rtol/atol")
        tol = contract(case, ours)
    else:
        tol = override(ours, rtol or 0.0, atol or 0.0)
    diff = ours.pruned != theirs.pruned
    rows = tuple(int(r) for r in np.nonzero(diff.any(axis=1))[0])
    eps = compare_trace("eps", ours.eps_trace, theirs.eps_trace, tol.eps_atol, tol.float32_eps)
    error = (compare_trace("error", ours.error_trace, theirs.error_trace, tol.error_atol)
             if ours.error_trace is not None and theirs.error_trace is not None
             else TraceReport("error", None, True))
    swap_difference = first_swap_difference(ours.swaps, theirs.swaps)
    active_difference = None
    if ours.active_trace.shape != theirs.active_trace.shape:
        active_difference = f"active_trace has shape {theirs.active_trace.shape}, expected {ours.active_trace.shape}"
    elif not np.array_equal(ours.active_trace, theirs.active_trace):
        k, r = np.argwhere(ours.active_trace != theirs.active_trace)[0]
        active_difference = (f"active_trace differs first at cycle {k}, row {r}: ours "
                             f"{bool(ours.active_trace[k, r])}, theirs {bool(theirs.active_trace[k, r])}")
    identical = (not diff.any() and swap_difference is None and active_difference is None
                 and ours.cycles == theirs.cycles and eps.within and error.within)
    return Comparison(identical, int(diff.sum()), rows, (ours.cycles, theirs.cycles), swap_difference,
                      active_difference, eps, error, tol.source)


def input_differences(theirs: GoldenCase, ours: GoldenCase) -> list[str]:
    """The inputs and settings in which two cases differ, named (empty: the same problem).
    Arrays are equal to float64 rounding of a float32 copy (rtol 1e-6)."""
    out = []
    for name in INPUT_ARRAYS + ("gram",):
        x, y = getattr(theirs, name), getattr(ours, name)
        if x is None or y is None:
            if (x is None) != (y is None):
                out.append(f"{name} {'missing' if x is None else 'present'} (ours: {'absent' if y is None else 'present'})")
            continue
        if x.shape != y.shape:
            out.append(f"{name} has shape {x.shape}, expected {y.shape}")
            continue
        scale = float(np.max(np.abs(y), initial=0.0)) if name == "gram" else 0.0   # G entries may cancel to ~0
        bad = ~np.isclose(x, y, rtol=1e-6, atol=1e-12 * scale)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            out.append(f"{name} differs in {int(bad.sum())} entries, first at {first}: {x[first]!r} vs ours {y[first]!r}")
    if theirs.nm != ours.nm:
        out.append(f"nm {theirs.nm} vs ours {ours.nm}")
    for a, b in ((theirs.settings, ours.settings), (theirs.swap_settings, ours.swap_settings)):
        if a is None or b is None:
            if (a is None) != (b is None):
                out.append(f"variant {theirs.variant!r} vs ours {ours.variant!r}")
            continue
        out += [f"{f.name} {getattr(a, f.name)!r} vs ours {getattr(b, f.name)!r}"
                for f in fields(a) if getattr(a, f.name) != getattr(b, f.name)]
    return out
