"""Streaming input statistics of one linear sublayer (docs/dsnot.md §1), in float64.

The pipeline feeds the inputs ``x [B, L, C]`` of a linear sublayer chunk by chunk (B whole
sequences at a time) and asks for the statistics of all S sequences at the end. Every statistic
here is exact whatever the chunking: the same numbers (up to float64 rounding of the sums) as
one pass over the concatenated ``[S, L, C]`` array.

Letters: S sequences, B sequences in one chunk, L tokens per sequence, T = B·L tokens,
C input columns of the linear layer.

The two variances (the growth criterion of DSnoT, §4):

- ``var_pooled``: the biased variance of column j over all S·L tokens. Each sequence's M2 is
  computed about its own mean (the same per-sequence moments give Σx, Σx² and ``var_within``,
  so one chunk costs two passes over its data); the sequences of a chunk, and then the chunks,
  are merged with Chan, Golub and LeVeque's parallel update of (count, mean, M2). We never
  form E[x²] − E[x]²: for a column whose mean is large against its spread the two terms agree
  in most of their digits and the difference is rounding noise.
- ``var_within``: the released code's statistic (lib/layerwrapper.py of zyxxmu/DSnoT,
  ``WrappedGPT.add_batch``). It is called once per calibration sequence (``inps[j].unsqueeze(0)``),
  takes the biased variance of that call's L tokens and keeps a token-weighted running average,
  ``var = (var·n + var_inp·L) / (n + L)``. All sequences have L tokens, so the weights are equal
  and the result is the plain mean over sequences of each sequence's biased variance, which is
  what we compute, per sequence, whatever our chunk size B. Differences from the released code:
  it computes in float32 and through a running average (rounding differs by ~1e-7 relative), and
  its statistic would become a per-batch variance if it were ever called with more than one
  sequence at a time; ours is always per sequence.

The official DSnoT variant does not take these float64 values: its refiner names another
accumulator of the first moments (``moments``, a class: the released code's own float32 running
averages, dsnot_ref/released/averages.py), whose ``seq_sum``, ``seq_sq`` and ``var_within``
replace ours, because a Wanda near-tie at the pruning threshold can be ordered by the last bit
of ``seq_sq``. This module does not import that code; the refiner hands it over.

The Hessian ``(2/S) Σ_s X_sᵀ X_s`` is summed in float64 across chunks. Each chunk's product
``X_bᵀ X_b`` (one BLAS call over its T tokens) is formed in float64 by default, which SparseGPT
and the exact DSnoT variant use. With ``hessian_products="input"`` it is formed in the input's
dtype (float32 in the pipeline: a BLAS call about twice as fast and no float64 copy of the
chunk), then added to the float64 sum; the pipeline does this when the refiner's
``StatsNeeds.gram`` asks for it (SparseSwaps by default). Its relative rounding error is about
float32's epsilon times √T per entry at worst (≈ 3e-6 for T = 2048; measured ≤ 4e-7 of the
largest diagonal entry), far below the swaps' acceptance margin (docs/swaps.md §1). The
reconstruction-error diagnostic keeps its own token sample (dsnot_ref/diagnostics.py) and adds
nothing here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .backend import array_module

# dtype of each chunk's product X_bᵀ X_b: float64, or the input's own dtype
HESSIAN_PRODUCTS = ("float64", "input")


@dataclass(frozen=True)
class LinearStats:
    """Input statistics of one linear sublayer over S calibration sequences (float64 arrays;
    seq_sum, seq_sq and var_within are float32 when accumulated as the released code does)."""

    n_seq: int  # S
    seq_len: int  # L
    seq_sum: object  # [C]  (1/S) Σ_s Σ_t x        (= L × mean; spec §1 units)
    seq_sq: object  # [C]  (1/S) Σ_s Σ_t x²        (Wanda's squared norm)
    var_pooled: object  # [C]  biased variance over all S·L tokens (Chan merge)
    var_within: object  # [C]  mean over sequences of each sequence's biased variance
    hessian: object | None = None  # [C, C]  (2/S) Σ_s X_sᵀ X_s, only when asked for


def merge_moments(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    """Chan's parallel update: moments of two disjoint token sets -> moments of their union.

    δ = mean_b − mean_a;  mean = mean_a + δ·n_b/n;  M2 = M2_a + M2_b + δ²·n_a·n_b/n.
    """
    n = n_a + n_b
    delta = mean_b - mean_a  # [C]
    mean = mean_a + delta * (n_b / n)
    m2 = m2_a + m2_b + delta * delta * (n_a * n_b / n)
    return n, mean, m2


@dataclass(frozen=True)
class ChunkReductions:
    """What one chunk of B sequences contributes, before it is merged (``StatsAccumulator.reduce``)."""

    seq_len: int  # L
    seq_mean: object  # [B, C] float64  each sequence's mean
    seq_m2: object  # [B, C] float64  each sequence's Σ_t (x − mean)²
    xtx: object | None  # [C, C]  X_bᵀ X_b in the chunk products' dtype, when the Hessian is gathered
    moments: object | None  # the moments accumulator's own reductions


class StatsAccumulator:
    """Accumulates :class:`LinearStats` from chunks of whole sequences.

    Arrays are allocated on the first ``update`` in the array module of the data (NumPy or
    CuPy), so statistics stay on the device the layer runs on.
    """

    def __init__(self, n_cols: int, with_hessian: bool = False, hessian_products: str = "float64",
                 moments: type | None = None):
        if hessian_products not in HESSIAN_PRODUCTS:
            raise ValueError(f"hessian_products must be one of {HESSIAN_PRODUCTS}, got {hessian_products!r}")
        self.n_cols = int(n_cols)
        self.with_hessian = bool(with_hessian)
        self.hessian_products = hessian_products  # dtype of each chunk's X_bᵀ X_b (see the module doc)
        # an accumulator whose seq_sum, seq_sq, var_within replace ours (the official variant's)
        self._moments = moments() if moments is not None else None
        self.n_seq = 0
        self.seq_len: int | None = None
        self._sum = None  # [C]  Σ x
        self._sumsq = None  # [C]  Σ x²
        self._n_tokens = 0
        self._mean = None  # [C]  pooled mean so far
        self._m2 = None  # [C]  pooled Σ (x − mean)² so far
        self._var_within_sum = None  # [C]  Σ_s var_s
        self._xtx = None  # [C, C]  Σ XᵀX

    def update(self, x) -> None:
        """Add B whole sequences, ``x [B, L, C]`` (any float dtype; summed in float64)."""
        self.add(self.reduce(x))

    def reduce(self, x) -> ChunkReductions | None:
        """The per-sequence reductions of one chunk ``x [B, L, C]``, the part of ``update`` that
        reads x (a pure function of x: chunks may be reduced on several threads, then added in
        order). None for an empty chunk."""
        if x.ndim != 3 or x.shape[2] != self.n_cols:
            raise ValueError(f"expected x of shape [B, L, {self.n_cols}], got {tuple(x.shape)}")
        xp = array_module(x)
        b, seq_len, c = x.shape
        if b == 0:
            return None
        # Every statistic follows from each sequence's mean and M2 (its sum of squared
        # deviations), found in two passes: the mean first, so M2 has no cancellation.
        # Stats are float64 (design.md): the sums are taken in float64 from the input directly.
        seq_mean = x.mean(axis=1, dtype=xp.float64)  # [B, L, C] -> [B, C]
        dev = x - seq_mean[:, None, :]  # [B, L, C], float64
        seq_m2 = xp.square(dev, out=dev).sum(axis=1)  # [B, L, C] -> [B, C]
        del dev
        xtx = None
        if self.with_hessian:
            flat = x.reshape(b * seq_len, c)  # [B, L, C] -> [T, C]
            if self.hessian_products == "float64":
                flat = flat.astype(xp.float64)
            xtx = flat.T @ flat  # [C, T] @ [T, C] -> [C, C] (one symmetric BLAS product)
        moments = None
        if self._moments is not None:  # numpy's var(axis=1) of float64(x), reused
            moments = self._moments.reduce(x, seq_var=seq_m2 / seq_len)
        return ChunkReductions(seq_len=seq_len, seq_mean=seq_mean, seq_m2=seq_m2, xtx=xtx, moments=moments)

    def add(self, chunk: ChunkReductions | None) -> None:
        """Merge one chunk's reductions into the statistics (chunks in calibration order)."""
        if chunk is None:
            return
        if self.seq_len is not None and chunk.seq_len != self.seq_len:
            raise ValueError(f"sequence length changed from {self.seq_len} to {chunk.seq_len}")
        xp = array_module(chunk.seq_mean)
        if self.seq_len is None:
            self._allocate(xp, chunk.seq_len)
        seq_len, seq_mean, seq_m2 = chunk.seq_len, chunk.seq_mean, chunk.seq_m2  # [B, C] each
        b = seq_mean.shape[0]
        self._sum += seq_len * seq_mean.sum(axis=0)  # Σ_s Σ_t x = Σ_s L·mean_s
        self._sumsq += (seq_m2 + seq_len * xp.square(seq_mean)).sum(axis=0)  # Σ x² = Σ_s M2_s + L·mean_s²
        # Released code: one biased variance per sequence, over its L tokens.
        self._var_within_sum += seq_m2.sum(axis=0) / seq_len  # Σ_s M2_s / L
        # Pooled moments of this chunk (the sequences merged exactly), then merged with the past.
        mean_b = seq_mean.mean(axis=0)  # [C]
        m2_b = seq_m2.sum(axis=0) + seq_len * xp.square(seq_mean - mean_b).sum(axis=0)
        self._n_tokens, self._mean, self._m2 = merge_moments(
            self._n_tokens, self._mean, self._m2, b * seq_len, mean_b, m2_b
        )
        if chunk.xtx is not None:
            self._xtx += chunk.xtx  # summed in float64
        if chunk.moments is not None:
            self._moments.add(chunk.moments)
        self.n_seq += b

    def _allocate(self, xp, seq_len: int) -> None:
        c = self.n_cols
        self.seq_len = int(seq_len)
        self._sum = xp.zeros(c, dtype=xp.float64)
        self._sumsq = xp.zeros(c, dtype=xp.float64)
        self._mean = xp.zeros(c, dtype=xp.float64)
        self._m2 = xp.zeros(c, dtype=xp.float64)
        self._var_within_sum = xp.zeros(c, dtype=xp.float64)
        if self.with_hessian:
            self._xtx = xp.zeros((c, c), dtype=xp.float64)

    def finalize(self) -> LinearStats:
        """The statistics of every sequence seen so far."""
        if self.n_seq == 0:
            raise ValueError("no sequences were accumulated")
        s = self.n_seq
        stats = LinearStats(
            n_seq=s,
            seq_len=int(self.seq_len),
            seq_sum=self._sum / s,
            seq_sq=self._sumsq / s,
            var_pooled=self._m2 / self._n_tokens,
            var_within=self._var_within_sum / s,
            hessian=(2.0 / s) * self._xtx if self.with_hessian else None,
        )
        return stats if self._moments is None else replace(stats, **self._moments.moments())
