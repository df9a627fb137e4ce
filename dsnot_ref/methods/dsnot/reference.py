"""The reference DSnoT variant for all rows at once: per_row.py vectorised, tested equal.

DSnoT ("Dynamic Sparse No Training") keeps every weight value and, in each output row r,
repeatedly regrows one pruned weight g and prunes one kept weight q so that the row's expected
output error moves toward zero (docs/dsnot.md §3-§4):

    c[r, j] = W[r, j] · seq_sum[j]                        contribution      (§3)
    ε[r]    = Σ_{j pruned in row r} c[r, j]               row error         (§3)
    ε_after = ε[r] + c[r, q] − c[r, g]                    one swap          (§4)

Shape letters: R output rows, C input columns, K = max_cycle_time, D = min(K, C) list entries
read, N:M structured sparsity.
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
- ties (stable sorts): reference, the lower column first in every list ("largest first" too);
  official, the pointer decides: growth read from the right end (ε > 0) takes the higher column
  first among equal values, from the left the lower; pruning the lower column either way. The released code uses stable sorts for the lists but an unstable ``torch.sort``/
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
  list), a pruning pointer reading outside its n_kept[r] kept entries, or an N:M group with no
  finite score left.
- the SparseGPT initial score from a never-accumulated Hessian, ``pow_of_var_pruning`` parsed
  but unused, ``--without_same_sign`` read with ``type=bool``: see docs/dsnot.md; not here.

Trace format (``trace=True``): ``RefinementTrace`` (methods/contract.py): per cycle ε, the
active flags and the accepted swaps (row, grown column, pruned column, cycle).

The candidate lists are built per block of rows (``by_row_chunks``) and hold only their first
D = min(K, C) entries, the most K cycles can read: ``first_k`` is the one place where a fast
selection (methods/selection.py) replaces a stable argsort.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...backend import array_module
from ..contract import LayerProblem, Refinement, StatsNeeds
from ..scores import wanda_score
from ..selection import by_row_chunks
from .common import DSnoTSettings, Recorder, contributions_at, prepare
from .orders import growth_order, next_candidate, propose_nm_pruning, prune_order
from .per_row import contributions, row_errors


# --------------------------------------------------------------------------- one cycle (§4)

def propose_swaps(grow, n_grow, prune, n_prune, n_done):
    """The next (g, q) of every row: its next regrowth and next pruning candidate.

    -> g [R], q [R] int64, available [R] bool (both lists still have an entry).
    """
    g, has_g = next_candidate(grow, n_grow, n_done)
    q, has_q = next_candidate(prune, n_prune, n_done)
    return g, q, has_g & has_q


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
    zero = xp.zeros((), dtype=eps.dtype)
    return (eps + xp.where(accept, c_q, zero)) - xp.where(accept, c_g, zero)


# --------------------------------------------------------------------------- reference loop

def reference_lists(w, pruned0, seq_sum, seq_sq, var, pow_of_var: float, limit: int,
                    with_pruning: bool = True):
    """ε and the reference candidate lists of a block of rows (see ``growth_order``,
    ``prune_order``). -> (eps [R], grow, n_grow[, prune, n_prune]); no pruning list for N:M."""
    w = w.astype(array_module(w).float64, copy=False)                     # converted once for c and Wanda
    c = contributions(w, seq_sum)                                         # [R, C]
    eps = row_errors(c, pruned0)
    grow, n_grow = growth_order(c, var, pruned0, eps, pow_of_var, limit)
    if not with_pruning:
        return eps, grow, n_grow
    prune, n_prune = prune_order(c, wanda_score(w, seq_sq), pruned0, eps, limit)
    return eps, grow, n_grow, prune, n_prune


def dsnot_reference(w, pruned0, seq_sum, seq_sq, var, settings: DSnoTSettings, nm=None,
                    initial_score=None, trace: bool = False):
    """Reference DSnoT loop (§4a). -> Refinement."""
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
        rec.cycle(eps, active, active, g, q)
    return rec.result(pruned, eps)


# --------------------------------------------------------------------------- the refiner

@dataclass(frozen=True)
class Reference:
    """The reference DSnoT variant as a refiner (methods/contract.py): ε from the first moments,
    the pooled variance in the growth criterion, float64 arithmetic."""

    settings: DSnoTSettings
    needs = StatsNeeds(variance="pooled")
    score_dtype = np.float64

    def refine(self, problem: LayerProblem, trace: bool = False) -> Refinement:
        w, pruned0, seq_sum, seq_sq, var, initial_score = prepare(problem, np.float64)
        return dsnot_reference(w, pruned0, seq_sum, seq_sq, var, self.settings, problem.nm, initial_score, trace)
