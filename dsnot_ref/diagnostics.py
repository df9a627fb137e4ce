"""Reconstruction-error diagnostics: an observer of the pipeline, off its main path.

For every pruned linear sublayer, how far the initial mask and the final weight move the
sublayer's output on the calibration tokens, relative to the dense output:

    recon = ‖(W − Ŵ) X‖² / ‖W X‖² = Σ_r d_rᵀ G d_r / Σ_r w_rᵀ G w_r,   d = W − Ŵ,  G = Σ_t x_t x_tᵀ

``recon_before`` for the one-shot pruner's mask, ``recon_after`` for the weight the sublayer
ends with (the refined mask; SparseGPT's updated weight). The pipeline is watched through its
two hooks: the statistics pass's capture (``reduce(name, x_in, chunk)`` on the chunk's thread,
``merge(name, part)`` in chunk order, as the statistics' own accumulators) and
``after_pruning(name, weight, result, stats)`` once a sublayer is pruned. Nothing here changes
what the statistics hold or what is pruned; with the observer off (the default:
``PipelineSettings.recon_error``) none of it runs.

Token sample (``tokens`` = T'): G is estimated from T' = min(S·L, tokens) calibration tokens.
From each chunk's T tokens round(f·T) are drawn, f = T' / (S·L), by a generator seeded with the
chunk's number, with replacement and with probability q_t ∝ ‖x_t‖², each scaled by
1/√(m·q_t), so that the kept rows F [T', C] satisfy E[FᵀF] = G (norm sampling, the approximate
matrix product of Drineas, Kannan and Mahoney): the few heavy tokens that dominate G are the
likely draws. A quadratic form is then ‖F dᵀ‖², T'·C work per row instead of C². When every
token is kept and C < T' a C×C Gram is cheaper and is accumulated instead. When the method
itself gathered G (SparseGPT, the exact DSnoT variant, SparseSwaps) the observer reads that G
and keeps nothing of its own. Sampling error on the demo model: benchmarks/recon_sample.py
(docs/speed.md).

Letters: B sequences in a chunk, L tokens per sequence, T = B·L, C input columns, R output rows.
"""

from __future__ import annotations

import time

import numpy as np

from .backend import array_module, to_device, to_numpy
from .methods.gram import gram_from_hessian, gram_products


class ErrorSample:
    """G = Σ x xᵀ of one sublayer input, or a factor F [T', C] with E[FᵀF] = G, from chunks."""

    def __init__(self, n_cols: int, kept: int, n_tokens: int, seed: int = 0):
        if not 0 < kept <= n_tokens:
            raise ValueError(f"kept tokens must be in [1, {n_tokens}], got {kept!r}")
        self.fraction = kept / n_tokens
        # every token and more tokens than columns: G [C, C] is smaller than F [T', C]
        self.as_gram = kept == n_tokens and kept > n_cols
        self.rows = []                                   # [T'_b, C] weighted rows of each chunk
        self.gram = None                                 # [C, C] float64 Σ XᵀX
        self.seed = seed

    def update(self, x, chunk: int) -> None:
        """Add chunk number ``chunk``, x [B, L, C] (``reduce`` then ``add``, on one thread)."""
        self.add(self.reduce(x, chunk))

    def reduce(self, x, chunk: int):
        """What chunk number ``chunk``, x [B, L, C], adds: its sampled rows [T'_b, C], or its
        XᵀX [C, C] in float64 (a pure function of x and the chunk's number, so chunks may be
        reduced on several threads; each chunk draws from its own seeded generator)."""
        flat = x.reshape(-1, x.shape[-1])                                        # [B, L, C] -> [T, C]
        if not self.as_gram:
            return sample_rows(flat, self.fraction, np.random.default_rng([self.seed, chunk]))
        xp = array_module(flat)
        return (flat.T @ flat).astype(xp.float64)        # [C, T] @ [T, C] in the input's dtype

    def add(self, part) -> None:
        """Merge one chunk's ``reduce`` (chunks in calibration order)."""
        if not self.as_gram:
            self.rows.append(part)
            return
        self.gram = part if self.gram is None else self.gram + part                # summed in float64

    def factor(self):
        """F [T', C], the kept rows (None when a Gram matrix is kept instead)."""
        if self.as_gram:
            return None
        if len(self.rows) > 1:                           # joined once, on the first form
            self.rows = [array_module(self.rows[0]).concatenate(self.rows, axis=0)]
        return self.rows[0]

    def form(self, d) -> float:
        """Σ_r d_rᵀ G d_r for d [R, C] (G's units: Σ over the kept tokens)."""
        if self.as_gram:
            return gram_form(self.gram)(d)
        xp = array_module(d)
        f = to_device(self.factor(), xp)                                         # [T', C]
        y = f @ d.astype(f.dtype).T                                              # [T', C] @ [C, R] -> [T', R]
        # each row's T' squares summed in F's dtype (rounding ~T'·2⁻²⁴ relative against a sampling
        # error of ~1e-2), the R row sums in float64
        return float(xp.einsum("tr,tr->r", y, y).sum(dtype=xp.float64))


def sample_rows(flat, fraction: float, rng):
    """Rows R with E[RᵀR] = XᵀX of one chunk (all of them when f·T ≥ T).   [T, C] -> [T', C]

    m = round(f·T) tokens drawn with replacement, token t with probability q_t = ‖x_t‖² / Σ‖x‖²,
    each scaled by 1/√(m·q_t).
    """
    n_tokens = flat.shape[0]
    m = max(1, round(fraction * n_tokens))
    if m >= n_tokens:
        return flat
    xp = array_module(flat)
    # [T] ‖x_t‖²: a sampling weight, summed in the input's dtype unless that overflows
    sq_norms = to_numpy(xp.einsum("tc,tc->t", flat, flat)).astype(np.float64)
    if not np.isfinite(sq_norms).all():
        sq_norms = to_numpy(xp.einsum("tc,tc->t", flat, flat, dtype=xp.float64))  # squares in float64 too
    total = sq_norms.sum()
    if total == 0:
        return flat[:0]
    q = sq_norms / total                                                         # [T]
    rows = np.sort(rng.choice(n_tokens, size=m, replace=True, p=q))             # [m] token order
    scale = (1.0 / np.sqrt(m * q[rows])).astype(flat.dtype)                      # [m]
    return flat[to_device(rows, xp)] * to_device(scale, xp)[:, None]            # [m, C]


class ReconObserver:
    """Watches one decoder layer: samples each distinct sublayer input during the statistics
    pass and, after pruning, reports each sublayer's relative errors.

    leaders: sublayer -> the sublayer whose input it shares (pipeline.input_leaders);
    n_tokens: S·L; tokens: T' (None: every token); method_gram: the method gathers G itself;
    mask_error: a weight update follows the mask, so also report the final mask's own error.
    """

    def __init__(self, leaders: dict, n_cols: dict, n_tokens: int, tokens: int | None, method_gram: bool,
                 mask_error: bool = False, seed: int = 0):
        kept = n_tokens if tokens is None else min(n_tokens, tokens)
        self.leaders = leaders
        self.mask_error = mask_error
        self.samples = {} if method_gram else {
            name: ErrorSample(n_cols[name], kept, n_tokens, seed) for name, leader in leaders.items() if leader == name}
        self.seconds = 0.0

    def reduce(self, name: str, x_in, chunk: int):
        """The statistics pass's capture, on the chunk's thread: x_in [B, L, C] of sublayer
        ``name`` in chunk number ``chunk`` -> its sample's part (None: nothing kept for it)."""
        sample = self.samples.get(name)
        return None if sample is None else sample.reduce(x_in, chunk)

    def merge(self, name: str, part) -> None:
        """Add one chunk's part of sublayer ``name``'s sample (chunks in calibration order)."""
        self.samples[name].add(part)

    def after_pruning(self, name: str, weight, result, stats) -> dict:
        """{recon_before, recon_after} of one pruned sublayer: ``weight`` [R, C] dense,
        ``result`` its methods.PruneResult, ``stats`` its LinearStats (read only: its G when
        the method gathered one)."""
        start = time.perf_counter()
        if stats.hessian is not None:
            form = gram_form(gram_from_hessian(stats.hessian, stats.n_seq))
        else:
            form = self.samples[self.leaders[name]].form
        errors = relative_errors(weight, result.initial, result.weight, form,
                                 final_mask=result.pruned if self.mask_error else None)
        self.seconds += time.perf_counter() - start
        return errors


def gram_form(gram):
    """d [R, C] -> Σ_r d_rᵀ G d_r, in float64, for a Gram matrix G [C, C]."""
    def form(d) -> float:
        xp = array_module(d)
        return float(xp.sum(gram_products(d.astype(xp.float64), to_device(gram, xp))[1]))
    return form


def relative_errors(weight, initial, final_weight, form, final_mask=None) -> dict:
    """Relative calibration errors of the initial mask and of the final weight.

    weight [R, C] dense, initial [R, C] bool (the one-shot pruner's mask), final_weight [R, C];
    form(d) = Σ_r d_rᵀ G d_r. recon_before = form(W where initially pruned) / form(W),
    recon_after = form(W − Ŵ) / form(W); with ``final_mask`` (a weight update changed the kept
    weights) also recon_mask, the final mask's own error before the update. All 0 for a layer
    with no output (form(W) = 0).
    """
    xp = array_module(weight)
    w = weight.astype(xp.float64)
    zero = xp.zeros((), dtype=xp.float64)
    dense = form(w)                                                               # ‖W X‖²
    out = {"recon_before": xp.where(initial, w, zero), "recon_after": w - final_weight.astype(xp.float64)}
    if final_mask is not None:
        out["recon_mask"] = xp.where(final_mask, w, zero)                         # d = W where pruned
    return {key: form(d) / dense if dense > 0 else 0.0 for key, d in out.items()}
