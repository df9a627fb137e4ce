"""The model configuration, read from a Hugging Face ``config.json`` into a frozen dataclass.

Only the fields the forward pass needs are kept, already normalised across families and across
config.json generations (``rope_theta`` + ``rope_scaling`` before transformers 5,
``rope_parameters`` after it; ``torch_dtype`` before, ``dtype`` after).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

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
        if path.is_dir():
            path = path / "config.json"
        raw = read_config_json(path)
        return config_from_dict(raw, path)

    @property
    def rope_scaling_dict(self) -> dict | None:
        return dict(self.rope_scaling) if self.rope_scaling is not None else None


def read_config_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"config.json not found: {path}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"invalid JSON in {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise UserError(f"invalid config in {path}: expected a JSON object")
    return raw


def config_from_dict(raw: dict, path: Path) -> ModelConfig:
    """Normalise one config.json dict into a ModelConfig (``path`` is only for messages)."""
    architecture = detect_architecture(raw, path)
    family = ARCHITECTURES[architecture]
    try:
        fields = opt_fields(raw, path) if family == "opt" else llama_fields(raw, architecture, path)
        common = dict(
            architecture=architecture,
            family=family,
            vocab_size=int(raw["vocab_size"]),
            hidden_size=int(raw["hidden_size"]),
            num_layers=int(raw["num_hidden_layers"]),
            num_heads=int(raw["num_attention_heads"]),
            max_positions=int(raw["max_position_embeddings"]),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", family == "opt")),
            bos_token_id=optional_int(raw.get("bos_token_id")),
            eos_token_id=optional_int(raw.get("eos_token_id")),
            torch_dtype=str(raw.get("torch_dtype") or raw.get("dtype") or "float32"),
        )
    except KeyError as exc:
        raise UserError(f"config {path} lacks required field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"config {path} has an invalid value: {exc}") from None
    config = ModelConfig(**common, **fields)
    check_consistent(config, path)
    return config


def detect_architecture(raw: dict, path: Path) -> str:
    archs = raw.get("architectures") or []
    supported = ", ".join(ARCHITECTURES)
    if not isinstance(archs, list) or len(archs) != 1 or archs[0] not in ARCHITECTURES:
        raise UserError(
            f"unsupported architecture {archs!r} in {path}; supported: {supported}")
    return archs[0]


def optional_int(value) -> int | None:
    if isinstance(value, list):  # e.g. Llama 3.1 lists several eos ids; keep the first
        value = value[0] if value else None
    return None if value is None else int(value)


def llama_fields(raw: dict, architecture: str, path: Path) -> dict:
    """Fields of the Llama family (Llama, Mistral, Qwen2): RMSNorm, RoPE, SwiGLU, GQA."""
    if raw.get("hidden_act", "silu") != "silu":
        raise UserError(f"unsupported hidden_act {raw.get('hidden_act')!r} in {path} (only silu)")
    n_heads = int(raw["num_attention_heads"])
    head_dim = raw.get("head_dim") or int(raw["hidden_size"]) // n_heads
    rope_theta, rope_scaling = rope_settings(raw, path)
    is_qwen2 = architecture == "Qwen2ForCausalLM"
    return dict(
        intermediate_size=int(raw["intermediate_size"]),
        num_kv_heads=int(raw.get("num_key_value_heads") or n_heads),
        head_dim=int(head_dim),
        norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
        rope_theta=rope_theta,
        rope_scaling=rope_scaling,
        attention_bias=True if is_qwen2 else bool(raw.get("attention_bias", False)),
        mlp_bias=bool(raw.get("mlp_bias", False)),
        do_layer_norm_before=True,
        word_embed_proj_dim=int(raw["hidden_size"]),
        sliding_window=sliding_window(raw, architecture, path),
    )


def rope_settings(raw: dict, path: Path) -> tuple[float, tuple | None]:
    """(theta, llama3 scaling) from either config.json generation."""
    params = raw.get("rope_parameters")
    if isinstance(params, dict) and "rope_theta" in params:
        theta = float(params["rope_theta"])
        scaling = params
    else:
        theta = float(raw.get("rope_theta", 10000.0))
        scaling = raw.get("rope_scaling") or params
    rope_type = (scaling or {}).get("rope_type") or (scaling or {}).get("type") or "default"
    if rope_type == "default":
        return theta, None
    if rope_type != "llama3":
        raise UserError(
            f"unsupported rope scaling {rope_type!r} in {path}; supported: default, llama3")
    missing = [k for k in LLAMA3_ROPE_KEYS if k not in scaling]
    if missing:
        raise UserError(f"llama3 rope scaling in {path} lacks {', '.join(missing)}")
    return theta, tuple(sorted((k, float(scaling[k])) for k in LLAMA3_ROPE_KEYS))


def sliding_window(raw: dict, architecture: str, path: Path) -> int | None:
    window = raw.get("sliding_window")
    if architecture == "MistralForCausalLM":
        return None if window is None else int(window)
    if architecture == "Qwen2ForCausalLM" and raw.get("use_sliding_window"):
        raise UserError(f"Qwen2 sliding-window attention (use_sliding_window) is not supported: {path}")
    return None


def opt_fields(raw: dict, path: Path) -> dict:
    """Fields of OPT: LayerNorm, learned positions, ReLU MLP, biases."""
    act = raw.get("activation_function", "relu")
    if act != "relu":
        raise UserError(f"unsupported OPT activation_function {act!r} in {path} (only relu)")
    if not raw.get("layer_norm_elementwise_affine", True):
        raise UserError(f"OPT without LayerNorm weights (layer_norm_elementwise_affine) is not supported: {path}")
    if raw.get("_remove_final_layer_norm", False):
        raise UserError(f"OPT with _remove_final_layer_norm is not supported: {path}")
    n_heads = int(raw["num_attention_heads"])
    hidden = int(raw["hidden_size"])
    bias = bool(raw.get("enable_bias", True))
    return dict(
        intermediate_size=int(raw["ffn_dim"]),
        num_kv_heads=n_heads,
        head_dim=hidden // n_heads,
        norm_eps=1e-5,  # torch.nn.LayerNorm's default, which OPT uses
        rope_theta=0.0,
        rope_scaling=None,
        attention_bias=bias,
        mlp_bias=bias,
        do_layer_norm_before=bool(raw.get("do_layer_norm_before", True)),
        word_embed_proj_dim=int(raw.get("word_embed_proj_dim") or hidden),
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
