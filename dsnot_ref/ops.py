"""The math of one decoder block, as pure functions on arrays (NumPy or CuPy, taken from inputs).

Shapes: B sequences, L tokens, D hidden, H heads, K KV heads (H = G·K), Dh head dim, F MLP width,
C input columns and R output rows of a linear layer. Every function computes in the dtype of
its input activations (float32 by default, float64 for oracle use).
"""

from __future__ import annotations

import math

import numpy as np

from .backend import array_module, to_device


def linear(x, w, b=None):
    """y = x Wᵀ + b.   x [..., C], w [R, C], b [R] -> [..., R]"""
    xp = array_module(x, w)
    lead = x.shape[:-1]
    y = xp.matmul(x.reshape(-1, x.shape[-1]), w.T)  # one GEMM: [T, C] @ [C, R] -> [T, R]
    if b is not None:
        y += b
    return y.reshape(*lead, w.shape[0])


def rms_norm(x, weight, eps: float):
    """x / sqrt(mean(x²) + eps) · weight   (LLaMA's RMSNorm).   x [..., D] -> [..., D]

    As transformers' LlamaRMSNorm: x · (1 / sqrt(mean + eps)), then · weight. mean(x²) is NumPy's
    pairwise sum, which differs from torch's CPU sum in the last bit of some rows.
    """
    xp = array_module(x)
    mean_sq = xp.mean(x * x, axis=-1, keepdims=True)                   # [..., D] -> [..., 1]
    return x * (1.0 / xp.sqrt(mean_sq + eps)).astype(x.dtype) * weight


def layer_norm(x, weight, bias, eps: float):
    """(x − mean) / sqrt(var + eps) · weight + bias   (biased variance, as torch).   [..., D]"""
    xp = array_module(x)
    mean = xp.mean(x, axis=-1, keepdims=True)        # [..., 1]
    centred = x - mean
    var = xp.mean(centred * centred, axis=-1, keepdims=True)
    return centred * (1.0 / xp.sqrt(var + eps)).astype(x.dtype) * weight + bias


def rope_inv_freq(head_dim: int, theta: float, scaling: dict | None, dtype=np.float64) -> np.ndarray:
    """Inverse frequencies θ^(−2i/Dh), i < Dh/2, with Llama 3's rescaling when asked.  -> [Dh/2] dtype

    In float32 they are formed as transformers forms them: the exponent 2i/Dh and the power
    θ^(2i/Dh) rounded to float32, then the reciprocal in float32 (the correctly rounded
    float32 of θ^(−2i/Dh) differs from that in the last bit of about a third of the entries,
    and the angle position·inv_freq carries the difference ×position). float64 is exact.
    Llama 3 (rope_type "llama3"): wavelengths longer than original_max/low_freq_factor are
    divided by `factor`, shorter than original_max/high_freq_factor kept, and in between
    interpolated linearly in original_max/wavelength (in ``dtype``, as transformers does).
    """
    work = np.dtype(dtype)
    exponent = np.arange(0, head_dim, 2, dtype=work) / work.type(head_dim)      # [Dh/2]
    inv_freq = work.type(1.0) / (theta ** exponent.astype(np.float64)).astype(work)
    if scaling is None:
        return inv_freq
    factor = scaling["factor"]
    low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_len = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return np.where(medium, smoothed, scaled)


def rope_tables(config, seq_len: int, dtype=np.float32, xp=np):
    """cos and sin of position·inv_freq, halves repeated (HF rotate-half layout).  -> 2 × [L, Dh]

    In float32 the angles are formed as transformers forms them (float32 frequencies times
    float32 positions), so long sequences agree with it to rounding; float64 is exact.
    """
    work = np.dtype(dtype)
    inv_freq = rope_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling_dict, work)
    positions = np.arange(seq_len, dtype=work)                        # [L]
    angles = np.outer(positions, inv_freq).astype(np.float64)         # [L, Dh/2]
    angles = np.concatenate([angles, angles], axis=-1)                  # [L, Dh]
    cos, sin = np.cos(angles).astype(work), np.sin(angles).astype(work)
    return xp.asarray(cos), xp.asarray(sin)


def rotate_half(x):
    """[x1, x2] -> [−x2, x1] on the last axis (HF's RoPE convention, not interleaved pairs)."""
    xp = array_module(x)
    half = x.shape[-1] // 2
    return xp.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def apply_rope(x, cos, sin):
    """Rotate each head's vector by its position's angles.   x [B, *, L, Dh], cos/sin [L, Dh]"""
    return x * cos + rotate_half(x) * sin


QUERY_BLOCK = 128  # queries per attention block: bounds score memory, skips masked key blocks


def block_mask(q_start: int, n_q: int, k_start: int, n_k: int, window: int | None, dtype) -> np.ndarray:
    """Additive mask of queries t = q_start.. against keys s = k_start..: 0 where s ≤ t and
    t − s < window, else −inf.   -> [n_q, n_k] (NumPy)"""
    t = np.arange(q_start, q_start + n_q)[:, None]
    s = np.arange(k_start, k_start + n_k)[None, :]
    allowed = s <= t
    if window is not None:
        allowed &= (t - s) < window
    return np.where(allowed, 0.0, -np.inf).astype(dtype)


def masked_span(mask) -> tuple[int, int]:
    """The columns [lo, hi) of an additive mask [n_q, n_k] that hold a −inf (lo = hi: none)."""
    cols = np.flatnonzero(np.isneginf(mask).any(axis=0))
    return (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 0)


def causal_attention(q, k, v, window: int | None = None):
    """softmax(q kᵀ / sqrt(Dh) + mask) v with grouped KV heads (head h uses KV head h // G).

    q [B, H, L, Dh], k and v [B, K, L, Dh] -> [B, H, L, Dh]. Queries go in blocks of
    QUERY_BLOCK; each block only meets the keys it may see (up to its last query, and within
    the sliding window), which skips about half of the work of a full L×L score matrix.
    The scale 1/sqrt(Dh) is applied to q (L·Dh products, not L²; exact when Dh is a power of 4).
    """
    xp = array_module(q, k, v)
    b, n_heads, seq_len, head_dim = q.shape
    n_kv = k.shape[1]
    q = q * q.dtype.type(1.0 / math.sqrt(head_dim))
    qg = q.reshape(b, n_kv, n_heads // n_kv, seq_len, head_dim)      # [B, K, G, L, Dh]
    out = xp.empty(qg.shape, dtype=q.dtype)
    for start in range(0, seq_len, QUERY_BLOCK):
        stop = min(start + QUERY_BLOCK, seq_len)
        first = 0 if window is None else max(0, start - window + 1)  # earliest visible key
        out[:, :, :, start:stop] = attention_block(
            qg[:, :, :, start:stop], k[:, :, first:stop], v[:, :, first:stop], start, first, window)
    return out.reshape(b, n_heads, seq_len, head_dim)


def attention_block(q, k, v, q_start: int, k_start: int, window: int | None):
    """One block of scaled queries against its keys.   q [B, K, G, Lq, Dh], k/v [B, K, Lk, Dh] -> [B, K, G, Lq, Dh]

    softmax(s) v = (exp(s − max s) v) / Σ exp(s − max s): the division is made on the output
    [Lq, Dh], not on the probabilities [Lq, Lk]; the mask is added only to the key columns that
    some query may not see (the diagonal block, and the window's edge).
    """
    xp = array_module(q, k, v)
    b, n_kv, group, n_q, head_dim = q.shape
    n_k = k.shape[2]
    rows = q.reshape(b, n_kv, group * n_q, head_dim)                 # one GEMM per KV head
    scores = xp.matmul(rows, k.swapaxes(-1, -2))                      # [B, K, G·Lq, Lk]
    scores = scores.reshape(b, n_kv, group, n_q, n_k)
    mask = block_mask(q_start, n_q, k_start, n_k, window, q.dtype)  # [Lq, Lk]
    lo, hi = masked_span(mask)
    scores[..., lo:hi] += to_device(mask[:, lo:hi], xp)
    weights, total = exp_shifted_(scores)                             # [B, K, G, Lq, Lk], [.., Lq, 1]
    out = xp.matmul(weights.reshape(b, n_kv, group * n_q, n_k), v)   # [B, K, G·Lq, Dh]
    out = out.reshape(b, n_kv, group, n_q, head_dim)
    out /= total
    return out


def exp_shifted_(scores):
    """exp(scores − row max), in place, and its row sums: softmax's numerator and denominator.
    [..., N] -> ([..., N], [..., 1])"""
    xp = array_module(scores)
    scores -= scores.max(axis=-1, keepdims=True)
    xp.exp(scores, out=scores)
    return scores, scores.sum(axis=-1, keepdims=True)


def silu(x):
    """x · sigmoid(x) = x / (1 + exp(−x)); the floor keeps exp(−x) finite (the result is ~0 there)."""
    xp = array_module(x)
    floor = -80.0 if x.dtype == np.float32 else -700.0
    denominator = xp.maximum(x, floor)  # one temporary, then in place: same values, fewer passes
    xp.negative(denominator, out=denominator)
    xp.exp(denominator, out=denominator)
    denominator += 1.0
    return xp.divide(x, denominator, out=denominator)


def swiglu_mlp(x, w_gate, w_up, w_down, b_gate=None, b_up=None, b_down=None, capture=None,
               prefix: str = "mlp.", output: bool = True):
    """down(silu(gate(x)) · up(x)).   x [B, L, D] -> [B, L, D]; capture gets each linear's input.

    With ``output=False`` the down projection is skipped and None returned (a pass that only
    needs each linear's input, such as the statistics pass, saves a third of the MLP).
    """
    if capture is not None:
        capture(prefix + "gate_proj", x)
        capture(prefix + "up_proj", x)
    hidden = silu(linear(x, w_gate, b_gate)) * linear(x, w_up, b_up)  # [B, L, F]
    if capture is not None:
        capture(prefix + "down_proj", hidden)
    return linear(hidden, w_down, b_down) if output else None


def relu_mlp(x, w_fc1, w_fc2, b_fc1=None, b_fc2=None, capture=None, prefix: str = "", output: bool = True):
    """fc2(relu(fc1(x))).   x [B, L, D] -> [B, L, D]; capture gets each linear's input.

    ``output=False``: fc2 is skipped and None returned, as in ``swiglu_mlp``.
    """
    xp = array_module(x)
    if capture is not None:
        capture(prefix + "fc1", x)
    hidden = xp.maximum(linear(x, w_fc1, b_fc1), 0)                   # [B, L, F]
    if capture is not None:
        capture(prefix + "fc2", hidden)
    return linear(hidden, w_fc2, b_fc2) if output else None


def split_heads(x, n_heads: int):
    """[B, L, n·Dh] -> [B, n, L, Dh]"""
    b, seq_len, width = x.shape
    return x.reshape(b, seq_len, n_heads, width // n_heads).transpose(0, 2, 1, 3)


def merge_heads(x):
    """[B, n, L, Dh] -> [B, L, n·Dh]"""
    b, n, seq_len, head_dim = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, seq_len, n * head_dim)


def log_softmax_nll(logits, targets):
    """Next-token negative log-likelihood, −log softmax(logits)[target], as float64.

    logits [T, V] (float32 is fine: a max-shifted logsumexp is stable), targets [T] -> [T] float64
    """
    xp = array_module(logits)
    peak = logits.max(axis=-1, keepdims=True)                          # [T, 1]
    sum_exp = xp.exp(logits - peak).sum(axis=-1, dtype=np.float64)    # [T]
    lse = xp.log(sum_exp) + peak[:, 0].astype(np.float64)
    picked = xp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0].astype(np.float64)
    return lse - picked
