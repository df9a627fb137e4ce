"""The official variant's input statistics: the released wrapper's float32 running averages.

The released code (lib/layerwrapper.py of zyxxmu/DSnoT, ``WrappedGPT.add_batch``) is called once
per calibration sequence x [L, C] and keeps three float32 vectors, updated in this order
(n sequences and n·L tokens seen before this one):

    var            <- var_s                                         on the first sequence
    var            <- (var · n·L + var_s · L) / (n·L + L)           afterwards
    scaler_row     <- scaler_row · (n / (n+1)) + ‖x_j‖² / (n+1)     (‖x_j‖ = torch.norm, then **2)
    sum_metric_row <- sum_metric_row · (n / (n+1)) + Σ_t x_tj / (n+1)

with var_s the sequence's biased variance. ``ReleasedAverages`` makes the same float32
operations in the same order, and forms the per-sequence reductions as torch does on CPU:
Σ_t x through ``torch_column_sum``, ‖x_j‖² as the square of the float32 square root of a
token-by-token float32 sum, var_s rounded once from float64 (torch accumulates it in float64).
Given the same sequence inputs every statistic is the released code's bit for bit (measured on
the demo model's 210 sublayers, tools/compare_released.py). dsnot_ref's float64 statistics
(stats.py) differ from these by up to ~1e-6 relative in ‖x‖² and more in a Σx near zero: enough
to order a Wanda near-tie the other way.

Letters: B sequences in one chunk, L tokens per sequence, C input columns.
"""

from __future__ import annotations

from ..backend import array_module
from .torch_sum import sequential_sum, torch_column_sum


class ReleasedAverages:
    """Accumulates the released float32 ``sum_metric_row``, ``scaler_row`` and ``var`` of one
    linear sublayer from chunks of whole sequences, one sequence after the other."""

    def __init__(self):
        self.n_seq = 0
        self.sum_metric_row = None  # [C] float32  (1/S) Σ_s Σ_t x   (seq_sum)
        self.scaler_row = None  # [C] float32  (1/S) Σ_s ‖x_s‖²  (seq_sq)
        self.var = None  # [C] float32  token-weighted mean of each sequence's biased variance

    def update(self, x, seq_var=None) -> None:
        """Add B whole sequences, ``x [B, L, C]``, in order. ``seq_var`` [B, C]: each sequence's
        biased variance in float64 when the caller has it already (stats.py does), else computed."""
        self.add(self.reduce(x, seq_var))

    @staticmethod
    def reduce(x, seq_var=None) -> tuple:
        """The per-sequence reductions of one chunk, the part of ``update`` that reads x:
        (Σ_t x [B, C], ‖x_j‖ [B, C], var_s [B, C] float32, L)."""
        xp = array_module(x)
        x32 = x.astype(xp.float32, copy=False)                             # [B, L, C]
        seq_sum = torch_column_sum(x32)                                    # [B, L, C] -> [B, C]
        norm = xp.sqrt(sequential_sum(x32 * x32))                          # [B, C]  torch.norm(p=2)
        if seq_var is None:
            seq_var = x32.astype(xp.float64).var(axis=1)                   # [B, C]  unbiased=False
        return seq_sum, norm, seq_var.astype(xp.float32), x.shape[1]

    def add(self, reductions: tuple) -> None:
        """One chunk's reductions (``reduce``), its sequences one after the other."""
        seq_sum, norm, seq_var, seq_len = reductions
        xp = array_module(seq_sum)
        for s in range(seq_sum.shape[0]):
            self._add_sequence(xp, seq_sum[s], norm[s], seq_var[s], seq_len)

    def _add_sequence(self, xp, seq_sum, norm, seq_var, seq_len: int) -> None:
        """One call of the released ``add_batch``: the formulas of the module docstring. [C] each."""
        f32 = xp.float32
        n = self.n_seq
        if n == 0:
            self.var = seq_var
            self.scaler_row = xp.zeros_like(seq_sum)
            self.sum_metric_row = xp.zeros_like(seq_sum)
        else:
            n_tok = n * seq_len
            self.var = (self.var * f32(n_tok) + seq_var * f32(seq_len)) / f32(n_tok + seq_len)
        shrink = f32(n / (n + 1))                                          # a Python float, rounded by torch
        self.scaler_row = self.scaler_row * shrink + norm * norm / f32(n + 1)
        self.sum_metric_row = self.sum_metric_row * shrink + seq_sum / f32(n + 1)
        self.n_seq = n + 1

    def moments(self) -> dict:
        """The averages under the names of ``stats.LinearStats``: seq_sum, seq_sq, var_within [C]."""
        return {"seq_sum": self.sum_metric_row, "seq_sq": self.scaler_row, "var_within": self.var}
