"""The reference variant's candidate lists and proposals for all rows at once.

The same lists as per_row.py's ``growth_candidates`` / ``prune_candidates`` / ``nm_partner``,
holding only their first D = min(K, C) entries (what K cycles can read), selected with
``selection.first_k``. reference.py and exact.py both read them; tests hold them to the plain
forms (tests/test_dsnot_properties.py). Shape letters: R rows, C columns, D list entries.
"""

from __future__ import annotations

from ...backend import array_module
from ..selection import first_k
from .per_row import regrowth_metric


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
    order = first_k(-regrowth_metric(signed, var, pow_of_var), c.shape[1] if limit is None else limit, candidate)
    return order, xp.sum(candidate, axis=1)


def prune_order(c, wanda, pruned0, eps, limit: int | None = None):
    """Pruning candidates of each row, best first (reference variant).

    Candidates: weights kept by the initial mask whose contribution has the sign opposite to
    ε[r] (c < 0 when ε > 0, c > 0 when ε < 0), by Wanda score, smallest first, ties to the
    lower column. -> (order [R, min(limit, C)] int64, count [R] int64).
    """
    xp = array_module(c)
    candidate = ~pruned0 & (c * xp.sign(eps)[:, None] < 0)                # [R, C]
    return first_k(wanda, c.shape[1] if limit is None else limit, candidate), xp.sum(candidate, axis=1)


def next_candidate(order, count, n_done):
    """Entry ``n_done[r]`` of each row's candidate list, and whether the list still has one.

    ``n_done[r]`` swaps were accepted so far, so the next candidate sits at that position.
    [R, D], [R], [R] -> (column [R] int64, meaningless where not available; available [R] bool).
    """
    xp = array_module(order)
    available = n_done < count
    if order.shape[1] == 0:
        return xp.zeros(order.shape[0], dtype=xp.int64), available
    at = xp.minimum(n_done, order.shape[1] - 1)[:, None]                  # [R, 1]
    return xp.take_along_axis(order, at, axis=1)[:, 0], available


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
