"""The pure ops against their definitions, written out independently (loops, scipy, float64)."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st

from dsnot_ref import ops
from dsnot_ref.config import ModelConfig

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
RNG = np.random.default_rng(0)


def test_linear_with_bias_matches_einsum():
    x = RNG.standard_normal((2, 5, 7))
    w = RNG.standard_normal((3, 7))
    b = RNG.standard_normal(3)
    expected = np.einsum("blc,rc->blr", x, w) + b
    assert np.allclose(ops.linear(x, w, b), expected, rtol=0, atol=1e-12)
    assert ops.linear(x.astype(np.float32), w.astype(np.float32)).dtype == np.float32


def test_rms_norm_and_layer_norm_definitions():
    x = RNG.standard_normal((3, 4, 16)) * 3 + 1
    w, b = RNG.standard_normal(16), RNG.standard_normal(16)
    rms = np.sqrt((x ** 2).mean(axis=-1, keepdims=True) + 1e-5)
    assert np.allclose(ops.rms_norm(x, w, 1e-5), x / rms * w, atol=1e-12)
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    assert np.allclose(ops.layer_norm(x, w, b, 1e-5), (x - mu) / np.sqrt(var + 1e-5) * w + b, atol=1e-12)
    assert ops.rms_norm(x.astype(np.float32), w.astype(np.float32), 1e-5).dtype == np.float32


def tiny_config(**changes) -> ModelConfig:
    return replace(ModelConfig.from_file(FIXTURES / "tiny-llama"), **changes)


def test_rope_relative_position_property():
    """<R(m) q, R(n) k> depends only on m − n, and each rotation keeps vector norms."""
    config = tiny_config()
    cos, sin = ops.rope_tables(config, 40, np.float64)
    q = RNG.standard_normal(config.head_dim)
    k = RNG.standard_normal(config.head_dim)
    qs = ops.apply_rope(np.tile(q, (40, 1)), cos, sin)   # [L, Dh]: q at every position
    ks = ops.apply_rope(np.tile(k, (40, 1)), cos, sin)
    assert np.allclose(np.linalg.norm(qs, axis=-1), np.linalg.norm(q), atol=1e-12)
    for shift in (0, 3, 17):
        dots = [qs[m] @ ks[m - shift] for m in range(shift, 40)]
        assert np.allclose(dots, dots[0], atol=1e-10)


def test_rope_pairs_dimension_i_with_i_plus_half():
    """HF's rotate-half layout: dimension i is rotated together with i + Dh/2 by pos·inv_freq[i]."""
    config = tiny_config()
    half = config.head_dim // 2
    cos, sin = ops.rope_tables(config, 9, np.float64)
    inv_freq = config.rope_theta ** (-np.arange(half) * 2.0 / config.head_dim)
    x = RNG.standard_normal((9, config.head_dim))
    y = ops.apply_rope(x, cos, sin)
    for pos in range(9):
        for i in range(half):
            a = pos * inv_freq[i]
            rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            assert np.allclose(y[pos, [i, i + half]], rot @ x[pos, [i, i + half]], atol=1e-12)


def test_llama3_rope_scaling_bands():
    scaling = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192.0}
    base = ops.rope_inv_freq(128, 500000.0, None)
    scaled = ops.rope_inv_freq(128, 500000.0, scaling)
    wavelen = 2 * np.pi / base
    high = wavelen < 8192 / 4          # short wavelengths: unchanged
    low = wavelen > 8192 / 1           # long wavelengths: divided by the factor
    assert high.any() and low.any() and (~high & ~low).any()
    assert np.array_equal(scaled[high], base[high])
    assert np.allclose(scaled[low], base[low] / 8)
    mid = ~high & ~low                 # in between: between the two, monotone in wavelength
    assert np.all((scaled[mid] <= base[mid]) & (scaled[mid] >= base[mid] / 8))
    assert np.all(np.diff(scaled) < 0)


def naive_attention(q, k, v, window=None):
    """Loops over batch, head, query: softmax over allowed keys, head h uses KV head h // G."""
    b, h, seq_len, dh = q.shape
    group = h // k.shape[1]
    out = np.zeros_like(q)
    for bi in range(b):
        for hi in range(h):
            for t in range(seq_len):
                keys = [s for s in range(t + 1) if window is None or t - s < window]
                scores = np.array([q[bi, hi, t] @ k[bi, hi // group, s] for s in keys]) / math.sqrt(dh)
                p = scipy.special.softmax(scores)
                out[bi, hi, t] = sum(pi * v[bi, hi // group, s] for pi, s in zip(p, keys))
    return out


@pytest.mark.parametrize("n_heads, n_kv, window", [(4, 4, None), (4, 2, None), (6, 1, None), (4, 2, 3)])
def test_causal_attention_matches_loops(n_heads, n_kv, window):
    q = RNG.standard_normal((2, n_heads, 7, 8))
    k = RNG.standard_normal((2, n_kv, 7, 8))
    v = RNG.standard_normal((2, n_kv, 7, 8))
    got = ops.causal_attention(q, k, v, window)
    assert np.allclose(got, naive_attention(q, k, v, window), atol=1e-12)
    got32 = ops.causal_attention(*(a.astype(np.float32) for a in (q, k, v)), window)
    assert got32.dtype == np.float32 and np.allclose(got32, got, atol=1e-5)


@pytest.mark.parametrize("window", [None, 3, 5])
def test_attention_query_blocks_give_the_same_result(monkeypatch, window):
    q = RNG.standard_normal((2, 4, 11, 8))
    k, v = RNG.standard_normal((2, 2, 11, 8)), RNG.standard_normal((2, 2, 11, 8))
    monkeypatch.setattr(ops, "QUERY_BLOCK", 4)  # blocks of 4, 4, 3 queries
    assert np.allclose(ops.causal_attention(q, k, v, window), naive_attention(q, k, v, window), atol=1e-12)


def test_attention_is_causal():
    q, k, v = (RNG.standard_normal((1, 2, 10, 4)) for _ in range(3))
    base = ops.causal_attention(q, k, v)
    k2, v2 = k.copy(), v.copy()
    k2[:, :, 6:] += 5.0
    v2[:, :, 6:] -= 3.0
    changed = ops.causal_attention(q, k2, v2)
    assert np.array_equal(changed[:, :, :6], base[:, :, :6])
    assert not np.allclose(changed[:, :, 6:], base[:, :, 6:])


def test_mlps_match_definitions_and_capture_inputs():
    x = RNG.standard_normal((2, 3, 6))
    wg, wu, wd = RNG.standard_normal((5, 6)), RNG.standard_normal((5, 6)), RNG.standard_normal((6, 5))
    seen = {}
    y = ops.swiglu_mlp(x, wg, wu, wd, capture=lambda name, a: seen.__setitem__(name, a))
    gate = x @ wg.T
    hidden = gate * scipy.special.expit(gate) * (x @ wu.T)
    assert np.allclose(y, hidden @ wd.T, atol=1e-12)
    assert list(seen) == ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    assert seen["mlp.gate_proj"] is x and np.allclose(seen["mlp.down_proj"], hidden)
    seen.clear()
    b1, b2 = RNG.standard_normal(5), RNG.standard_normal(6)
    y = ops.relu_mlp(x, wg, wd, b1, b2, capture=lambda name, a: seen.__setitem__(name, a))
    assert np.allclose(y, np.maximum(x @ wg.T + b1, 0) @ wd.T + b2, atol=1e-12)
    assert list(seen) == ["fc1", "fc2"]


def test_silu_stays_finite_for_extreme_inputs():
    x = np.array([-1e4, -100.0, -1.0, 0.0, 1.0, 100.0, 1e4], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = ops.silu(x)
    assert np.all(np.isfinite(y))
    assert np.allclose(y, x.astype(np.float64) * scipy.special.expit(x.astype(np.float64)), atol=1e-6)


@given(st.integers(1, 6), st.integers(2, 300), st.floats(0.1, 300.0), st.integers(0, 2**31 - 1))
def test_nll_matches_scipy_log_softmax(n_tokens, vocab, scale, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n_tokens, vocab)) * scale).astype(np.float32)
    targets = rng.integers(0, vocab, size=n_tokens)
    got = ops.log_softmax_nll(logits, targets)
    expected = -scipy.special.log_softmax(logits.astype(np.float64), axis=-1)[np.arange(n_tokens), targets]
    assert got.dtype == np.float64
    # The exponentials are taken in float32 (the logits' dtype, as in the forward pass), so each
    # term of the sum carries ~1e-7 relative error; the bound leaves room for that, not more.
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_nll_huge_logits_do_not_overflow():
    logits = np.array([[1e30, 0.0, -1e30], [80.0, 90.0, 100.0]], dtype=np.float32)
    got = ops.log_softmax_nll(logits, np.array([0, 0]))
    assert np.allclose(got, [0.0, -scipy.special.log_softmax([80.0, 90.0, 100.0])[0]])
