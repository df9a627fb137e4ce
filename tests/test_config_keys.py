"""Every config.json key of every supported family is honoured or refused, never ignored.

The key lists below are written from transformers' own configuration classes (LlamaConfig,
MistralConfig, Qwen2Config, OPTConfig, before and after transformers 5's ``rope_parameters``)
and the generic PreTrainedConfig switches, not from our table: the test fails when a key of
theirs is missing from ``config.CONFIG_KEYS``. Then, for each key of each family:

- "read": a different value changes the ModelConfig, or is refused in one line naming the key
  and the file;
- "no effect" (dropouts, caches, initialisation...): a different value leaves it unchanged;
- a value fixed by the architecture (Mistral's projections have no bias): that value accepted,
  any other refused.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dsnot_ref import config as config_lib
from dsnot_ref.config import ModelConfig
from dsnot_ref.errors import UserError

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
FIXTURE_OF = {"LlamaForCausalLM": "tiny-llama", "MistralForCausalLM": "mistral-swa",
              "Qwen2ForCausalLM": "qwen2", "OPTForCausalLM": "tiny-opt"}

# transformers' configuration classes: the arguments of each __init__ (both generations)
LLAMA_LIKE = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps",
              "use_cache", "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings", "rope_theta",
              "rope_scaling", "rope_parameters", "attention_dropout", "head_dim"]
TRANSFORMERS_KEYS = {
    "LlamaForCausalLM": LLAMA_LIKE + ["pretraining_tp", "attention_bias", "mlp_bias"],
    "MistralForCausalLM": LLAMA_LIKE + ["sliding_window"],
    "Qwen2ForCausalLM": LLAMA_LIKE + ["use_sliding_window", "sliding_window", "max_window_layers", "layer_types"],
    "OPTForCausalLM": ["vocab_size", "hidden_size", "num_hidden_layers", "ffn_dim", "max_position_embeddings",
                       "do_layer_norm_before", "_remove_final_layer_norm", "word_embed_proj_dim", "dropout",
                       "attention_dropout", "num_attention_heads", "activation_function", "layerdrop", "init_std",
                       "use_cache", "pad_token_id", "bos_token_id", "eos_token_id", "enable_bias",
                       "layer_norm_elementwise_affine"],
}
# PreTrainedConfig keys every config.json may carry
GENERIC_KEYS = ["architectures", "model_type", "torch_dtype", "dtype", "transformers_version", "pruned_heads",
                "quantization_config", "_name_or_path", "output_attentions", "output_hidden_states",
                "return_dict", "use_bfloat16", "_attn_implementation"]

# a different value for each key that is read (applied to the family's fixture)
def changed(key: str, raw: dict):
    def num(default: int) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    table = {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": raw["vocab_size"] + 8, "hidden_size": 2 * raw["hidden_size"],
        "num_hidden_layers": raw["num_hidden_layers"] + 1, "num_attention_heads": 2 * raw["num_attention_heads"],
        "max_position_embeddings": raw["max_position_embeddings"] // 2,
        "tie_word_embeddings": not raw.get("tie_word_embeddings", False),
        "bos_token_id": num(0) + 1, "eos_token_id": num(0) + 1,
        "torch_dtype": "float16", "dtype": "float16",
        "intermediate_size": raw.get("intermediate_size", 0) + 8,
        "num_key_value_heads": 1 if raw.get("num_key_value_heads") != 1 else raw["num_attention_heads"],
        "head_dim": 2 * num(raw["hidden_size"] // raw["num_attention_heads"]), "hidden_act": "gelu",
        "rms_norm_eps": 1e-3, "rope_theta": 12345.0,
        "rope_scaling": {"rope_type": "linear", "factor": 4.0},
        "rope_parameters": {"rope_theta": 54321.0, "rope_type": "default"},
        "partial_rotary_factor": 0.5,
        "attention_bias": not raw.get("attention_bias", False), "mlp_bias": not raw.get("mlp_bias", False),
        "sliding_window": num(64) // 2 or 1, "use_sliding_window": True,
        "layer_types": ["sliding_attention"] * raw["num_hidden_layers"],
        "ffn_dim": raw.get("ffn_dim", 0) + 8, "activation_function": "gelu",
        "do_layer_norm_before": not raw.get("do_layer_norm_before", True),
        "_remove_final_layer_norm": True, "word_embed_proj_dim": raw["hidden_size"] // 2,
        "enable_bias": not raw.get("enable_bias", True), "layer_norm_elementwise_affine": False,
    }
    return table[key]


def load(tmp_path: Path, raw: dict) -> ModelConfig:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(raw))
    return ModelConfig.from_file(path)


def family_raw(architecture: str) -> dict:
    return json.loads((FIXTURES / FIXTURE_OF[architecture] / "config.json").read_text())


@pytest.mark.parametrize("architecture", sorted(config_lib.ARCHITECTURES))
def test_every_key_of_the_family_is_classified(architecture):
    table = config_lib.CONFIG_KEYS[architecture]
    known = set(table) | set(config_lib.REFUSED_UNLESS)
    expected = set(TRANSFORMERS_KEYS[architecture]) | set(GENERIC_KEYS) | set(family_raw(architecture))
    assert sorted(expected - known) == []


def cases():
    for architecture in sorted(config_lib.ARCHITECTURES):
        for key, how in config_lib.CONFIG_KEYS[architecture].items():
            yield pytest.param(architecture, key, how, id=f"{architecture}-{key}")


@pytest.mark.parametrize("architecture, key, how", list(cases()))
def test_each_key_is_honoured_or_refused(tmp_path, architecture, key, how):
    raw = family_raw(architecture)
    base = load(tmp_path, raw)
    edited = copy.deepcopy(raw)
    if how == config_lib.NO_EFFECT:
        edited[key] = 0.5 if key.endswith("dropout") or key == "layerdrop" else 7
        assert load(tmp_path, edited) == base
        return
    if how != config_lib.READ:  # fixed by the architecture: its own value passes, another is refused
        edited[key] = how
        assert load(tmp_path, edited) == base
        edited[key] = not how
        with pytest.raises(UserError, match=f"{key} .* is not supported for {architecture}"):
            load(tmp_path, edited)
        return
    if key == "dtype" and "torch_dtype" in edited:
        edited.pop("torch_dtype")
    if key in ("rope_theta", "rope_scaling") and "rope_parameters" not in edited:
        edited["rope_parameters"] = {"rope_theta": 10000.0, "rope_type": "default"}
    edited[key] = changed(key, raw)
    try:
        result = load(tmp_path, edited)
    except UserError as exc:
        message = str(exc)
        assert "\n" not in message and str(tmp_path / "config.json") in message
        assert key in message or (key == "architectures" and "GPT2LMHeadModel" in message), message
        return
    assert result != base, f"{key} = {edited[key]!r} was ignored"


@pytest.mark.parametrize("architecture", sorted(config_lib.ARCHITECTURES))
@pytest.mark.parametrize("key, value", [("pruned_heads", {"0": [1]}), ("quantization_config", {"quant_method": "gptq"}),
                                        ("partial_rotary_factor", 0.5), ("add_cross_attention", True)])
def test_generic_switches_that_change_the_model_are_refused(tmp_path, architecture, key, value):
    raw = family_raw(architecture)
    raw[key] = value
    with pytest.raises(UserError, match=key):
        load(tmp_path, raw)


def test_rope_scaling_beside_rope_parameters_is_refused(tmp_path):
    """The issue's example: linear x4 beside rope_parameters was dropped without a word."""
    raw = family_raw("LlamaForCausalLM")
    raw["rope_scaling"] = {"rope_type": "linear", "factor": 4.0}
    with pytest.raises(UserError, match="rope_scaling .* beside rope_parameters"):
        load(tmp_path, raw)
    raw["rope_scaling"] = {"type": "default"}  # the same meaning in either generation: accepted
    assert load(tmp_path, raw) == load(tmp_path, family_raw("LlamaForCausalLM"))


def test_llama3_scaling_in_both_generations_agrees(tmp_path):
    raw = json.loads((FIXTURES / "llama3-rope" / "config.json").read_text())
    raw["rope_parameters"] = dict(raw["rope_scaling"], rope_theta=raw["rope_theta"])
    assert load(tmp_path, raw) == ModelConfig.from_file(FIXTURES / "llama3-rope")
    raw["rope_parameters"]["factor"] = 2 * raw["rope_parameters"]["factor"]
    with pytest.raises(UserError, match="they differ"):
        load(tmp_path, raw)


def test_partial_rotary_inside_rope_parameters_is_refused(tmp_path):
    raw = family_raw("LlamaForCausalLM")
    raw["rope_parameters"]["partial_rotary_factor"] = 0.5
    with pytest.raises(UserError, match="partial_rotary_factor"):
        load(tmp_path, raw)


def test_torch_dtype_and_dtype_must_agree(tmp_path):
    raw = family_raw("LlamaForCausalLM")
    raw["torch_dtype"], raw["dtype"] = "bfloat16", "float32"
    with pytest.raises(UserError, match="torch_dtype .* dtype"):
        load(tmp_path, raw)
