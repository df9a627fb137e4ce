"""config.json -> ModelConfig: every supported family, both config.json generations, bad inputs."""

import json
from pathlib import Path

import pytest

from dsnot_ref.config import ModelConfig
from dsnot_ref.errors import UserError

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"


def raw_config(name: str) -> dict:
    return json.loads((FIXTURES / name / "config.json").read_text())


def write_config(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return path


def test_tiny_llama_fields():
    c = ModelConfig.from_file(FIXTURES / "tiny-llama")
    raw = raw_config("tiny-llama")
    assert (c.architecture, c.family) == ("LlamaForCausalLM", "llama")
    assert c.hidden_size == raw["hidden_size"] and c.num_layers == raw["num_hidden_layers"]
    assert (c.num_heads, c.num_kv_heads) == (raw["num_attention_heads"], raw["num_key_value_heads"])
    assert c.head_dim == raw["hidden_size"] // raw["num_attention_heads"]
    assert c.tie_word_embeddings is True and c.rope_scaling is None
    assert c.rope_theta == raw["rope_parameters"]["rope_theta"]
    assert c.norm_eps == raw["rms_norm_eps"] and c.torch_dtype == raw["dtype"]
    assert c.word_embed_proj_dim == c.hidden_size and c.do_layer_norm_before


def test_config_accepts_file_or_directory():
    assert ModelConfig.from_file(FIXTURES / "qwen2") == ModelConfig.from_file(FIXTURES / "qwen2" / "config.json")


def test_qwen2_has_qkv_biases_and_opt_fields():
    q = ModelConfig.from_file(FIXTURES / "qwen2")
    assert q.attention_bias and not q.mlp_bias and q.num_kv_heads == 1
    o = ModelConfig.from_file(FIXTURES / "opt-postln-proj")
    raw = raw_config("opt-postln-proj")
    assert o.family == "opt" and not o.do_layer_norm_before
    assert o.word_embed_proj_dim == raw["word_embed_proj_dim"] != o.hidden_size
    assert o.intermediate_size == raw["ffn_dim"] and o.num_kv_heads == o.num_heads
    assert o.attention_bias and o.mlp_bias


def test_legacy_and_v5_rope_configs_agree(tmp_path):
    legacy = raw_config("llama3-rope")           # top-level rope_theta + rope_scaling
    assert "rope_scaling" in legacy and "rope_parameters" not in legacy
    modern = dict(legacy)
    scaling = modern.pop("rope_scaling")
    modern["rope_parameters"] = dict(scaling, rope_theta=modern.pop("rope_theta"))
    a = ModelConfig.from_file(FIXTURES / "llama3-rope")
    b = ModelConfig.from_file(write_config(tmp_path, modern))
    assert a == b
    assert a.rope_theta == 500000.0
    assert a.rope_scaling_dict == {k: float(v) for k, v in scaling.items() if k != "rope_type"}
    hash(a)  # frozen and hashable: used as a cache key


def test_mistral_sliding_window_and_torch_dtype_key(tmp_path):
    assert ModelConfig.from_file(FIXTURES / "mistral-swa").sliding_window == 6
    assert ModelConfig.from_file(FIXTURES / "mistral").sliding_window is None
    raw = raw_config("tiny-llama")
    raw["torch_dtype"] = raw.pop("dtype").replace("float32", "bfloat16")
    assert ModelConfig.from_file(write_config(tmp_path, raw)).torch_dtype == "bfloat16"


def test_eos_list_keeps_first(tmp_path):
    raw = raw_config("tiny-llama")
    raw["eos_token_id"] = [128001, 128009]
    assert ModelConfig.from_file(write_config(tmp_path, raw)).eos_token_id == 128001


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda r: r.update(architectures=["GPT2LMHeadModel"]), ["GPT2LMHeadModel", "LlamaForCausalLM", "OPTForCausalLM"]),
        (lambda r: r.pop("architectures"), ["unsupported architecture"]),
        (lambda r: r.update(rope_parameters={"rope_theta": 1e4, "rope_type": "yarn", "factor": 2.0}), ["yarn"]),
        (lambda r: r.update(hidden_act="gelu"), ["gelu"]),
        (lambda r: r.update(num_key_value_heads=3), ["multiple"]),
        (lambda r: r.pop("hidden_size"), ["hidden_size"]),
        (lambda r: r.update(num_hidden_layers="two"), ["invalid value"]),
    ],
)
def test_bad_configs_raise_one_line_naming_the_file(tmp_path, edit, words):
    raw = raw_config("tiny-llama")
    edit(raw)
    path = write_config(tmp_path, raw)
    with pytest.raises(UserError) as info:
        ModelConfig.from_file(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message


def test_missing_and_invalid_config_json(tmp_path):
    with pytest.raises(UserError, match="config.json not found"):
        ModelConfig.from_file(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="invalid JSON") as info:
        ModelConfig.from_file(tmp_path)
    assert str(tmp_path / "config.json") in str(info.value)
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="JSON object"):
        ModelConfig.from_file(tmp_path)


@pytest.mark.parametrize(
    "fixture, edit, words",
    [
        ("qwen2", lambda r: r.update(use_sliding_window=True, sliding_window=4, max_window_layers=1,
                                     layer_types=None), "use_sliding_window"),
        ("qwen2", lambda r: r.update(layer_types=["full_attention", "sliding_attention"]), "layer_types"),
        ("tiny-opt", lambda r: r.update(activation_function="gelu"), "gelu"),
        ("tiny-opt", lambda r: r.update(_remove_final_layer_norm=True), "_remove_final_layer_norm"),
        ("tiny-opt", lambda r: r.update(layer_norm_elementwise_affine=False), "elementwise_affine"),
        ("mistral", lambda r: r.update(sliding_window=0), "sliding_window"),
    ],
)
def test_unsupported_variants_are_refused(tmp_path, fixture, edit, words):
    raw = raw_config(fixture)
    edit(raw)
    path = write_config(tmp_path, raw)
    with pytest.raises(UserError, match=words) as info:
        ModelConfig.from_file(path)
    assert str(path) in str(info.value)
