"""The literal forward pass (ops_reference.py) against the fast one (ops.py, model.py).

Both are computed in float64, where the fast path's blocking, in-place updates and division
after P·V change only the order of roundings: agreement to 1e-12 relative (1e-10 for a whole
block, whose values pass through a dozen products of width up to F) says they are the same
functions. The float32 fast path is held to transformers by tests/test_model_parity.py.
"""

from pathlib import Path

import numpy as np
import pytest

from dsnot_ref import ops, ops_reference
from dsnot_ref.model import block_forward, load_layer, load_model

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
RNG = np.random.default_rng(7)


def test_rms_norm_silu_and_swiglu():
    x = RNG.standard_normal((2, 5, 16)) * 3 + 1
    g = RNG.standard_normal(16)
    np.testing.assert_allclose(ops.rms_norm(x, g, 1e-5), ops_reference.rms_norm(x, g, 1e-5), rtol=1e-12, atol=0)
    z = np.linspace(-800, 50, 1001)
    # below z = −700 the fast form floors the exponent (exp(700) stays finite), so it returns
    # z·e⁻⁷⁰⁰·… ≈ 1e-302 where the literal one underflows to −0: an absolute 1e-300 covers that
    np.testing.assert_allclose(ops.silu(z), ops_reference.silu(z), rtol=1e-12, atol=1e-300)
    w_gate, w_up, w_down = RNG.standard_normal((24, 16)), RNG.standard_normal((24, 16)), RNG.standard_normal((16, 24))
    np.testing.assert_allclose(ops.swiglu_mlp(x, w_gate, w_up, w_down), ops_reference.swiglu(x, w_gate, w_up, w_down),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seq_len, window", [(5, None), (300, None), (300, 70)])
def test_attention_blocked_equals_literal(seq_len, window):
    """Query blocks of ops.QUERY_BLOCK, grouped KV heads (H = 4, K = 2) and a sliding window."""
    q = RNG.standard_normal((2, 4, seq_len, 8))
    k, v = RNG.standard_normal((2, 2, seq_len, 8)), RNG.standard_normal((2, 2, seq_len, 8))
    np.testing.assert_allclose(ops.causal_attention(q, k, v, window), ops_reference.attention(q, k, v, window),
                               rtol=1e-12, atol=1e-12)


def test_rope_equals_literal():
    model = load_model(FIXTURES / "tiny-llama")
    cos, sin = ops.rope_tables(model.config, 40, np.float64)
    x = RNG.standard_normal((1, 2, 40, model.config.head_dim))
    angles = ops_reference.rope_angles(40, model.config.head_dim, model.config.rope_theta)
    np.testing.assert_allclose(ops.apply_rope(x, cos, sin), ops_reference.rope(x, angles), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["tiny-llama", "qwen2", "mistral-swa"])
def test_llama_block_equals_literal(name):
    model = load_model(FIXTURES / name)
    layer = load_layer(model, 0, dtype=np.float64)
    x = RNG.standard_normal((2, 33, model.config.hidden_size))
    fast = block_forward(model.config, layer, x)
    np.testing.assert_allclose(fast, ops_reference.llama_block(model.config, layer, x), rtol=1e-10, atol=1e-10)


def test_literal_block_refuses_rescaled_rope():
    model = load_model(FIXTURES / "llama3-rope")
    with pytest.raises(ValueError, match="plain RoPE"):
        ops_reference.llama_block(model.config, load_layer(model, 0, dtype=np.float64),
                                  np.zeros((1, 2, model.config.hidden_size)))
