"""The model configuration, read from a Hugging Face ``config.json`` into a frozen dataclass.

Only the fields the forward pass needs are kept, already normalised across families and across
config.json generations (``rope_theta`` + ``rope_scaling`` before transformers 5,
``rope_parameters`` after it; ``torch_dtype`` before, ``dtype`` after).

What is read: ``config.json`` alone (generation_config.json does not change the forward pass).
Every key a supported family's transformers config defines is listed in ``CONFIG_KEYS`` as read,
of no effect, or fixed by the architecture, and a value the forward pass would follow but this
package does not is refused naming the key (docs/models.md).
"""

from __future__ import annotations

import os
import reprlib
from dataclasses import dataclass
from pathlib import Path

from . import validate
from .errors import UserError

# architecture name -> family (one block function per family in model.py)
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "llama",
    "OPTForCausalLM": "opt",
}
LLAMA3_ROPE_KEYS = ("factor", "low_freq_factor", "high_freq_factor",
                    "original_max_position_embeddings")
# transformers' model_type -> the architecture its Auto classes build (they go by model_type,
# not by "architectures"; a config naming two different models is refused)
MODEL_TYPES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
               "opt": "OPTForCausalLM"}

# --- every config.json key of a supported family, and what becomes of it ----------------------
# Checked against transformers' own configuration classes and modelling code; the keys their
# configurations write, per transformers version, are in data/transformers_config_keys.json
# (tools/snapshot_config_keys.py), and tests/test_config_keys.py asserts each is listed here.
# READ: config_from_dict reads it and the forward pass follows it (tests/test_config_keys.py
# checks that changing it changes the ModelConfig, or is refused naming it). NO_EFFECT:
# transformers' forward pass in evaluation does not depend on it (dropout and layer drop act only
# in training; caches, output switches, generation settings and initialisation do not change the
# logits), or the family's transformers model never reads it (Mistral's and Qwen2's projection
# biases are built into the architecture, ARCHITECTURE_BIASES, whatever attention_bias says).
# A key in neither table is read by neither transformers' model nor ours.
READ, NO_EFFECT = "read", "no effect"
COMMON_READ = ("architectures", "model_type", "vocab_size", "hidden_size", "num_hidden_layers",
               "num_attention_heads", "max_position_embeddings", "tie_word_embeddings", "bos_token_id",
               "eos_token_id", "torch_dtype", "dtype")
# generation settings (transformers 4 wrote them into config.json; generate() alone reads them)
GENERATION_KEYS = ("max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups",
                   "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty",
                   "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
                   "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
                   "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
                   "suppress_tokens", "begin_suppress_tokens", "decoder_start_token_id")
COMMON_NO_EFFECT = ("use_cache", "pad_token_id", "sep_token_id", "initializer_range", "init_std",
                    "attention_dropout", "transformers_version", "_name_or_path", "output_attentions",
                    "output_hidden_states", "return_dict", "use_bfloat16", "_attn_implementation", "_commit_hash",
                    "torchscript", "tf_legacy_loss", "is_decoder", "is_encoder_decoder", "id2label", "label2id",
                    "problem_type", "tokenizer_class", "task_specific_params", "finetuning_task", "prefix",
                    # encoder-decoder and feed-forward chunking switches no decoder-only family reads
                    "add_cross_attention", "cross_attention_hidden_size", "tie_encoder_decoder",
                    "chunk_size_feed_forward") + GENERATION_KEYS
LLAMA_READ = ("intermediate_size", "num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps",
              "rope_theta", "rope_scaling", "rope_parameters", "partial_rotary_factor")
CONFIG_KEYS: dict[str, dict[str, str]] = {
    "LlamaForCausalLM": {
        **dict.fromkeys(COMMON_READ + LLAMA_READ + ("attention_bias", "mlp_bias"), READ),
        # pretraining_tp > 1 split the projections into slices summed back (transformers 4): the same product
        **dict.fromkeys(COMMON_NO_EFFECT + ("pretraining_tp",), NO_EFFECT),
    },
    "MistralForCausalLM": {
        **dict.fromkeys(COMMON_READ + LLAMA_READ + ("sliding_window",), READ),
        **dict.fromkeys(COMMON_NO_EFFECT + ("attention_bias", "mlp_bias"), NO_EFFECT),
    },
    "Qwen2ForCausalLM": {
        # sliding_window and max_window_layers act only with use_sliding_window (qwen2_layer_types)
        **dict.fromkeys(COMMON_READ + LLAMA_READ + ("use_sliding_window", "sliding_window", "max_window_layers",
                                                    "layer_types"), READ),
        **dict.fromkeys(COMMON_NO_EFFECT + ("attention_bias", "mlp_bias"), NO_EFFECT),
    },
    "OPTForCausalLM": {
        **dict.fromkeys(COMMON_READ + ("ffn_dim", "activation_function", "do_layer_norm_before",
                                       "_remove_final_layer_norm", "word_embed_proj_dim", "enable_bias",
                                       "layer_norm_elementwise_affine"), READ),
        # OPT's heads are always hidden_size / num_attention_heads wide: its model never reads head_dim
        **dict.fromkeys(COMMON_NO_EFFECT + ("dropout", "activation_dropout", "layerdrop", "head_dim"), NO_EFFECT),
    },
}
# (attention_bias, mlp_bias) of the families whose transformers model hard-codes them: Mistral
# has no biases, Qwen2 has q/k/v biases (none in o_proj or the MLP)
ARCHITECTURE_BIASES = {"MistralForCausalLM": (False, False), "Qwen2ForCausalLM": (True, False)}
# keys any PreTrainedModel acts on whatever the family: refused unless absent or this value
# (partial_rotary_factor: transformers 4 applies it to default RoPE, transformers 5 to llama3 RoPE)
REFUSED_UNLESS = {"pruned_heads": {}, "quantization_config": None, "partial_rotary_factor": 1.0}
# transformers' default sliding_window for Mistral and Qwen2 when config.json lacks the key
# (a null value means no window)
DEFAULT_SLIDING_WINDOW = 4096


@dataclass(frozen=True)
class ModelConfig:
    architecture: str            # "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "OPTForCausalLM"
    family: str                  # "llama" (Llama, Mistral, Qwen2) or "opt"
    vocab_size: int              # V
    hidden_size: int             # D
    intermediate_size: int       # F
    num_layers: int
    num_heads: int               # H
    num_kv_heads: int            # K (H for OPT)
    head_dim: int                # Dh
    max_positions: int
    norm_eps: float
    rope_theta: float            # unused by OPT
    rope_scaling: tuple | None   # sorted (key, value) pairs of llama3 scaling, else None
    tie_word_embeddings: bool
    attention_bias: bool         # q/k/v (and o, except Qwen2) have biases
    mlp_bias: bool               # gate/up/down (Llama) or fc1/fc2 (OPT) have biases
    do_layer_norm_before: bool   # OPT: pre-LN (True) or post-LN (False); True for llama
    word_embed_proj_dim: int     # OPT: embedding width (project_in/out when != D); D for llama
    bos_token_id: int | None
    eos_token_id: int | None
    torch_dtype: str             # dtype of the checkpoint ("float32", "bfloat16", ...), used when saving
    sliding_window: int | None = None   # Mistral: attend to the last `sliding_window` keys only

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> ModelConfig:
        """Read ``config.json`` (or ``DIR/config.json``); UserError on anything unsupported."""
        path = Path(path)
        if path.is_dir() and path.name != "config.json":  # a directory named config.json is refused
            if (path / "config.json").exists() or (path / "config.json").is_symlink():
                validate.model_file(path, "config.json", "config")  # no link out of the model
            path = path / "config.json"
        raw = read_config_json(path)
        return config_from_dict(raw, path)

    @property
    def rope_scaling_dict(self) -> dict | None:
        return dict(self.rope_scaling) if self.rope_scaling is not None else None


def read_config_json(path: Path) -> dict:
    """config.json as a dict; refuses a missing or non-regular file, one over 64 MiB, bad
    UTF-8 or JSON, NaN/Infinity literals, nesting deeper than 64, anything but an object."""
    if not path.exists():
        raise UserError(f"config.json not found: {path}")
    raw = validate.read_json_file(path, "config")
    return validate.json_object(raw, path, "config")


# field -> (lowest, highest) value a model this package can run may declare
INT_RANGES = {
    "vocab_size": (1, 2**24),
    "hidden_size": (1, 2**17),
    "intermediate_size": (1, 2**20),
    "ffn_dim": (1, 2**20),
    "num_hidden_layers": (1, 1024),
    "num_attention_heads": (1, 2**12),
    "num_key_value_heads": (1, 2**12),
    "head_dim": (1, 2**14),
    "max_position_embeddings": (1, 2**24),
    "word_embed_proj_dim": (1, 2**17),
    "sliding_window": (1, 2**31 - 1),
    "max_window_layers": (0, 1024),
    "bos_token_id": (0, 2**31 - 1),
    "eos_token_id": (0, 2**31 - 1),
}
REQUIRED = object()


def shown(value) -> str:
    """A value for an error message, cut short (never a whole hostile structure)."""
    text = reprlib.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def int_field(raw: dict, key: str, path: Path, default=REQUIRED) -> int:
    """An integer field within INT_RANGES[key]; ``default`` when absent or null."""
    value = raw.get(key)
    if value is None:
        if default is REQUIRED:
            raise UserError(f"config {path} lacks required field {key!r}")
        return default
    low, high = INT_RANGES[key]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserError(f"config {path} has an invalid value: {key} must be an integer in "
                        f"[{low}, {high}], got {shown(value)}")
    return value


def float_field(raw: dict, key: str, path: Path, default: float, low: float, high: float) -> float:
    """A finite number with low < value <= high; ``default`` when absent or null."""
    value = raw.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
        raise UserError(f"config {path} has an invalid value: {key} must be a number in "
                        f"({low:g}, {high:g}], got {shown(value)}")
    return float(value)


def bool_field(raw: dict, key: str, path: Path, default: bool) -> bool:
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise UserError(f"config {path} has an invalid value: {key} must be true or false, got {shown(value)}")
    return value


def str_field(raw: dict, key: str, path: Path, default: str | None) -> str | None:
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > 64:
        raise UserError(f"config {path} has an invalid value: {key} must be a short string, got {shown(value)}")
    return value


def config_from_dict(raw: dict, path: Path) -> ModelConfig:
    """Normalise one config.json dict into a ModelConfig (``path`` is only for messages).

    Every field is checked for type and range (INT_RANGES) before it is used, then the
    combination (check_consistent), then the memory it implies (check_config_memory).
    """
    architecture = detect_architecture(raw, path)
    check_keys(raw, architecture, path)
    family = ARCHITECTURES[architecture]
    fields = opt_fields(raw, path) if family == "opt" else llama_fields(raw, architecture, path)
    common = dict(
        architecture=architecture,
        family=family,
        vocab_size=int_field(raw, "vocab_size", path),
        hidden_size=int_field(raw, "hidden_size", path),
        num_layers=int_field(raw, "num_hidden_layers", path),
        num_heads=int_field(raw, "num_attention_heads", path),
        max_positions=int_field(raw, "max_position_embeddings", path),
        tie_word_embeddings=bool_field(raw, "tie_word_embeddings", path, family == "opt"),
        bos_token_id=token_id(raw, "bos_token_id", path),
        eos_token_id=token_id(raw, "eos_token_id", path),
        torch_dtype=checkpoint_dtype(raw, path),
    )
    config = ModelConfig(**common, **fields)
    check_consistent(config, path)
    check_config_memory(config, path)
    return config


def checkpoint_dtype(raw: dict, path: Path) -> str:
    """``torch_dtype`` (before transformers 5) or ``dtype`` (after); both, they must agree."""
    old, new = str_field(raw, "torch_dtype", path, None), str_field(raw, "dtype", path, None)
    if old is not None and new is not None and old != new:
        raise UserError(f"config {path} has torch_dtype {old!r} and dtype {new!r}; keep one")
    return old or new or "float32"


def detect_architecture(raw: dict, path: Path) -> str:
    archs = raw.get("architectures") or []
    supported = ", ".join(ARCHITECTURES)
    if not isinstance(archs, list) or len(archs) != 1 or not isinstance(archs[0], str) \
            or archs[0] not in ARCHITECTURES:
        raise UserError(
            f"unsupported architecture {shown(archs)} in {path}; supported: {supported}")
    return archs[0]


def check_keys(raw: dict, architecture: str, path: Path) -> None:
    """Refuse a key whose value would change transformers' forward pass in a way this package
    does not follow (CONFIG_KEYS, REFUSED_UNLESS), and a model_type naming another model."""
    model_type = raw.get("model_type")
    if model_type is not None and (not isinstance(model_type, str) or MODEL_TYPES.get(model_type) != architecture):
        raise UserError(f"config {path}: model_type {shown(model_type)} does not match architectures "
                        f"[{architecture!r}] (transformers builds the model from model_type)")
    for key, allowed in REFUSED_UNLESS.items():
        if raw.get(key) is not None and raw[key] != allowed:
            raise UserError(f"config {path}: {key} {shown(raw[key])} is not supported (it changes the forward pass)")


def token_id(raw: dict, key: str, path: Path) -> int | None:
    """A token id, or None; a list (Llama 3.1 lists several eos ids) gives its first."""
    value = raw.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    return int_field({key: value}, key, path, default=None)


def llama_fields(raw: dict, architecture: str, path: Path) -> dict:
    """Fields of the Llama family (Llama, Mistral, Qwen2): RMSNorm, RoPE, SwiGLU, GQA."""
    if raw.get("hidden_act", "silu") != "silu":
        raise UserError(f"unsupported hidden_act {shown(raw.get('hidden_act'))} in {path} (only silu)")
    n_heads = int_field(raw, "num_attention_heads", path)
    hidden = int_field(raw, "hidden_size", path)
    head_dim = int_field(raw, "head_dim", path, default=0) or hidden // n_heads
    rope_theta, rope_scaling = rope_settings(raw, path)
    attention_bias, mlp_bias = biases(raw, architecture, path)
    return dict(
        intermediate_size=int_field(raw, "intermediate_size", path),
        num_kv_heads=int_field(raw, "num_key_value_heads", path, default=n_heads),
        head_dim=head_dim,
        norm_eps=float_field(raw, "rms_norm_eps", path, 1e-6, 0.0, 1.0),
        rope_theta=rope_theta,
        rope_scaling=rope_scaling,
        attention_bias=attention_bias,
        mlp_bias=mlp_bias,
        do_layer_norm_before=True,
        word_embed_proj_dim=hidden,
        sliding_window=sliding_window(raw, architecture, path),
    )


def biases(raw: dict, architecture: str, path: Path) -> tuple[bool, bool]:
    """(attention_bias, mlp_bias): the architecture's own (ARCHITECTURE_BIASES), else read."""
    if architecture in ARCHITECTURE_BIASES:
        return ARCHITECTURE_BIASES[architecture]
    return bool_field(raw, "attention_bias", path, False), bool_field(raw, "mlp_bias", path, False)


def rope_settings(raw: dict, path: Path) -> tuple[float, tuple | None]:
    """(theta, llama3 scaling) from either config.json generation."""
    for key in ("rope_parameters", "rope_scaling"):
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise UserError(f"config {path} has an invalid value: {key} must be an object or null, "
                            f"got {shown(raw[key])}")
    params = raw.get("rope_parameters")
    check_rope_generations_agree(raw, path)
    check_partial_rotary(raw, path)
    if isinstance(params, dict) and "rope_theta" in params:
        theta = float_field(params, "rope_theta", path, 10000.0, 0.0, 1e12)
        scaling = params
    else:
        theta = float_field(raw, "rope_theta", path, 10000.0, 0.0, 1e12)
        scaling = raw.get("rope_scaling") or params
    rope_type = (scaling or {}).get("rope_type") or (scaling or {}).get("type") or "default"
    if rope_type == "default":
        return theta, None
    if rope_type != "llama3":
        raise UserError(
            f"unsupported rope scaling {shown(rope_type)} in {path}; supported: default, llama3")
    missing = [k for k in LLAMA3_ROPE_KEYS if k not in scaling]
    if missing:
        raise UserError(f"llama3 rope scaling in {path} lacks {', '.join(missing)}")
    return theta, tuple(sorted((k, float_field(scaling, k, path, 1.0, 0.0, 2.0**24)) for k in LLAMA3_ROPE_KEYS))


def check_rope_generations_agree(raw: dict, path: Path) -> None:
    """``rope_parameters`` (transformers 5) beside ``rope_scaling`` or ``rope_theta`` (before it):
    which one a transformers version reads differs, so they must say the same thing."""
    params = raw.get("rope_parameters")
    if not isinstance(params, dict):
        return
    legacy = raw.get("rope_scaling")
    if legacy is not None and rope_scaling_part(legacy) != rope_scaling_part(params):
        raise UserError(f"config {path} has rope_scaling {shown(legacy)} beside rope_parameters "
                        f"{shown(params)} and they differ (transformers versions read different ones); keep one")
    theta = raw.get("rope_theta")
    if theta is not None and "rope_theta" in params and theta != params["rope_theta"]:
        raise UserError(f"config {path} has rope_theta {shown(theta)} beside rope_parameters' rope_theta "
                        f"{shown(params['rope_theta'])}; keep one")


def rope_scaling_part(scaling: dict) -> dict:
    """The scaling settings of a rope dict: its type (``rope_type``, or the older ``type``;
    "default" when absent) and every other key but ``rope_theta``."""
    part = {k: v for k, v in scaling.items() if k not in ("rope_theta", "type", "rope_type")}
    return {**part, "rope_type": scaling.get("rope_type") or scaling.get("type") or "default"}


def check_partial_rotary(raw: dict, path: Path) -> None:
    """Partial rotary embeddings (RoPE on a fraction of each head) are not implemented: refused
    at the top level (REFUSED_UNLESS) and inside rope_parameters, where transformers 5 puts it."""
    params = raw.get("rope_parameters")
    value = params.get("partial_rotary_factor") if isinstance(params, dict) else None
    if value is not None and value != 1.0:
        raise UserError(f"config {path}: rope_parameters.partial_rotary_factor {shown(value)} is not supported "
                        "(it changes the forward pass)")


def sliding_window(raw: dict, architecture: str, path: Path) -> int | None:
    """Mistral's window (transformers' default DEFAULT_SLIDING_WINDOW when the key is absent,
    none when null); Qwen2 sliding-window layers are refused (qwen2_layer_types)."""
    if architecture == "MistralForCausalLM":
        if raw.get("sliding_window") is not None and raw["sliding_window"] == 0:
            raise UserError(f"config {path}: sliding_window must be positive, got 0")
        default = DEFAULT_SLIDING_WINDOW if "sliding_window" not in raw else None
        return int_field(raw, "sliding_window", path, default=default)
    if architecture == "Qwen2ForCausalLM":
        sliding = [i for i, kind in enumerate(qwen2_layer_types(raw, path)) if kind != "full_attention"]
        if sliding:
            raise UserError(f"config {path}: Qwen2 sliding-window attention is not supported (use_sliding_window, "
                            f"sliding_window, max_window_layers and layer_types make layers {shown(sliding)} "
                            "sliding-window layers)")
    return None


def qwen2_layer_types(raw: dict, path: Path) -> list:
    """Each layer's attention kind as transformers' Qwen2Config settles it: ``layer_types`` when
    given, else "sliding_attention" from layer ``max_window_layers`` on when ``use_sliding_window``
    is true and ``sliding_window`` not null (absent: DEFAULT_SLIDING_WINDOW), else "full_attention"."""
    layer_types = raw.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list):
            raise UserError(f"config {path} has an invalid value: layer_types must be a list, "
                            f"got {shown(layer_types)}")
        return layer_types
    layers = int_field(raw, "num_hidden_layers", path)
    use_window = bool_field(raw, "use_sliding_window", path, False)
    window = int_field(raw, "sliding_window", path, default=DEFAULT_SLIDING_WINDOW if "sliding_window" not in raw
                       else None)
    first = int_field(raw, "max_window_layers", path, default=28)  # Qwen2Config's default
    return ["sliding_attention" if use_window and window is not None and i >= first else "full_attention"
            for i in range(layers)]


def opt_fields(raw: dict, path: Path) -> dict:
    """Fields of OPT: LayerNorm, learned positions, ReLU MLP, biases."""
    act = raw.get("activation_function", "relu")
    if act != "relu":
        raise UserError(f"unsupported OPT activation_function {shown(act)} in {path} (only relu)")
    if not bool_field(raw, "layer_norm_elementwise_affine", path, True):
        raise UserError(f"OPT without LayerNorm weights (layer_norm_elementwise_affine) is not supported: {path}")
    # transformers drops the final LayerNorm of a pre-LN OPT with _remove_final_layer_norm; a
    # post-LN OPT has none either way
    pre_ln = bool_field(raw, "do_layer_norm_before", path, True)
    if bool_field(raw, "_remove_final_layer_norm", path, False) and pre_ln:
        raise UserError(f"OPT with _remove_final_layer_norm is not supported: {path}")
    n_heads = int_field(raw, "num_attention_heads", path)
    hidden = int_field(raw, "hidden_size", path)
    bias = bool_field(raw, "enable_bias", path, True)
    return dict(
        intermediate_size=int_field(raw, "ffn_dim", path),
        num_kv_heads=n_heads,
        head_dim=hidden // n_heads,
        norm_eps=1e-5,  # torch.nn.LayerNorm's default, which OPT uses
        rope_theta=0.0,
        rope_scaling=None,
        attention_bias=bias,
        mlp_bias=bias,
        do_layer_norm_before=bool_field(raw, "do_layer_norm_before", path, True),
        word_embed_proj_dim=int_field(raw, "word_embed_proj_dim", path, default=0) or hidden,
    )


def check_consistent(config: ModelConfig, path: Path) -> None:
    positive = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                "num_kv_heads", "head_dim", "max_positions")
    for name in positive:
        if getattr(config, name) <= 0:
            raise UserError(f"config {path}: {name} must be positive, got {getattr(config, name)}")
    if config.num_heads % config.num_kv_heads:
        raise UserError(f"config {path}: num_attention_heads {config.num_heads} is not a "
                        f"multiple of num_key_value_heads {config.num_kv_heads}")
    if config.family == "opt" and config.head_dim * config.num_heads != config.hidden_size:
        raise UserError(f"config {path}: hidden_size {config.hidden_size} is not divisible by "
                        f"num_attention_heads {config.num_heads}")
    if config.head_dim % 2 and config.family == "llama":
        raise UserError(f"config {path}: head_dim {config.head_dim} must be even for RoPE")
    if config.sliding_window is not None and config.sliding_window <= 0:
        raise UserError(f"config {path}: sliding_window must be positive, got {config.sliding_window}")


def config_memory_terms(config: ModelConfig, itemsize: int = 4) -> dict[str, int]:
    """Bytes of the largest arrays a config implies, whatever the data: name -> bytes.

    The LM head (or tied embedding) is read whole for the logits; one decoder layer's weights
    are in memory at a time, plus float64 C x C Hessians of its widest input for the statistics.
    """
    d, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
    q = config.num_heads * config.head_dim
    kv = config.num_kv_heads * config.head_dim
    layer = d * (2 * q + 2 * kv) + 3 * d * f
    return {
        f"vocab_size {v} x hidden_size {config.word_embed_proj_dim} (LM head)":
            v * config.word_embed_proj_dim * itemsize,
        f"one layer's weights (hidden_size {d}, intermediate_size {f}, "
        f"heads {config.num_heads} x head_dim {config.head_dim})": layer * itemsize,
        f"intermediate_size {f} (a {f} x {f} float64 Hessian)": f * f * 8,
        f"max_position_embeddings {config.max_positions} x hidden_size {d} (position table)":
            (config.max_positions + 2) * d * itemsize if config.family == "opt" else 0,
    }


def activation_bytes(config: ModelConfig, batch: int, seq_len: int, itemsize: int = 4) -> int:
    """Bytes of one forward chunk of ``batch`` x ``seq_len`` tokens: the residual stream and
    MLP hidden of each token, its logits, and one block of attention scores [B, H, 256, L]
    (ops.attention works on blocks of 256 queries)."""
    d, f = config.hidden_size, config.intermediate_size
    per_token = 6 * d + 3 * f + 3 * config.num_heads * config.head_dim + config.vocab_size
    scores = batch * config.num_heads * min(seq_len, 256) * seq_len
    return (batch * seq_len * per_token + scores) * itemsize


def check_config_memory(config: ModelConfig, path: Path) -> None:
    """Refuse a config whose weights alone would not fit in memory, naming the field and figure."""
    terms = config_memory_terms(config)
    name, need = max(terms.items(), key=lambda kv: kv[1])
    validate.check_memory(sum(terms.values()),
                          f"config {path}: {name} ({validate.format_bytes(need)}, the largest term)")
