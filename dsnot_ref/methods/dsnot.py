"""DSnoT, vectorised over all output rows (docs/dsnot.md §3-§4).

DSnoT ("Dynamic Sparse No Training") keeps every weight value and, in each output row r,
repeatedly regrows one pruned weight g and prunes one kept weight q so that the row's expected
output error moves toward zero:

    c[r, j] = W[r, j] · seq_sum[j]                        contribution      (§3)
    ε[r]    = Σ_{j pruned in row r} c[r, j]               row error         (§3)
    ε_after = ε[r] + c[r, q] − c[r, g]                    one swap          (§4)

Shape letters: R output rows, C input columns, K = max_cycle_time, N:M structured sparsity.
Units: ``seq_sum`` is (1/S) Σ_s Σ_t x (the "per-sequence sum", L × mean), so ε and
``update_threshold`` are in those units, as in the released code. Arithmetic: float64
(reference), float32 (official: the released code's precision, ε₀ summed in torch's order).

Two variants (``DSnoTSettings.variant``):

* ``"reference"`` (default, §4a): candidate lists filtered by sign, never read past their end;
  a swap is accepted only when |ε| > threshold and ε_after·ε >= 0, so |ε| never increases.
* ``"official"`` (§4b): reproduces the released code (zyxxmu/DSnoT, commit 4c029df,
  lib/prune.py ``prune_DSnoT``) pointer for pointer.

Differences between the variants
--------------------------------
- variance: reference uses the pooled variance; official the mean within-sequence variance
  (the caller passes the right ``var``; both are floored at ``VAR_FLOOR``).
- growth list: reference = initially pruned weights whose contribution has the sign of ε
  (exactly 0 never), best first; official = all C columns sorted by c/var**γ with kept ones at
  0, read by two pointers from both ends.
- pruning list: reference = initially kept weights with contribution of sign opposite to ε,
  by Wanda score; official = all kept weights by Wanda score, negatives first, positives last
  reversed, zero contributions mapped to list position 0 (a quirk, reproduced).
- acceptance: reference |ε| > threshold and ε_after·ε >= 0 (N:M also |ε_after| < |ε|), a row
  that rejects or runs out of candidates stops; official ``still_active &= |ε| > threshold``
  on ε *before* the swap, with the sign check off by default (``without_same_sign=True``);
  pointers of stopped rows keep moving and their mask entries are rewritten
  (pruned[q] = False, pruned[g] = True) every cycle, exactly as in the released code.
- N:M pruned weight: reference = smallest initial score among the weights of g's group that
  are still kept from the initial mask; official = smallest initial score not yet set to +inf
  (the score of every proposed q is set to +inf, accepted or not).
- ties: both variants break ties by the lower column (stable sorts; for "largest first" lists
  too). The released code uses stable sorts for the lists but an unstable ``torch.sort``/
  ``topk`` for the N:M masks and the N:M pruned weight; we use the lower column there as well.

Consequence of reproducing the released code: with the c == 0 quirk (a kept weight whose input
channel has seq_sum = 0, e.g. a dead channel) the official variant can prune the same weight
twice or un-prune it in a stopped row, so a row's pruned count can change and the running ε
can differ from the ε of the final mask. The reference variant has neither problem.

Released-code defects not copied
--------------------------------
- division by a zero variance (a dead or constant input channel gives inf/NaN metrics): we
  floor the variance at ``VAR_FLOOR``.
- when a pointer leaves its list (narrow layers: C of tens to ~100 columns, or very low
  sparsity) the released code regrows a weight that is already kept, prunes a kept weight in a
  stopped row, or indexes out of range; the official variant raises ``DSnoTPointerError``
  instead. Precisely: a regrowth pointer reading a column the initial mask keeps (or past the
  list), a pruning pointer reading outside its K_r kept entries, or an N:M group with no
  finite score left.
- the SparseGPT initial score from a never-accumulated Hessian, ``pow_of_var_pruning`` parsed
  but unused, ``--without_same_sign`` read with ``type=bool``: see docs/dsnot.md; not here.

Trace format (``trace=True``): ``DSnoTTrace`` with
  ``eps``    [cycles+1, R] float64: ε of each row after k cycles (row 0 = initial ε); a
             stopped row repeats its last value (official: the loop's running ε);
  ``active`` [cycles+1, R] bool: row still active after k cycles (row 0 all True);
             cycle k accepted a swap in row r iff active[k, r];
  ``swaps``  [n, 4] int64: (row, grown column, pruned column, cycle), cycles counted from 1,
             ordered by cycle then row.

Where the code lives
--------------------
Imports go one way: ``selection``, ``dsnot_common`` <- ``dsnot_official`` <- ``dsnot``.

- ``dsnot_common.py``: ``DSnoTSettings``, ``DSnoTResult``/``DSnoTTrace``, ``DSnoTPointerError``,
  the shared steps (``contributions``, ``row_errors``, ``regrowth_metric``,
  ``floored_variance``, ``contributions_at``) and the trace ``Recorder``.
- this file: the reference variant, one function per step (``growth_order``, ``prune_order``,
  ``propose_swaps``, ``propose_nm_pruning``, ``accept_swaps``, ``apply_swaps_inplace``,
  ``dsnot_reference``), ``check_inputs`` and the entry point ``dsnot()``. Every name of the
  other three modules that callers import from here is re-exported below.
- ``dsnot_official.py``: the official variant (``official_growth_order``,
  ``official_prune_order`` and their reachable ends, ``read_*_pointers``, ``official_accept``,
  ``apply_official_inplace``, ``dsnot_official``, ``dsnot_official_nm``).
- ``selection.py``: speed. The lists are built per block of rows (``by_row_chunks``, blocks on
  threads with NumPy; its ``ROW_CHUNK_ENTRIES`` / ``LIST_THREADS`` are read there) and only
  their first K entries (the most K cycles can read) are kept, found by partitioning instead
  of sorting (``stable_smallest`` / ``stable_largest``: same order as a stable argsort, ties at
  the K-th place resolved by column); the official variant selects both growth ends, and the
  pruning list's negative and positive parts, with one partition each
  (``smallest_and_largest``, ``smallest_kept_of_each_sign``), falling back to separate
  selections for unbalanced rows. Sort keys are built without ``where`` (``masked_key``),
  which branches per element.

The loops gather the few contributions they need from W. ``dsnot_loop.py`` is the plain
row-by-row oracle these are tested against; ``tests/test_stable_selection.py`` holds each
selection shortcut to the full stable sort it replaces.
"""

from __future__ import annotations

import numpy as np

from ..backend import array_module, to_device, to_numpy
from ..errors import UserError
from .dsnot_common import (DSnoTResult, DSnoTSettings, Recorder, arithmetic_dtype, contributions,
                           contributions_at, floored_variance, regrowth_metric, row_errors)
from .dsnot_official import dsnot_official, dsnot_official_nm
from .scores import check_nm, wanda_score
from .selection import by_row_chunks, masked_key, row_counts, stable_smallest

# Re-exported: everything that was defined in this file before it was split keeps its import
# path (dsnot_loop.py, dsnot_exact.py, notebooks and tests import from here). by_row_chunks
# reads ROW_CHUNK_ENTRIES and LIST_THREADS in selection.py: set them there, not here.
from .dsnot_common import VAR_FLOOR, VARIANTS, DSnoTPointerError, DSnoTTrace  # noqa: F401
from .dsnot_common import Recorder as _Recorder  # noqa: F401
from .dsnot_official import (_official_prune_ends_any_row, _pointer_error,  # noqa: F401
                             apply_official_inplace, official_accept, official_growth_ends,
                             official_growth_metric, official_growth_order, official_lists,
                             official_prune_ends, official_prune_order, read_growth_pointers,
                             read_nm_pruning, read_prune_pointers)
from .selection import (DEVICE_ROW_CHUNK_ENTRIES, LIST_THREADS, ROW_CHUNK_ENTRIES,  # noqa: F401
                        _ordered_by_key, _smallest_with_ties, _stable_order, row_entries,
                        selected_columns, smallest_and_largest, smallest_kept_of_each_sign,
                        stable_largest)


# --------------------------------------------------------------------------- reference orders (§4a)

def growth_order(c, var, pruned0, eps, pow_of_var: float, limit: int | None = None):
    """Regrowth candidates of each row, best first (reference variant).

    Candidates: weights pruned by the initial mask whose contribution has the sign of ε[r]
    (strictly; c = 0 never helps). Ranked by c / var**γ: largest first when ε > 0, smallest
    (most negative) first when ε < 0; ties to the lower column.
    [R, C] ... -> (order [R, min(limit, C)] int64, count [R] int64 valid entries per row).
    """
    xp = array_module(c)
    signed = c * xp.sign(eps)[:, None]                     # > 0 where c has the sign of ε
    candidate = pruned0 & (signed > 0)                                    # [R, C]
    key = masked_key(-regrowth_metric(signed, var, pow_of_var), candidate, xp.inf)
    limit = c.shape[1] if limit is None else limit
    return stable_smallest(key, limit), row_counts(candidate)


def prune_order(c, wanda, pruned0, eps, limit: int | None = None):
    """Pruning candidates of each row, best first (reference variant).

    Candidates: weights kept by the initial mask whose contribution has the sign opposite to
    ε[r] (c < 0 when ε > 0, c > 0 when ε < 0), by Wanda score, smallest first, ties to the
    lower column. -> (order [R, min(limit, C)] int64, count [R] int64).
    """
    xp = array_module(c)
    candidate = ~pruned0 & (c * xp.sign(eps)[:, None] < 0)
    key = masked_key(wanda, candidate, xp.inf)
    limit = c.shape[1] if limit is None else limit
    return stable_smallest(key, limit), row_counts(candidate)


# --------------------------------------------------------------------------- one cycle (§4)

def next_candidate(order, count, n_done):
    """Entry ``n_done[r]`` of each row's candidate list, and whether the list still has one.

    ``n_done[r]`` swaps were accepted so far, so the next candidate sits at that position.
    [R, W], [R], [R] -> (column [R] int64, meaningless where not available; available [R] bool).
    """
    xp = array_module(order)
    available = n_done < count
    if order.shape[1] == 0:
        return xp.zeros(order.shape[0], dtype=xp.int64), available
    at = xp.minimum(n_done, order.shape[1] - 1)[:, None]                  # [R, 1]
    return xp.take_along_axis(order, at, axis=1)[:, 0], available


def propose_swaps(grow, n_grow, prune, n_prune, n_done):
    """The next (g, q) of every row: its next regrowth and next pruning candidate.

    -> g [R], q [R] int64, available [R] bool (both lists still have an entry).
    """
    g, has_g = next_candidate(grow, n_grow, n_done)
    q, has_q = next_candidate(prune, n_prune, n_done)
    return g, q, has_g & has_q


def propose_nm_pruning(g, initial_score, pruned, pruned0, m: int):
    """N:M reference: in g's group of M columns, the weight still kept from the initial mask
    with the smallest initial score (ties to the lower column). -> q [R], available [R]."""
    xp = array_module(initial_score)
    rows = xp.arange(g.shape[0], dtype=xp.int64)[:, None]                 # [R, 1]
    group = (g - g % m)[:, None] + xp.arange(m, dtype=xp.int64)[None, :]  # [R, M] columns
    candidate = ~pruned0[rows, group] & ~pruned[rows, group]              # [R, M]
    key = xp.where(candidate, initial_score[rows, group], xp.inf)
    at = xp.argmin(key, axis=1)                                           # first minimum
    return group[rows[:, 0], at], xp.any(candidate, axis=1)


def accept_swaps(eps, eps_after, candidate, threshold: float, strict_decrease: bool = False):
    """Reference acceptance: |ε| > threshold and ε_after·ε >= 0 (sign kept, zero allowed).

    ``strict_decrease`` adds |ε_after| < |ε| (N:M, where q's sign is not filtered). -> [R] bool.
    """
    xp = array_module(eps)
    accept = candidate & (xp.abs(eps) > threshold) & (eps_after * eps >= 0)
    if strict_decrease:
        accept &= xp.abs(eps_after) < xp.abs(eps)
    return accept


def apply_swaps_inplace(pruned, eps, g, q, c_g, c_q, accept):
    """Flip both mask entries of accepted rows (edits ``pruned``); return the new ε [R]."""
    xp = array_module(pruned)
    rows = xp.nonzero(accept)[0]
    pruned[rows, g[rows]] = False
    pruned[rows, q[rows]] = True
    return (eps + xp.where(accept, c_q, 0.0)) - xp.where(accept, c_g, 0.0)


# --------------------------------------------------------------------------- reference loop

def reference_lists(w, pruned0, seq_sum, seq_sq, var, pow_of_var: float, limit: int,
                    with_pruning: bool = True):
    """ε and the reference candidate lists of a block of rows (see ``growth_order``,
    ``prune_order``). -> (eps [R], grow, n_grow[, prune, n_prune]); no pruning list for N:M."""
    w = w.astype(array_module(w).float64, copy=False)                     # widened once for c and Wanda
    c = contributions(w, seq_sum)                                         # [R, C]
    eps = row_errors(c, pruned0)
    grow, n_grow = growth_order(c, var, pruned0, eps, pow_of_var, limit)
    if not with_pruning:
        return eps, grow, n_grow
    prune, n_prune = prune_order(c, wanda_score(w, seq_sq), pruned0, eps, limit)
    return eps, grow, n_grow, prune, n_prune


def dsnot_reference(w, pruned0, seq_sum, seq_sq, var, settings: DSnoTSettings, nm=None,
                    initial_score=None, trace: bool = False):
    """Reference DSnoT loop (§4a). -> (pruned [R, C], ε [R], recorder)."""
    xp = array_module(w)
    n_rows = w.shape[0]
    lists = by_row_chunks(reference_lists, (w, pruned0), seq_sum, seq_sq, var,
                          settings.pow_of_var_regrowing, settings.max_cycle_time, nm is None)
    eps, grow, n_grow = lists[:3]
    if nm is None:
        prune, n_prune = lists[3:]
    rec = Recorder(eps, trace)
    pruned = pruned0.copy()
    rows = xp.arange(n_rows, dtype=xp.int64)
    n_done = xp.zeros(n_rows, dtype=xp.int64)
    active = xp.ones(n_rows, dtype=xp.bool_)
    while rec.cycles < settings.max_cycle_time and bool(xp.any(active)):
        if nm is None:
            g, q, available = propose_swaps(grow, n_grow, prune, n_prune, n_done)
        else:
            g, has_g = next_candidate(grow, n_grow, n_done)
            q, has_q = propose_nm_pruning(g, initial_score, pruned, pruned0, nm[1])
            available = has_g & has_q
        c_g, c_q = contributions_at(w, seq_sum, rows, g), contributions_at(w, seq_sum, rows, q)
        eps_after = eps + c_q - c_g
        active = accept_swaps(eps, eps_after, active & available, settings.update_threshold,
                              strict_decrease=nm is not None)
        eps = apply_swaps_inplace(pruned, eps, g, q, c_g, c_q, active)
        n_done += active
        rec.cycle(eps, active, g, q)
    return pruned, eps, rec


# --------------------------------------------------------------------------- entry point

def check_inputs(weight, pruned0, seq_sum, seq_sq, var, nm, initial_score):
    """Shapes, dtypes and finiteness of DSnoT's inputs; UserError naming the array."""
    xp = array_module(weight)
    if weight.ndim != 2:
        raise UserError(f"weight must be [R, C], got shape {weight.shape}")
    n_rows, n_cols = weight.shape
    if pruned0.shape != weight.shape or pruned0.dtype != xp.bool_:
        raise UserError(f"initial mask must be bool {weight.shape}, got {pruned0.dtype} {pruned0.shape}")
    for name, a in (("seq_sum", seq_sum), ("seq_sq", seq_sq), ("var", var)):
        if tuple(a.shape) != (n_cols,):
            raise UserError(f"{name} has shape {tuple(a.shape)}, expected ({n_cols},)")
        a_xp = array_module(a)            # statistics may still be on the host here
        if not bool(a_xp.all(a_xp.isfinite(a))):
            raise UserError(f"{name} has NaN or inf entries")
    if not bool(xp.all(xp.isfinite(weight))):
        raise UserError("weight has NaN or inf entries")
    if nm is not None:
        n, m = check_nm(nm)
        if n_cols % m != 0:
            raise UserError(f"{n}:{m} sparsity needs C divisible by {m}, got C={n_cols}")
    if initial_score is not None and tuple(initial_score.shape) != (n_rows, n_cols):
        raise UserError(f"initial_score has shape {tuple(initial_score.shape)}, expected {weight.shape}")


def dsnot(weight, pruned0, seq_sum, seq_sq, var, settings: DSnoTSettings = DSnoTSettings(), *,
          nm: tuple[int, int] | None = None, initial_score=None, trace: bool = False) -> DSnoTResult:
    """DSnoT on one weight matrix: a new mask with the same number of pruned weights per row.

    weight [R, C] (any float dtype; never changed), pruned0 [R, C] bool (initial mask, True =
    pruned), seq_sum / seq_sq / var [C] input statistics (see docs/design.md LinearStats; the
    reference variant expects ``var_pooled``, the official ``var_within``). ``initial_score``
    [R, C] is the initial pruner's score, used by N:M to pick the pruned weight (default: the
    Wanda score). Variants "reference" and "official"; "exact" lives in ``dsnot_exact``.
    """
    check_inputs(weight, pruned0, seq_sum, seq_sq, var, nm, initial_score)
    xp = array_module(weight)
    dtype = arithmetic_dtype(settings.variant)
    # every input on the weight's device (no-op when already there), statistics in the
    # variant's arithmetic (float32 for the official variant, as the released code holds them)
    pruned0 = to_device(pruned0, xp)                                      # [R, C]
    seq_sum, seq_sq, var = (to_device(a, xp).astype(dtype, copy=False) for a in (seq_sum, seq_sq, var))
    var = floored_variance(var, dtype)                                    # [C]
    if nm is not None and initial_score is None:
        initial_score = wanda_score(weight, seq_sq, dtype)
    if initial_score is not None:
        initial_score = to_device(initial_score, xp)                      # [R, C]
    stats = (seq_sum, seq_sq, var)
    if settings.variant == "reference":
        pruned, eps, rec = dsnot_reference(weight, pruned0, *stats, settings, nm, initial_score, trace)
    elif settings.variant == "official" and nm is None:
        pruned, eps, rec = dsnot_official(weight, pruned0, *stats, settings, trace)
    elif settings.variant == "official":
        pruned, eps, rec = dsnot_official_nm(weight, pruned0, *stats, initial_score, settings, nm[1], trace)
    else:
        raise UserError(f"variant {settings.variant!r} is not handled by dsnot(); "
                        "use methods.prune_linear or methods.dsnot_exact")
    return DSnoTResult(pruned=pruned, eps_before=rec.eps_before,
                       eps_after=to_numpy(eps).astype(np.float64), n_swaps=rec.n_swaps,
                       cycles=rec.cycles, trace=rec.trace())
