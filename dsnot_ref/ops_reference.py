"""The forward pass as a paper writes it: read this to see how a LLaMA block computes.

ops.py computes the same functions for speed (queries in blocks that meet only the keys they
may see, the softmax's division made on the output, exponentials in place, a floored SiLU);
this file is the literal version beside it, one formula per function, NumPy only, and
tests/test_ops_reference.py holds the two together on random inputs and on a real layer. The
pipeline never runs it.

    RMSNorm(x)   = x / sqrt(mean(x²) + ε) · g
    RoPE(x)_t    = x_t · cos(t·θ) + rotate_half(x_t) · sin(t·θ),  θ_i = base^(−2i/Dh)
    attention    = softmax(q kᵀ / sqrt(Dh) + causal mask) v      (head h reads KV head h // G)
    SwiGLU(x)    = W_down (silu(W_gate x) ⊙ W_up x),  silu(z) = z · sigmoid(z)
    block(x)     = x + attn(RMSNorm(x)),  then  + SwiGLU(RMSNorm(·))

Shape letters: B sequences, L tokens, D hidden size, H query heads, K KV heads (G = H / K heads
share one), Dh head size, F MLP width.
"""

from __future__ import annotations

import numpy as np


def rms_norm(x, g, eps: float):
    """x / sqrt(mean(x²) + ε) · g.   x [..., D], g [D] -> [..., D]"""
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g


def rope_angles(seq_len: int, head_dim: int, base: float):
    """t·θ_i for every position t and frequency θ_i = base^(−2i/Dh), halves repeated. -> [L, Dh]"""
    theta = base ** (-np.arange(0, head_dim, 2) / head_dim)               # [Dh/2]
    angles = np.outer(np.arange(seq_len), theta)                          # [L, Dh/2]
    return np.concatenate([angles, angles], axis=-1)                       # [L, Dh]


def rotate_half(x):
    """[x1, x2] -> [−x2, x1] on the last axis (the Hugging Face layout of q and k)."""
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def rope(x, angles):
    """Rotate each position's vector by its angles.   x [B, n, L, Dh], angles [L, Dh] -> same"""
    return x * np.cos(angles) + rotate_half(x) * np.sin(angles)


def softmax(s):
    """exp(s) / Σ exp(s) on the last axis (shifted by the row maximum, which changes nothing)."""
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def causal_mask(seq_len: int, window: int | None = None):
    """0 where key s may be seen by query t (s ≤ t, and t − s < window), −inf elsewhere. -> [L, L]"""
    t, s = np.arange(seq_len)[:, None], np.arange(seq_len)[None, :]
    allowed = (s <= t) if window is None else (s <= t) & (t - s < window)
    return np.where(allowed, 0.0, -np.inf)


def attention(q, k, v, window: int | None = None):
    """softmax(q kᵀ / sqrt(Dh) + mask) v, every head.   q [B, H, L, Dh], k, v [B, K, L, Dh] -> [B, H, L, Dh]"""
    group = q.shape[1] // k.shape[1]
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)       # [B, H, L, Dh]
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(q.shape[-1])                 # [B, H, L, L]
    return softmax(scores + causal_mask(q.shape[2], window)) @ v          # [B, H, L, Dh]


def silu(z):
    """z · sigmoid(z) = z / (1 + exp(−z))."""
    with np.errstate(over="ignore"):                                       # exp(−z) = inf gives 0, correctly
        return z / (1.0 + np.exp(-z))


def swiglu(x, w_gate, w_up, w_down):
    """W_down (silu(W_gate x) ⊙ W_up x).   x [..., D], W_gate/W_up [F, D], W_down [D, F] -> [..., D]"""
    return (silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T


def heads(x, n: int):
    """[B, L, n·Dh] -> [B, n, L, Dh]"""
    b, seq_len, width = x.shape
    return x.reshape(b, seq_len, n, width // n).transpose(0, 2, 1, 3)


def llama_block(config, layer: dict, x):
    """One LLaMA-family decoder block (LLaMA, Mistral, Qwen2), literally.

    config: ModelConfig; layer: layer-relative weights as model.load_layer gives them (biases
    used where present). x [B, L, D] -> [B, L, D]. Plain RoPE only: a config with Llama 3's
    frequency rescaling is refused rather than computed differently from ops.py.
    """
    if config.rope_scaling is not None:
        raise ValueError("ops_reference.llama_block computes plain RoPE; this config rescales its frequencies")

    def linear(h, name):
        bias = layer.get(name + ".bias")
        y = h @ layer[name + ".weight"].T
        return y if bias is None else y + bias

    b, seq_len, _ = x.shape
    h = rms_norm(x, layer["input_layernorm.weight"], config.norm_eps)
    q = heads(linear(h, "self_attn.q_proj"), config.num_heads)            # [B, H, L, Dh]
    k = heads(linear(h, "self_attn.k_proj"), config.num_kv_heads)         # [B, K, L, Dh]
    v = heads(linear(h, "self_attn.v_proj"), config.num_kv_heads)
    angles = rope_angles(seq_len, config.head_dim, config.rope_theta)
    a = attention(rope(q, angles), rope(k, angles), v, config.sliding_window)
    a = a.transpose(0, 2, 1, 3).reshape(b, seq_len, -1)                     # [B, L, H·Dh]
    x = x + linear(a, "self_attn.o_proj")
    h = rms_norm(x, layer["post_attention_layernorm.weight"], config.norm_eps)
    return x + linear(silu(linear(h, "mlp.gate_proj")) * linear(h, "mlp.up_proj"), "mlp.down_proj")  # SwiGLU
