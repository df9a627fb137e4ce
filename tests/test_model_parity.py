"""Our NumPy forward pass against transformers' logits (stored by tools/make_hf_fixtures.py),
the capture hook, and load-time checks of every key and shape. No torch is imported here."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dsnot_ref import model as model_lib
from dsnot_ref.errors import UserError
from dsnot_ref.model import block_forward, forward, linear_names, load_layer, load_model
from dsnot_ref.weights import WeightStore, save_safetensors_atomic

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
PARITY = sorted(p.name for p in FIXTURES.iterdir() if (p / "logits.npz").is_file())


def test_every_family_has_a_fixture():
    archs = {json.loads((FIXTURES / n / "config.json").read_text())["architectures"][0] for n in PARITY}
    assert archs == {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "OPTForCausalLM"}
    assert {"tiny-llama", "tiny-opt", "llama-bf16", "llama-f16-sharded", "llama3-rope"} <= set(PARITY)


@pytest.mark.parametrize("name", PARITY)
def test_logits_match_transformers(name):
    ref = np.load(FIXTURES / name / "logits.npz")
    model = load_model(FIXTURES / name)
    got32 = forward(model, ref["tokens"])
    assert got32.dtype == np.float32 and got32.shape == ref["logits"].shape
    assert np.abs(got32 - ref["logits"]).max() <= 1e-4
    got64 = forward(model, ref["tokens"], dtype=np.float64)
    assert got64.dtype == np.float64
    assert np.abs(got64 - ref["logits"]).max() <= 1e-4
    assert np.abs(got64 - got32).max() <= 1e-4


def test_sliding_window_fixture_exercises_the_window():
    """Mistral's window (6 < 16 tokens) changes the logits; dropping it loses parity."""
    ref = np.load(FIXTURES / "mistral-swa" / "logits.npz")
    model = load_model(FIXTURES / "mistral-swa")
    no_window = replace(model, config=replace(model.config, sliding_window=None))
    assert np.abs(forward(no_window, ref["tokens"]) - ref["logits"]).max() > 1e-3


def test_llama3_scaling_fixture_exercises_the_scaling():
    ref = np.load(FIXTURES / "llama3-rope" / "logits.npz")
    model = load_model(FIXTURES / "llama3-rope")
    plain = replace(model, config=replace(model.config, rope_scaling=None))
    assert np.abs(forward(plain, ref["tokens"]) - ref["logits"]).max() > 1e-3


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-opt", "opt-postln-proj", "qwen2"])
def test_capture_sees_each_linear_input(name):
    """capture gets [B, L, C] inputs in linear_names order; the last linear of the block acts
    on its captured input (perturbing its weight by E moves the output by x_in Eᵀ exactly)."""
    model = load_model(FIXTURES / name)
    config = model.config
    layer = load_layer(model, 0, np.float64)
    x = np.random.default_rng(0).standard_normal((2, 9, config.hidden_size))
    seen = []
    y = block_forward(config, layer, x, capture=lambda n, a: seen.append((n, a.copy())))
    assert [n for n, _ in seen] == linear_names(config)
    assert np.array_equal(y, block_forward(config, layer, x))
    inputs_only = []  # the statistics pass: the same inputs, no output
    assert block_forward(config, layer, x, capture=lambda n, a: inputs_only.append((n, a.copy())), output=False) is None
    assert [n for n, _ in inputs_only] == [n for n, _ in seen]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(inputs_only, seen))
    for n, a in seen:
        assert a.shape == (2, 9, layer[n + ".weight"].shape[1])
    q_in, k_in, v_in = (a for n, a in seen[:3])
    assert np.array_equal(q_in, k_in) and np.array_equal(q_in, v_in)
    last_name, last_in = seen[-1]
    if config.do_layer_norm_before:  # post-LN OPT normalises after the residual: not linear
        e = np.random.default_rng(1).standard_normal(layer[last_name + ".weight"].shape) * 0.1
        moved = block_forward(config, {**layer, last_name + ".weight": layer[last_name + ".weight"] + e}, x)
        assert np.allclose(moved - y, last_in @ e.T, atol=1e-10)
    # the first linear's input is the (pre-)normalised hidden state
    if config.family == "llama":
        w = layer["input_layernorm.weight"]
        expected = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + config.norm_eps) * w
        assert np.allclose(q_in, expected, atol=1e-12)


def test_forward_reads_each_weight_once():
    class CountingStore(WeightStore):
        def __init__(self, d):
            super().__init__(d)
            self.reads = []

        def get(self, name, dtype=np.float32):
            self.reads.append(name)
            return super().get(name, dtype)

    store = CountingStore(FIXTURES / "tiny-llama")
    model = load_model(FIXTURES / "tiny-llama", store=store)
    forward(model, np.zeros((1, 4), dtype=np.int64))
    assert sorted(store.reads) == sorted(set(store.reads))
    assert set(store.reads) == set(store.names())


# --------------------------------------------------------------------------- load-time checks

def rewrite_weights(tmp_path: Path, name: str, edit) -> Path:
    model_dir = tmp_path / name
    shutil.copytree(FIXTURES / name, model_dir)
    store = WeightStore(model_dir)
    tensors = {n: store.get(n) for n in store.names()}
    edit(tensors)
    save_safetensors_atomic(model_dir / "model.safetensors", tensors, "F32")
    return model_dir


def test_missing_key_names_file_and_key(tmp_path):
    model_dir = rewrite_weights(tmp_path, "tiny-opt", lambda t: t.pop("model.decoder.layers.1.fc2.bias"))
    with pytest.raises(UserError) as info:
        load_model(model_dir)
    message = str(info.value)
    assert "model.decoder.layers.1.fc2.bias" in message and str(model_dir / "model.safetensors") in message


def test_wrong_shape_names_file_key_and_shapes(tmp_path):
    key = "model.layers.0.self_attn.k_proj.weight"
    model_dir = rewrite_weights(tmp_path, "tiny-llama", lambda t: t.update({key: t[key][:8]}))
    with pytest.raises(UserError) as info:
        load_model(model_dir)
    message = str(info.value)
    assert key in message and "[8, 64]" in message and "[32, 64]" in message
    assert str(model_dir / "model.safetensors") in message and "\n" not in message


def test_untied_model_needs_its_lm_head(tmp_path):
    model_dir = rewrite_weights(tmp_path, "llama-untied", lambda t: t.pop("lm_head.weight"))
    with pytest.raises(UserError, match="lm_head.weight"):
        load_model(model_dir)


def test_unknown_architecture_and_missing_dir(tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(FIXTURES / "tiny-llama", model_dir)
    raw = json.loads((model_dir / "config.json").read_text())
    raw["architectures"] = ["FalconForCausalLM"]
    (model_dir / "config.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match="FalconForCausalLM.*supported: LlamaForCausalLM"):
        load_model(model_dir)
    with pytest.raises(UserError, match="not found"):
        load_model(tmp_path / "absent")


def test_bad_tokens_are_user_errors():
    model = load_model(FIXTURES / "tiny-llama")
    with pytest.raises(UserError, match="outside the model's vocabulary"):
        forward(model, np.array([[1, 256]]))
    with pytest.raises(UserError, match="must be integers"):
        forward(model, np.array([[1.0, 2.0]]))
    with pytest.raises(UserError, match="exceeds the model's .* positions"):
        forward(model, np.zeros((1, model.config.max_positions + 1), dtype=np.int64))
    with pytest.raises(UserError, match="float32 or float64"):
        forward(model, np.zeros((1, 3), dtype=np.int64), dtype=np.float16)


def test_layer_prefix_and_names():
    llama = load_model(FIXTURES / "tiny-llama").config
    opt = load_model(FIXTURES / "tiny-opt").config
    assert model_lib.layer_prefix(llama, 3) == "model.layers.3."
    assert model_lib.layer_prefix(opt, 3) == "model.decoder.layers.3."
    assert linear_names(opt)[-2:] == ["fc1", "fc2"] and linear_names(llama)[-1] == "mlp.down_proj"


DEMO_LOGITS = FIXTURES / "demo-logits.npz"


@pytest.mark.slow
def test_demo_model_matches_transformers_logits():
    """SmolLM2-135M (the demo model) against transformers' logits stored by make_hf_fixtures --demo."""
    if not DEMO_LOGITS.is_file():
        pytest.skip("no demo-logits.npz fixture (run tools/make_hf_fixtures.py --demo)")
    from dsnot_ref.demo_model import demo_model_dir, is_complete

    model_dir = demo_model_dir()
    if not is_complete(model_dir):
        pytest.skip("demo model not cached (dsnot-ref fetch-model)")
    ref = np.load(DEMO_LOGITS)
    logits = forward(load_model(model_dir), ref["tokens"])[0]               # [L, V]
    assert np.abs(logits[:, ref["sample_ids"]] - ref["sample_logits"]).max() <= 1e-3
    top = np.take_along_axis(logits, ref["top_ids"], axis=-1)
    assert np.abs(top - ref["top_logits"]).max() <= 1e-3


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-opt"])
def test_fixture_tokenizer_is_bytes(name):
    """The tiny fixtures' tokenizer.json maps any text to its UTF-8 bytes and back."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(FIXTURES / name / "tokenizer.json"))
    text = "Grüße, 世界!\n\n  tabs\tand emoji 🙂"
    ids = tok.encode(text).ids
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert tok.get_vocab_size() == load_model(FIXTURES / name).config.vocab_size
