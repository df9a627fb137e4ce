"""SparseSwaps: 1-swaps per row that lower the row's true calibration error (docs/swaps.md).

Zimmer et al., "SparseSwaps: Tractable LLM Pruning Mask Refinement at Scale", arXiv 2512.10922.
For row r let d_r be its pruned weights (``W[r, j]`` where pruned, 0 elsewhere) and

    E_r = d_rᵀ G d_r = Σ_tokens (x · d_r)²,     G = Σ_tokens x xᵀ = hessian · S / 2   [C, C]

Rows are independent when every row keeps its number of pruned weights. With u = G d_r,
regrowing a pruned i and pruning a kept j changes E_r by

    ΔE(i, j) = a_i + b_j − 2 w_i w_j G_ij,
    a_i = w_i² G_ii − 2 w_i u_i      (regrowth term; +inf unless i is pruned)
    b_j = w_j² G_jj + 2 w_j u_j      (pruning term; +inf unless j is kept)

and an accepted swap updates u ← u − w_i G[:, i] + w_j G[:, j].

Search (unstructured). Each *round* takes the regrowth window I (the ``window`` pruned columns
with the smallest a) and the pruning window J (the ``window`` kept columns with the smallest b),
and then makes up to ``refresh`` swaps inside I × J, each the pair with the smallest exact ΔE
among the window pairs still available (a swapped column leaves its window; a and b of the
window members follow u). ``window = 0`` (or ≥ C) and ``refresh = 1`` is the exact best pair
over all pairs at every swap. N:M: every pair (pruned i, kept j) of the same group of M, exact,
one swap per round.

Ties: the smallest ΔE, then the lowest i, then the lowest j (column indices); windows are the
smallest values, ties to the lower column. Stopping: a swap is made only when
ΔE < −tol · E_r; a row whose fresh round (the first step of a round) finds no such pair stops
for good; a row that finds none later in a round waits for the next round. ``max_swaps`` bounds
the swaps per row. Each swap strictly lowers E_r, so E_r never increases, and pruned counts per
row (and per N:M group) are unchanged.

``swaps_plain`` is the plain per-row loop, the spec in code; ``sparse_swaps_from_gram`` is the
same search on all rows at once, in blocks of rows sized to memory and searched in threads
(``SwapSettings.threads``; rows are independent, so blocks and threads change no swap; tests: the
two give the same masks). Step numbers (for the swap log) count from 1: round k's step s is ``k · refresh + s + 1``
unstructured, ``k + 1`` for N:M.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import array_module, to_numpy
from ..errors import UserError
from ..threads import chunk_workers, ordered_map, usable_cores
from .contract import LayerProblem, Refinement, RefinementTrace, StatsNeeds
from .gram import gram_products, pruned_part

BLOCK_BYTES = 64 * 2**20  # target size of one [rows, C] float64 working array


@dataclass(frozen=True)
class SwapSettings:
    max_swaps: int = 100  # swaps per row at most (the iteration budget)
    tol: float = 1e-4  # a swap must lower E_r by more than tol · E_r
    window: int = 32  # candidates per side per round (unstructured); 0 = all (exact best pair)
    refresh: int = 8  # swaps per round (unstructured): windows are rebuilt after this many
    block_rows: int = 0  # rows processed at once; 0 = sized to BLOCK_BYTES
    threads: int = 0  # blocks searched at once in threads (NumPy only); 0 = the CPUs this process may use
    gram: str = "float32"  # the pipeline's XᵀX chunk products for G: float32 or float64 (docs/swaps.md §1)

    def __post_init__(self):
        if self.max_swaps < 0:
            raise UserError(f"swaps: max_swaps must be >= 0, got {self.max_swaps}")
        if not (self.tol >= 0.0 and np.isfinite(self.tol)):
            raise UserError(f"swaps: tol must be a finite number >= 0, got {self.tol}")
        if self.window < 0:
            raise UserError(f"swaps: window must be >= 0 (0 = all pairs), got {self.window}")
        if self.refresh < 1:
            raise UserError(f"swaps: refresh must be >= 1, got {self.refresh}")
        if self.block_rows < 0:
            raise UserError(f"swaps: block_rows must be >= 0, got {self.block_rows}")
        if self.threads < 0:
            raise UserError(f"swaps: threads must be >= 0 (0 = every CPU), got {self.threads}")
        if self.gram not in ("float32", "float64"):
            raise UserError(f"swaps: gram must be float32 or float64, got {self.gram!r}")


@dataclass(frozen=True)
class SwapResult:
    pruned: object  # [R, C] bool, the final mask
    swaps: object  # [R] int64, swaps made per row
    error_before: object  # [R] float64, E_r of the initial mask (units of G)
    error_after: object  # [R] float64, E_r tracked through the swaps (Σ of ΔE)
    steps: int  # the last step number at which any row swapped (0: none)
    log: np.ndarray  # [n, 4] int64 (row, regrown column, pruned column, step), by step then row
    log_delta: np.ndarray  # [n] float64, ΔE of each logged swap


# --- the quantities of docs/swaps.md -----------------------------------------------------------


def one_sided_terms(w, u, w_sq_diag, pruned):
    """(a, b): a_i = w_i² G_ii − 2 w_i u_i where pruned, b_j = w_j² G_jj + 2 w_j u_j where kept,
    +inf elsewhere. All arrays [.., C]; ``w_sq_diag`` = w² · diag(G)."""
    xp = array_module(w)
    two_wu = 2.0 * w * u
    a = xp.where(pruned, w_sq_diag - two_wu, xp.inf)
    b = xp.where(pruned, xp.inf, w_sq_diag + two_wu)
    return a, b


def pair_deltas(a_win, b_win, cross):
    """ΔE of every window pair: a [.., k], b [.., k'], cross [.., k, k'] -> [.., k, k']."""
    delta = a_win[..., :, None] + b_win[..., None, :]
    delta += cross  # (a + b) + cross, in place
    return delta


def cross_terms(w_i, w_j, g_ij):
    """−2 w_i w_j G_ij: w_i [.., k], w_j [.., k'], G_ij [.., k, k'] -> [.., k, k']."""
    return -2.0 * w_i[..., :, None] * w_j[..., None, :] * g_ij


def accepts(best, error, tol: float):
    """A swap is made when ΔE < −tol · E_r (a real decrease, larger than rounding)."""
    return best < -tol * error


def window_size(settings: SwapSettings, n_cols: int) -> int:
    return n_cols if settings.window == 0 else min(settings.window, n_cols)


def check_problem(w, pruned, gram, nm):
    """Shapes and finiteness; UserError naming the problem."""
    n_rows, n_cols = w.shape
    if tuple(pruned.shape) != (n_rows, n_cols):
        raise UserError(f"swaps: mask has shape {tuple(pruned.shape)}, weight {tuple(w.shape)}")
    if tuple(gram.shape) != (n_cols, n_cols):
        raise UserError(f"swaps: gram has shape {tuple(gram.shape)}, expected ({n_cols}, {n_cols})")
    xp = array_module(gram)
    if not bool(xp.all(xp.isfinite(gram))):
        raise UserError("swaps: gram has NaN or inf entries")
    if nm is not None and n_cols % nm[1] != 0:
        raise UserError(f"swaps: {n_cols} columns are not a multiple of M = {nm[1]}")


# --- plain per-row version: the spec in code ---------------------------------------------------


def smallest_row(values, k: int):
    """The k smallest entries of one row, ties to the lower column, returned by column:
    values [C] -> (cols [k] int64 ascending, valid [k] bool: the value is finite)."""
    order = np.lexsort((np.arange(values.shape[0]), values))[:k]  # by value, then column
    cols = np.sort(order)
    return cols, np.isfinite(values[cols])


def row_round_unstructured(w, u, pruned, gram, w_sq_diag, error, swaps_left, settings, k):
    """One round in one row (edits ``u`` and ``pruned`` in place).

    -> (swaps [(i, j, ΔE, step within round)], error after, stopped: the fresh step found nothing).
    """
    a, b = one_sided_terms(w, u, w_sq_diag, pruned)
    rows_i, ok_i = smallest_row(a, k)
    cols_j, ok_j = smallest_row(b, k)
    a_win, b_win = np.where(ok_i, a[rows_i], np.inf), np.where(ok_j, b[cols_j], np.inf)
    w_i, w_j = w[rows_i], w[cols_j]
    cross = cross_terms(w_i, w_j, gram[rows_i[:, None], cols_j[None, :]])  # [k, k]
    done = []
    for step in range(min(settings.refresh, swaps_left)):
        delta = pair_deltas(a_win, b_win, cross)  # [k, k]
        flat = int(np.argmin(delta))  # first minimum: lowest i, then lowest j
        best = delta.flat[flat]
        if not accepts(best, error, settings.tol):
            return done, error, step == 0
        p, q = divmod(flat, k)
        i, j = int(rows_i[p]), int(cols_j[q])
        shift = u_shift(gram[i], gram[j], w[i], w[j])  # [C], G symmetric: row = column
        u += shift
        pruned[i], pruned[j] = False, True
        error += best
        done.append((i, j, float(best), step))
        a_win = a_win - 2.0 * w_i * shift[rows_i]  # a and b of the window members follow u
        b_win = b_win + 2.0 * w_j * shift[cols_j]
        a_win[p], b_win[q] = np.inf, np.inf
    return done, error, False


def u_shift(g_col_i, g_col_j, w_i, w_j):
    """Change of u at some columns when i is regrown and j pruned: −w_i G[:, i] + w_j G[:, j]."""
    return w_j * g_col_j - w_i * g_col_i


def row_round_nm(w, u, pruned, gram_blocks, w_sq_diag, error, settings, m: int):
    """One N:M round in one row: the best pair (pruned i, kept j) of one group over all groups."""
    a, b = one_sided_terms(w, u, w_sq_diag, pruned)
    wg = w.reshape(-1, m)  # [C/M, M]
    delta = pair_deltas(a.reshape(-1, m), b.reshape(-1, m), cross_terms(wg, wg, gram_blocks))
    flat = int(np.argmin(delta))  # (group, i, j) order = lowest i, then lowest j
    best = delta.flat[flat]
    if not accepts(best, error, settings.tol):
        return None, error
    group, rest = divmod(flat, m * m)
    i, j = group * m + rest // m, group * m + rest % m
    return (i, j, float(best)), error + best


def diagonal_blocks(gram, m: int):
    """G's M×M diagonal blocks: [C, C] -> [C/M, M, M] (G_ij for i, j in the same group)."""
    xp = array_module(gram)
    n_groups = gram.shape[0] // m
    g4 = gram.reshape(n_groups, m, n_groups, m)
    idx = xp.arange(n_groups)
    return g4[idx, :, idx, :]


def swaps_row(w, pruned0, gram, settings: SwapSettings, nm=None):
    """The search on one row: w [C], pruned0 [C] bool, gram [C, C] float64.

    -> (pruned [C], error_before, error_after, [(i, j, ΔE, step)]).
    """
    w = np.asarray(w, dtype=np.float64)
    pruned = np.array(pruned0, dtype=np.bool_)
    d = pruned_part(w, pruned)
    u = d @ gram  # [C]
    error = error_before = float(d @ u)
    w_sq_diag = w * w * np.diagonal(gram)
    log = []
    if nm is not None:
        blocks = diagonal_blocks(gram, nm[1])
        for step in range(settings.max_swaps):
            found, error = row_round_nm(w, u, pruned, blocks, w_sq_diag, error, settings, nm[1])
            if found is None:
                break
            i, j, best = found
            u += u_shift(gram[i], gram[j], w[i], w[j])  # G symmetric: row = column
            pruned[i], pruned[j] = False, True
            log.append((i, j, best, step + 1))
        return pruned, error_before, error, log
    k = window_size(settings, w.shape[0])
    n_round = 0
    while len(log) < settings.max_swaps:
        done, error, stopped = row_round_unstructured(
            w, u, pruned, gram, w_sq_diag, error, settings.max_swaps - len(log), settings, k)
        log += [(i, j, best, n_round * settings.refresh + s + 1) for i, j, best, s in done]
        if stopped:
            break
        n_round += 1
    return pruned, error_before, error, log


def swaps_plain(w, pruned0, gram, settings: SwapSettings | None = None, nm=None) -> SwapResult:
    """``swaps_row`` on every row (NumPy): w [R, C], pruned0 [R, C], gram [C, C] -> SwapResult."""
    settings = settings or SwapSettings()
    w, gram = np.asarray(w, dtype=np.float64), np.asarray(gram, dtype=np.float64)
    pruned0 = np.asarray(pruned0, dtype=np.bool_)
    check_problem(w, pruned0, gram, nm)
    n_rows = w.shape[0]
    pruned = np.empty_like(pruned0)
    before, after = np.zeros(n_rows, dtype=np.float64), np.zeros(n_rows, dtype=np.float64)
    swaps, log = np.zeros(n_rows, dtype=np.int64), []
    for r in range(n_rows):
        pruned[r], before[r], after[r], row_log = swaps_row(w[r], pruned0[r], gram, settings, nm)
        swaps[r] = len(row_log)
        log += [(r, i, j, step, best) for i, j, best, step in row_log]
    log.sort(key=lambda entry: (entry[3], entry[0]))
    return SwapResult(pruned, swaps, before, after, max((e[3] for e in log), default=0),
                      np.array([e[:4] for e in log], dtype=np.int64).reshape(-1, 4),
                      np.array([e[4] for e in log], dtype=np.float64))


# --- vectorised: all rows of a block at once ---------------------------------------------------


def smallest_k(values, k: int):
    """Per row the k smallest entries, ties to the lower column, returned by column:
    values [n, C] -> (cols [n, k] int64 ascending, valid [n, k] bool: the value is finite)."""
    xp = array_module(values)
    n, n_cols = values.shape
    if k >= n_cols:
        cols = xp.broadcast_to(xp.arange(n_cols, dtype=xp.int64), (n, n_cols))
        return cols, xp.isfinite(values)
    kth = xp.partition(values, k - 1, axis=1)[:, k - 1 : k]  # [n, 1] the k-th smallest value
    below = values < kth
    at = values == kth
    take = below | at
    if int(xp.count_nonzero(take)) != n * k:  # some row has ties at its k-th value
        need = k - xp.sum(below, axis=1, keepdims=True)  # how many of the tied values to take
        take = below | (at & (xp.cumsum(at, axis=1) <= need))  # exactly k per row
    cols = xp.nonzero(take)[1].reshape(n, k).astype(xp.int64)  # row-major: ascending columns
    return cols, xp.isfinite(row_take(values, cols))


def row_take(values, cols):
    """values[r, cols[r, :]] for every row r, one flat gather: [n, C], [n, k] -> [n, k]."""
    xp = array_module(values)
    n, n_cols = values.shape
    offsets = xp.arange(0, n * n_cols, n_cols, dtype=xp.int64)[:, None]  # [n, 1]
    return xp.take(xp.ascontiguousarray(values).reshape(-1), cols + offsets)


def pair_entries(gram, cols_i, cols_j):
    """G_ij of every window pair: [C, C], [n, k], [n, k'] -> [n, k, k'] (one flat gather)."""
    xp = array_module(gram)
    return xp.take(gram.reshape(-1), cols_i[:, :, None] * gram.shape[1] + cols_j[:, None, :])


class Block:
    """The working arrays of the rows still searching, compacted as rows stop.

    ``index`` maps each working row to its row in the block; the full-size results live in
    ``out`` (pruned, error, swaps) and are written back by ``store``.
    """

    def __init__(self, w, pruned, gram):
        xp = array_module(w, gram)
        d = pruned_part(w, pruned)
        self.u, self.error = gram_products(d, gram)  # [n, C] @ [C, C] -> [n, C]; [n]
        self.error_before = self.error.copy()
        self.w, self.pruned = w, pruned.copy()
        self.w_sq_diag = w * w * xp.diagonal(gram)[None, :]
        self.swaps = xp.zeros(w.shape[0], dtype=xp.int64)
        self.index = xp.arange(w.shape[0])
        self.out = {"pruned": self.pruned, "error": self.error, "swaps": self.swaps}

    def keep(self, rows):
        """Write back every working row, then keep only ``rows`` (indices into the working rows)."""
        self.store()
        for name in ("u", "error", "w", "pruned", "w_sq_diag", "swaps", "index"):
            setattr(self, name, getattr(self, name)[rows])

    def store(self):
        self.out["pruned"][self.index] = self.pruned
        self.out["error"][self.index] = self.error
        self.out["swaps"][self.index] = self.swaps

    def swap(self, rows, i, j, best, gram):
        """Working rows ``rows`` [A] regrow column i [A] and prune column j [A]:
        u ← u − w_i G[i] + w_j G[j]. -> the shift of u, [A, C]."""
        w_i, w_j = self.w[rows, i][:, None], self.w[rows, j][:, None]
        shift = gram[j]  # [A, C]: u_shift(G[i], G[j], w_i, w_j) = w_j G[j] − w_i G[i], in place
        shift *= w_j
        g_i = gram[i]
        g_i *= w_i
        shift -= g_i
        if rows.shape[0] == self.u.shape[0]:  # every working row: add in place
            self.u += shift
        else:
            self.u[rows] += shift
        self.pruned[rows, i] = False
        self.pruned[rows, j] = True
        self.error[rows] += best
        self.swaps[rows] += 1
        return shift


def compact_if_sparse(block: Block, live, fraction: float = 0.75):
    """Drop stopped rows from the working arrays when fewer than ``fraction`` are live."""
    xp = array_module(live)
    n_live = int(xp.count_nonzero(live))
    if n_live < fraction * live.shape[0]:
        rows = xp.nonzero(live)[0]
        block.keep(rows)
        return live[rows]
    return live


class Windows:
    """One round's candidates, for the working rows still open in the round (compacted as rows
    close): ``rows`` [m] (indices into the working rows), the regrowth window ``cols_i`` and
    the pruning window ``cols_j`` [m, k] (ascending columns), their one-sided terms ``a``, ``b``
    and weights ``w_i``, ``w_j`` [m, k], and the cross terms −2 w_i w_j G_ij [m, k, k]."""

    NAMES = ("rows", "cols_i", "cols_j", "a", "b", "w_i", "w_j", "cross")

    def __init__(self, block: Block, gram, k: int):
        xp = array_module(block.w)
        a, b = one_sided_terms(block.w, block.u, block.w_sq_diag, block.pruned)  # [n, C]
        self.cols_i, ok_i = smallest_k(a, k)  # [n, k]
        self.cols_j, ok_j = smallest_k(b, k)
        self.a = xp.where(ok_i, row_take(a, self.cols_i), xp.inf)
        self.b = xp.where(ok_j, row_take(b, self.cols_j), xp.inf)
        self.w_i = row_take(block.w, self.cols_i)
        self.w_j = row_take(block.w, self.cols_j)
        self.cross = cross_terms(self.w_i, self.w_j, pair_entries(gram, self.cols_i, self.cols_j))
        self.rows = xp.arange(block.w.shape[0])

    def keep(self, open_):
        """Keep the rows where ``open_`` [m] is True."""
        if not bool(open_.all()):
            for name in self.NAMES:
                setattr(self, name, getattr(self, name)[open_])

    def follow(self, shift, p, q):
        """After each row's swap (window positions p, q [m]; u moved by ``shift`` [m, C]): a and b
        of the window members follow u, and the two swapped columns leave their windows."""
        xp = array_module(shift)
        self.a = self.a - 2.0 * self.w_i * row_take(shift, self.cols_i)
        self.b = self.b + 2.0 * self.w_j * row_take(shift, self.cols_j)
        rows = xp.arange(p.shape[0])
        self.a[rows, p] = xp.inf
        self.b[rows, q] = xp.inf


def round_unstructured(block: Block, gram, settings: SwapSettings, k: int, n_round: int, log: list):
    """One round on every working row (the vectorised ``row_round_unstructured``) -> stopped [n]."""
    xp = array_module(block.w)
    win = Windows(block, gram, k)
    left = settings.max_swaps - block.swaps  # [n] >= 1 for every working row
    stopped = xp.zeros(block.w.shape[0], dtype=xp.bool_)
    for step in range(settings.refresh):
        win.keep(step < left[win.rows])
        m = win.rows.shape[0]
        if m == 0:
            break
        delta = pair_deltas(win.a, win.b, win.cross).reshape(m, k * k)  # [m, k, k] -> [m, k²]
        flat = xp.argmin(delta, axis=1)  # first minimum: lowest i, then lowest j
        best = row_take(delta, flat[:, None])[:, 0]
        ok = accepts(best, block.error[win.rows], settings.tol)
        if step == 0:
            stopped = ~ok  # every working row is open at step 0
        win.keep(ok)
        flat, best = flat[ok], best[ok]
        p, q = flat // k, flat % k
        i = row_take(win.cols_i, p[:, None])[:, 0]
        j = row_take(win.cols_j, q[:, None])[:, 0]
        shift = block.swap(win.rows, i, j, best, gram)
        log.append((block.index[win.rows], i, j, n_round * settings.refresh + step + 1, best))
        win.follow(shift, p, q)
    return stopped


def step_nm(block: Block, cross, settings: SwapSettings, m: int, gram, step: int, log: list):
    """One N:M step on every working row (the vectorised ``row_round_nm``) -> swapped [n]."""
    xp = array_module(block.w)
    n, n_cols = block.w.shape
    a, b = one_sided_terms(block.w, block.u, block.w_sq_diag, block.pruned)  # [n, C]
    shape = (n, n_cols // m, m)
    delta = pair_deltas(a.reshape(shape), b.reshape(shape), cross).reshape(n, -1)  # [n, C/M · M · M]
    flat = xp.argmin(delta, axis=1)  # (group, i, j) order: lowest i, then lowest j
    best = delta[xp.arange(n), flat]
    ok = accepts(best, block.error, settings.tol)
    sel = xp.nonzero(ok)[0]
    group, rest = flat[sel] // (m * m), flat[sel] % (m * m)
    i, j = group * m + rest // m, group * m + rest % m
    block.swap(sel, i, j, best[sel], gram)
    log.append((block.index[sel], i, j, step, best[sel]))
    return ok


def search_block(w, pruned, gram, settings: SwapSettings, nm, log: list):
    """The search on one block of rows: -> (pruned, error_before, error_after, swaps)."""
    xp = array_module(w)
    block = Block(w, pruned, gram)
    live = block.swaps < settings.max_swaps
    if nm is None:
        k = window_size(settings, w.shape[1])
        n_round = 0
        while bool(xp.any(live)):
            live = compact_if_sparse(block, live, fraction=1.0)  # a round works on live rows only
            live &= ~round_unstructured(block, gram, settings, k, n_round, log)
            live &= block.swaps < settings.max_swaps
            n_round += 1
    else:
        m = nm[1]
        wg = w.reshape(w.shape[0], -1, m)
        cross = cross_terms(wg, wg, diagonal_blocks(gram, m)[None])  # [n, C/M, M, M]
        step = 0
        while bool(xp.any(live)):
            kept = compact_if_sparse(block, live)
            if kept.shape[0] != live.shape[0]:
                cross = cross[xp.nonzero(live)[0]]
            live = kept
            step += 1
            live &= step_nm(block, cross, settings, m, gram, step, log)
            live &= block.swaps < settings.max_swaps
    block.store()
    return block.out["pruned"], block.error_before, block.out["error"], block.out["swaps"]


def rows_per_block(settings: SwapSettings, n_cols: int, k: int, nm) -> int:
    """Block height: one working array of about BLOCK_BYTES (float64)."""
    if settings.block_rows:
        return settings.block_rows
    per_row = n_cols * (nm[1] if nm is not None else 1) + k * k
    return max(1, BLOCK_BYTES // (8 * per_row))


def sparse_swaps_from_gram(w, pruned0, gram, settings: SwapSettings | None = None, nm=None) -> SwapResult:
    """The search on all rows, in blocks of rows: w [R, C], pruned0 [R, C] bool, gram [C, C]
    (Σ x xᵀ; any positive multiple gives the same masks, the errors scale with it)."""
    settings = settings or SwapSettings()
    xp = array_module(w, gram)
    w = xp.asarray(w, dtype=xp.float64)
    gram = xp.ascontiguousarray(gram, dtype=xp.float64)  # pair_entries gathers from its flat view
    pruned0 = xp.asarray(pruned0, dtype=xp.bool_)
    check_problem(w, pruned0, gram, nm)
    n_rows, n_cols = w.shape
    threads = (settings.threads or usable_cores()) if xp is np else 1
    height = rows_per_block(settings, n_cols, window_size(settings, n_cols), nm)
    if not settings.block_rows:
        height = min(height, -(-n_rows // threads))  # at least one block per thread
    starts = range(0, n_rows, height)

    def search(start):  # rows are independent: a block's result does not depend on the others
        block_log = []
        part = search_block(w[start : start + height], pruned0[start : start + height], gram, settings, nm, block_log)
        return part, [(rows + start, i, j, step, best) for rows, i, j, step, best in block_log]

    with chunk_workers(min(threads, len(starts))) as workers:  # NumPy releases the GIL in its array work
        results = list(ordered_map(search, starts, workers))
    parts = [part for part, _ in results]
    pruned, before, after, swaps = (xp.concatenate([p[n] for p in parts]) for n in range(4))
    table, deltas = log_table([entry for _, block_log in results for entry in block_log])
    return SwapResult(pruned, swaps, before, after, int(table[:, 3].max()) if len(table) else 0, table, deltas)


def log_table(log):
    """[(rows, i, j, step, ΔE)] -> ([n, 4] int64 sorted by step then row, [n] float64)."""
    if not log:
        return np.zeros((0, 4), dtype=np.int64), np.zeros(0, dtype=np.float64)
    cols = [np.concatenate([to_numpy(entry[c]).astype(np.int64) for entry in log]) for c in range(3)]
    steps = np.concatenate([np.full(to_numpy(entry[0]).shape, entry[3], dtype=np.int64) for entry in log])
    deltas = np.concatenate([to_numpy(entry[4]).astype(np.float64) for entry in log])
    table = np.stack([cols[0], cols[1], cols[2], steps], axis=1)
    order = np.lexsort((table[:, 0], table[:, 3]))
    return table[order], deltas[order]


def error_trace(error_before, log, deltas, steps: int):
    """E_r after each step, added up swap by swap as the search does: [R], [n, 4], [n] -> [K+1, R]."""
    trace = np.empty((steps + 1, error_before.shape[0]), dtype=np.float64)
    trace[0] = error_before
    for step in range(1, steps + 1):
        trace[step] = trace[step - 1]
        at = log[:, 3] == step  # at most one swap per row
        trace[step, log[at, 0]] += deltas[at]
    return trace


def as_refinement(result: SwapResult, trace: bool) -> Refinement:
    """A search's result in the refiners' common record (no ε: SparseSwaps does not track it;
    a row is "active" at a step when it swapped there)."""
    before = to_numpy(result.error_before).astype(np.float64)
    steps_trace = None
    if trace:
        active = np.zeros((result.steps + 1, before.shape[0]), dtype=np.bool_)  # [K+1, R]
        active[0] = True
        active[result.log[:, 3], result.log[:, 0]] = True
        steps_trace = RefinementTrace(eps=None, active=active, swaps=result.log,
                                      error=error_trace(before, result.log, result.log_delta, result.steps))
    return Refinement(pruned=result.pruned, row_swaps=to_numpy(result.swaps).astype(np.int64), cycles=result.steps,
                      error_before=before, error_after=to_numpy(result.error_after).astype(np.float64),
                      trace=steps_trace)


@dataclass(frozen=True)
class Swaps:
    """SparseSwaps as a refiner (methods/contract.py): it reads only G = Σ x xᵀ, its chunk
    products in the input's float32 unless ``settings.gram`` asks for float64 (docs/swaps.md §1)."""

    settings: SwapSettings

    @property
    def needs(self) -> StatsNeeds:
        return StatsNeeds(gram="float64" if self.settings.gram == "float64" else "input")

    score_dtype = np.float64

    def refine(self, problem: LayerProblem, trace: bool = False) -> Refinement:
        if problem.gram is None:
            raise UserError("swaps need the Gram matrix (LayerProblem.gram)")
        result = sparse_swaps_from_gram(problem.weight, problem.pruned0, problem.gram, self.settings, problem.nm)
        return as_refinement(result, trace)
