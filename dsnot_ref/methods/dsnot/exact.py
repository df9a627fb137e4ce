"""DSnoT "exact" variant: a swap is kept only if it lowers the row's true error.

DSnoT's reference variant (docs/dsnot.md §4a) steers each row by ε, the error of the *expected*
output, and accepts a swap when |ε| shrinks. A swap that shrinks |ε| can still increase the
row's actual squared reconstruction error on the calibration tokens. This variant keeps the
reference variant's growth and pruning orders (which candidate is proposed next) but accepts a
swap only when it lowers

    E_r = Σ_tokens (x · d_r)² = d_rᵀ G d_r,     G = Σ_tokens x xᵀ = hessian · S / 2   [C, C]

where ``d_r`` holds row r's pruned weights (dense minus sparse row: ``W[r, j]`` where pruned,
0 elsewhere). With ``g_r = G d_r`` kept per row, regrowing g and pruning q changes E_r by

    ΔE = −2 w_g g_r[g] + 2 w_q g_r[q] + w_g² G_gg + w_q² G_qq − 2 w_g w_q G_gq

and an accepted swap updates ``g_r += −w_g G[:, g] + w_q G[:, q]`` (two columns of G). So every
accepted swap provably lowers E_r, and E_r never increases from one cycle to the next.

Rules (all rows at once, vectorised; ``exact_per_row.exact_per_row`` is the same row by row):

- Direction: ε[r] (docs/dsnot.md §3) is tracked as in the reference variant and picks the lists:
  ε > 0 grows from the initially pruned weights with c > 0 (largest ``c / var**γ`` first) and
  prunes initially kept weights with c < 0 (smallest Wanda score first); ε <= 0 the mirror
  (c < 0 grown smallest ``c / var**γ`` first, c > 0 pruned). Unlike the reference, ε may change
  sign (acceptance is by E), so both directions' lists are kept. Contributions of exactly 0 are
  never candidates. N:M: q is the initially kept, still kept weight with the smallest initial
  score in g's M-group (whatever its sign), as in the reference variant.
- Each weight changes state at most once (the lists come from the initial mask).
- ``lookahead`` k (default 1): the next k available growth candidates and, unstructured, the
  next k available pruning candidates are considered (k² pairs; N:M: k pairs, q fixed by g's
  group) and the pair with the largest decrease of E is proposed (ties: earliest growth
  candidate, then earliest pruning candidate). k = 1 proposes exactly the reference's pair.
- Acceptance: ``ΔE < −1e-12 · E_r`` (a decrease larger than float64 rounding of E_r).
  ``update_threshold`` and the sign rule of the reference variant are not used.
- ``on_reject`` when the proposed pair does not lower E_r: "stop" (default, like the reference:
  the row stops for good) or "skip" (the first growth candidate of the window is discarded, the
  row stays active and tries the next one in the following cycle). Either way a row stops when
  its growth list for the current direction is exhausted, and (unstructured) when its pruning
  list for that direction is (ε, hence the direction, only changes when a swap is accepted).
- Cycles: ``max_cycle_time``, or ``int(cycle_fraction · C)`` when ``cycle_fraction`` is set.
  One cycle = at most one swap (or one skip) per row.

Memory: G is [C, C] float64 and g_r is [R, C] float64 (see docs/exact_variant.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...backend import array_module
from ...errors import UserError
from ..contract import LayerProblem, Refinement, StatsNeeds
from ..gram import gram_products
from ..scores import wanda_score
from .common import DSnoTSettings, Recorder, check_inputs, cycle_budget
from .orders import growth_order, propose_nm_pruning, prune_order
from .per_row import contributions, row_errors

ACCEPT_RTOL = 1e-12  # a swap must lower E_r by more than this fraction of E_r


@dataclass(frozen=True)
class CandidateList:
    """One direction's candidate list per row, from ``growth_order``/``prune_order``."""

    order: object  # [R, D] int64 columns in proposal order (D = how far we may read)
    count: object  # [R] int64: entries [0, count) are candidates


def direction_lists(c, var, wanda, pruned0, pow_of_var: float, limit: int):
    """The reference variant's lists for ε > 0 and for ε <= 0, ``limit`` entries deep.

    Built by the reference variant's own ``growth_order``/``prune_order``, asked once as if
    every row had ε = +1 and once as if ε = −1 (ε = 0 proposes like ε < 0, as in the reference
    "otherwise take the smallest").
    """
    xp = array_module(c)
    plus = xp.ones(c.shape[0], dtype=xp.float64)
    lists = {}
    for name, eps in (("pos", plus), ("neg", -plus)):
        lists["grow_" + name] = CandidateList(*growth_order(c, var, pruned0, eps, pow_of_var, limit))
        lists["prune_" + name] = CandidateList(*prune_order(c, wanda, pruned0, eps, limit))
    return lists


def window(cands: CandidateList, available, k: int):
    """The first k still-available entries of each row's list.

    ``available [R, C]`` by column -> ``(cols [R, k] int64, valid [R, k] bool)``; invalid
    slots (list exhausted) hold column 0.
    """
    xp = array_module(cands.order)
    n_rows, width = cands.order.shape
    if width == 0:
        return xp.zeros((n_rows, k), dtype=xp.int64), xp.zeros((n_rows, k), dtype=xp.bool_)
    in_list = xp.arange(width)[None, :] < cands.count[:, None]  # [R, D]
    usable = in_list & xp.take_along_axis(available, cands.order, axis=1)  # by position
    rank = xp.cumsum(usable, axis=1)  # [R, D]: how many usable up to each position
    positions = xp.stack([xp.argmax(rank >= j, axis=1) for j in range(1, k + 1)], axis=1)
    valid = rank[:, -1:] >= xp.arange(1, k + 1)[None, :]  # [R, k]
    cols = xp.take_along_axis(cands.order, positions, axis=1)
    return xp.where(valid, cols, 0), valid


def pick_by_direction(positive, pos_pair, neg_pair):
    """Per row, the (cols, valid) pair of the ε > 0 lists or of the ε <= 0 lists."""
    xp = array_module(positive)
    sel = positive[:, None]
    return xp.where(sel, pos_pair[0], neg_pair[0]), xp.where(sel, pos_pair[1], neg_pair[1])


def nm_partners(grow_cols, initial_score, pruned, pruned0, m: int):
    """N:M: each growth candidate's partner, by the reference variant's ``propose_nm_pruning``.

    ``grow_cols [R, k] -> (q [R, k], valid [R, k])``: in g's group, the weight still kept from
    the initial mask with the smallest initial score (ties to the lower column).
    """
    xp = array_module(grow_cols)
    slots = [propose_nm_pruning(grow_cols[:, j], initial_score, pruned, pruned0, m)
             for j in range(grow_cols.shape[1])]
    return xp.stack([q for q, _ in slots], axis=1), xp.stack([ok for _, ok in slots], axis=1)


def swap_deltas(w, g_r, gram, grow, grow_valid, prune, prune_valid, paired: bool):
    """ΔE_r of each candidate pair; +inf where a slot is invalid.

    Unstructured (paired=False): grow [R, k] × prune [R, k] -> [R, k, k].
    N:M (paired=True): prune [R, k] is grow's own partner -> [R, k].
    """
    xp = array_module(w)
    rows = xp.arange(w.shape[0])[:, None]
    diag = xp.diagonal(gram)
    wg, wq = w[rows, grow], w[rows, prune]  # [R, k]
    grow_term = -2.0 * wg * g_r[rows, grow] + wg**2 * diag[grow]  # [R, k]
    prune_term = 2.0 * wq * g_r[rows, prune] + wq**2 * diag[prune]  # [R, k]
    if paired:
        delta = grow_term + prune_term - 2.0 * wg * wq * gram[grow, prune]
        return xp.where(grow_valid & prune_valid, delta, xp.inf)
    cross = gram[grow[:, :, None], prune[:, None, :]]  # [R, k, k]
    delta = grow_term[:, :, None] + prune_term[:, None, :] - 2.0 * wg[:, :, None] * wq[:, None, :] * cross
    valid = grow_valid[:, :, None] & prune_valid[:, None, :]
    return xp.where(valid, delta, xp.inf)


def best_pair(delta, grow, prune, paired: bool):
    """Per row the pair with the smallest ΔE: ``-> (g [R], q [R], ΔE [R])`` (first on ties)."""
    xp = array_module(delta)
    rows = xp.arange(delta.shape[0])
    flat = delta.reshape(delta.shape[0], -1)
    best = xp.argmin(flat, axis=1)  # [R]; row-major: earliest growth, then earliest prune
    k = grow.shape[1]
    a, b = (best, best) if paired else (best // k, best % k)
    return grow[rows, a], prune[rows, b], flat[rows, best]


def propose_pairs(lists, eps, growable, pruned, pruned0, initial_score, nm, lookahead: int):
    """This cycle's candidate windows for every row, in the direction of its ε.

    -> (grow [R, k], grow_valid, prune [R, k], prune_valid, exhausted [R]); ``exhausted``: the
    row can never swap again (no growth candidate, or unstructured no pruning candidate).
    """
    positive = eps > 0
    grow, grow_valid = pick_by_direction(
        positive, window(lists["grow_pos"], growable, lookahead), window(lists["grow_neg"], growable, lookahead)
    )
    if nm is None:
        kept = ~pruned
        prune, prune_valid = pick_by_direction(
            positive, window(lists["prune_pos"], kept, lookahead), window(lists["prune_neg"], kept, lookahead)
        )
        return grow, grow_valid, prune, prune_valid, ~grow_valid[:, 0] | ~prune_valid[:, 0]
    prune, prune_valid = nm_partners(grow, initial_score, pruned, pruned0, nm[1])
    return grow, grow_valid, prune, prune_valid, ~grow_valid[:, 0]


@dataclass
class ExactState:
    """The exact loop's state, all rows; edited in place by ``apply_swaps_exact_inplace``."""

    pruned: object      # [R, C] bool, the current mask
    growable: object    # [R, C] bool, initially pruned and not yet regrown or skipped
    g_r: object         # [R, C] float64, G d_r
    error: object       # [R] float64, E_r = d_rᵀ G d_r
    eps: object         # [R] float64, ε_r


def apply_swaps_exact_inplace(state: ExactState, w, c, gram, g, q, delta, accept):
    """Accepted rows: flip both mask entries, update g_r with two columns of G, E_r and ε."""
    xp = array_module(w)
    idx = xp.nonzero(accept)[0]
    g, q = g[idx], q[idx]
    wg, wq = w[idx, g], w[idx, q]  # [A]
    state.g_r[idx] += -wg[:, None] * gram[g] + wq[:, None] * gram[q]  # G symmetric: rows = columns
    state.error[idx] += delta[idx]
    state.eps[idx] += c[idx, q] - c[idx, g]
    state.pruned[idx, g] = False
    state.pruned[idx, q] = True
    state.growable[idx, g] = False


def exact_swaps(w, pruned0, seq_sum, var, wanda, gram, settings: DSnoTSettings, *,
                nm: tuple[int, int] | None = None, initial_score=None, trace: bool = False) -> Refinement:
    """The exact-variant loop on one weight matrix (pure; the inputs are not modified).

    w [R, C]; pruned0 [R, C] bool initial mask; seq_sum [C], var [C] (docs/dsnot.md §1);
    wanda [R, C]: the pruning order; initial_score [R, C]: N:M's pruning order (default wanda);
    gram [C, C] = Σ x xᵀ (any positive multiple gives the same masks); settings: cycles
    (``cycle_budget``), γ, lookahead, on_reject. ``trace=True`` also records ε, E_r and the
    active flags after every cycle; the results are the same either way.
    """
    xp = array_module(w, gram)
    w = xp.asarray(w, dtype=xp.float64)
    gram = xp.asarray(gram, dtype=xp.float64)
    wanda = xp.asarray(wanda, dtype=xp.float64)
    initial_score = wanda if initial_score is None else xp.asarray(initial_score, dtype=xp.float64)
    pruned0 = xp.asarray(pruned0, dtype=xp.bool_)
    rows = xp.arange(w.shape[0])
    cycles = cycle_budget(settings, w.shape[1])
    c = contributions(w, seq_sum)  # [R, C]
    # each cycle consumes at most one entry of a list, and looks k entries past that
    depth = min(w.shape[1], cycles + settings.lookahead)
    lists = direction_lists(c, var, wanda, pruned0, settings.pow_of_var_regrowing, depth)
    g_r, error = gram_products(xp.where(pruned0, w, 0.0), gram)  # d = dense − sparse
    state = ExactState(pruned=pruned0.copy(), growable=pruned0.copy(), g_r=g_r, error=error,
                       eps=row_errors(c, pruned0))
    recorder = Recorder(state.eps, trace, error0=state.error)
    active = xp.ones(w.shape[0], dtype=xp.bool_)
    while recorder.cycles < cycles and bool(xp.any(active)):
        grow, grow_ok, prune, prune_ok, exhausted = propose_pairs(
            lists, state.eps, state.growable, state.pruned, pruned0, initial_score, nm, settings.lookahead)
        delta = swap_deltas(w, state.g_r, gram, grow, grow_ok, prune, prune_ok, paired=nm is not None)
        g, q, best = best_pair(delta, grow, prune, paired=nm is not None)
        accept = active & (best < -ACCEPT_RTOL * state.error)
        if settings.on_reject == "skip":
            dropped = active & ~accept & grow_ok[:, 0]
            state.growable[rows[dropped], grow[dropped, 0]] = False  # drop the window's head
            active &= accept | ~exhausted
        else:
            active &= accept
        apply_swaps_exact_inplace(state, w, c, gram, g, q, best, accept)
        recorder.cycle(state.eps, active, accept, g, q, error=state.error)
    return recorder.result(state.pruned, state.eps, error=state.error)


def check_gram(gram, n_cols: int):
    """G must be a finite [C, C] matrix; UserError naming the problem otherwise."""
    if tuple(gram.shape) != (n_cols, n_cols):
        raise UserError(f"gram has shape {tuple(gram.shape)}, expected ({n_cols}, {n_cols})")
    xp = array_module(gram)
    if not bool(xp.all(xp.isfinite(gram))):
        raise UserError("gram has NaN or inf entries")


def exact_from_gram(weight, pruned0, seq_sum, seq_sq, var, gram, settings: DSnoTSettings | None = None, *,
                    nm: tuple[int, int] | None = None, initial_score=None, trace: bool = False) -> Refinement:
    """The exact variant from the statistics and G itself (what the ``Exact`` refiner and the
    golden fixtures both run).

    weight [R, C]; pruned0 [R, C] bool initial mask; seq_sum, seq_sq, var [C] (var: the pooled
    variance); gram [C, C] = Σ x xᵀ, float64; settings: ``DSnoTSettings`` (max_cycle_time,
    pow_of_var_regrowing, lookahead, cycle_fraction, on_reject; defaults when None).
    Pruning order: the Wanda score, or for N:M the ``initial_score`` when given.
    """
    check_inputs(weight, pruned0, seq_sum, seq_sq, var, nm, initial_score)
    check_gram(gram, weight.shape[1])
    xp = array_module(weight, gram)
    w64 = xp.asarray(weight, dtype=xp.float64)
    return exact_swaps(w64, xp.asarray(pruned0, dtype=xp.bool_), seq_sum, var, wanda_score(w64, seq_sq),
                       xp.asarray(gram, dtype=xp.float64), settings or DSnoTSettings(variant="exact"),
                       nm=nm, initial_score=initial_score, trace=trace)


# --------------------------------------------------------------------------- the refiner

@dataclass(frozen=True)
class Exact:
    """The exact DSnoT variant as a refiner (methods/contract.py): the reference variant's
    statistics and G = Σ x xᵀ, whose chunk products are formed in float64 because a swap is
    accepted on any drop of E_r larger than float64 rounding."""

    settings: DSnoTSettings
    needs = StatsNeeds(variance="pooled", gram="float64")
    score_dtype = np.float64

    def refine(self, problem: LayerProblem, trace: bool = False) -> Refinement:
        if problem.gram is None:
            raise UserError("dsnot exact needs the Gram matrix (LayerProblem.gram)")
        return exact_from_gram(problem.weight, problem.pruned0, problem.seq_sum, problem.seq_sq, problem.var,
                               problem.gram, self.settings, nm=problem.nm, initial_score=problem.initial_score,
                               trace=trace)
