"""Every config.json key of every supported family is honoured or refused, never ignored.

The keys are those transformers' own configuration classes (LlamaConfig, MistralConfig,
Qwen2Config, OPTConfig and the generic configuration class) write, recorded per transformers
version in data/transformers_config_keys.json by tools/snapshot_config_keys.py (run by hand in a
venv with transformers; these tests never import it): the test fails when a key recorded there
is missing from ``config.CONFIG_KEYS``. Then, for each key of each family:

- "read": a different value changes the ModelConfig, or is refused in one line naming the key
  and the file;
- "no effect" (dropouts, caches, initialisation, generation settings, keys the family's model
  never reads): a different value leaves it unchanged.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dsnot_ref import config as config_lib
from dsnot_ref.config import ModelConfig
from dsnot_ref.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "data" / "fixtures"
SNAPSHOT = json.loads((ROOT / "data" / "transformers_config_keys.json").read_text())
FIXTURE_OF = {"LlamaForCausalLM": "tiny-llama", "MistralForCausalLM": "mistral-swa",
              "Qwen2ForCausalLM": "qwen2", "OPTForCausalLM": "tiny-opt"}
# Qwen2's window keys act together: the base each one's change is tried from, so that the change
# alone turns sliding-window layers on (layer_types absent: Qwen2Config derives it from them)
QWEN2_WINDOW_BASE = {
    "use_sliding_window": {"use_sliding_window": False, "sliding_window": 4, "max_window_layers": 1},
    "sliding_window": {"use_sliding_window": True, "sliding_window": None, "max_window_layers": 1},
    "max_window_layers": {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 2},
}


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
        "sliding_window": num(64) // 2 or 1, "use_sliding_window": True, "max_window_layers": 0,
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


def test_the_snapshot_covers_both_config_json_generations():
    """config.json files in use were written before transformers 5 (rope_theta, rope_scaling,
    torch_dtype) and after it (rope_parameters, dtype): the snapshot has a version of each."""
    majors = {int(version.split(".")[0]) for version in SNAPSHOT}
    assert {4, 5} <= majors
    for recorded in SNAPSHOT.values():
        assert sorted(recorded["families"]) == sorted(config_lib.ARCHITECTURES)
        assert "vocab_size" in recorded["families"]["LlamaForCausalLM"] and "model_type" in recorded["generic"]


@pytest.mark.parametrize("version", sorted(SNAPSHOT))
@pytest.mark.parametrize("architecture", sorted(config_lib.ARCHITECTURES))
def test_every_key_of_the_family_is_classified(version, architecture):
    table = config_lib.CONFIG_KEYS[architecture]
    known = set(table) | set(config_lib.REFUSED_UNLESS)
    recorded = SNAPSHOT[version]
    expected = set(recorded["families"][architecture]) | set(recorded["generic"]) | set(family_raw(architecture))
    assert sorted(expected - known) == []


def cases():
    for architecture in sorted(config_lib.ARCHITECTURES):
        for key, how in config_lib.CONFIG_KEYS[architecture].items():
            yield pytest.param(architecture, key, how, id=f"{architecture}-{key}")


@pytest.mark.parametrize("architecture, key, how", list(cases()))
def test_each_key_is_honoured_or_refused(tmp_path, architecture, key, how):
    raw = family_raw(architecture)
    if architecture == "Qwen2ForCausalLM" and key in QWEN2_WINDOW_BASE:
        raw.pop("layer_types")
        raw.update(QWEN2_WINDOW_BASE[key])
    base = load(tmp_path, raw)
    edited = copy.deepcopy(raw)
    if how == config_lib.NO_EFFECT:
        edited[key] = 0.5 if key.endswith("dropout") or key == "layerdrop" else 7
        assert load(tmp_path, edited) == base
        return
    assert how == config_lib.READ
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
                                        ("partial_rotary_factor", 0.5)])
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


def test_mistral_without_sliding_window_gets_transformers_default(tmp_path):
    """MistralConfig's sliding_window defaults to 4096 when config.json lacks the key; null is no window."""
    raw = family_raw("MistralForCausalLM")
    raw.pop("sliding_window")
    assert load(tmp_path, raw).sliding_window == config_lib.DEFAULT_SLIDING_WINDOW == 4096
    raw["sliding_window"] = None
    assert load(tmp_path, raw).sliding_window is None


def test_qwen2_layer_types_as_transformers_derives_them(tmp_path):
    raw = family_raw("Qwen2ForCausalLM")
    base = load(tmp_path, raw)
    # explicit full-attention layer_types win over use_sliding_window: accepted, the same model
    raw.update(use_sliding_window=True, sliding_window=4, max_window_layers=0)
    assert load(tmp_path, raw) == base
    raw.pop("layer_types")
    with pytest.raises(UserError, match=r"layers \[0, 1\] sliding-window"):
        load(tmp_path, raw)
    raw["max_window_layers"] = 1  # sliding from layer 1 on
    with pytest.raises(UserError, match=r"layers \[1\] sliding-window"):
        load(tmp_path, raw)
    raw.pop("max_window_layers")  # Qwen2Config's default 28 is past the fixture's 2 layers
    assert load(tmp_path, raw) == base
    raw.pop("sliding_window")     # absent: Qwen2Config's default window 4096, still from layer 28
    assert load(tmp_path, raw) == base


@pytest.mark.parametrize("architecture, key", [("MistralForCausalLM", "attention_bias"),
                                               ("Qwen2ForCausalLM", "attention_bias"),
                                               ("Qwen2ForCausalLM", "mlp_bias")])
def test_bias_switches_the_family_does_not_read_are_ignored(tmp_path, architecture, key):
    """transformers builds Mistral without biases and Qwen2 with q/k/v biases whatever these say."""
    raw = family_raw(architecture)
    base = load(tmp_path, raw)
    assert (base.attention_bias, base.mlp_bias) == config_lib.ARCHITECTURE_BIASES[architecture]
    for value in (True, False):
        raw[key] = value
        assert load(tmp_path, raw) == base


def test_remove_final_layer_norm_matters_only_before_layers(tmp_path):
    """transformers builds no final LayerNorm for a post-LN OPT, whatever _remove_final_layer_norm says."""
    raw = json.loads((FIXTURES / "opt-postln-proj" / "config.json").read_text())
    base = load(tmp_path, raw)
    raw["_remove_final_layer_norm"] = True
    assert load(tmp_path, raw) == base
    raw["do_layer_norm_before"] = True
    with pytest.raises(UserError, match="_remove_final_layer_norm"):
        load(tmp_path, raw)
