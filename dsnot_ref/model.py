"""The decoder-only models dsnot_ref runs: one block function per family, built from ``ops``.

Families: "llama" (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM: RMSNorm, RoPE,
grouped-query attention, SwiGLU) and "opt" (OPTForCausalLM: LayerNorm, learned positions,
ReLU MLP, biases). They differ only in their weight-name maps and their block functions; the
layer-by-layer driver (``forward``) is shared.

Shapes: B sequences, L tokens, D hidden, P OPT word-embedding width, V vocab, H/K heads/KV heads.
Weights are read one layer at a time from a WeightStore, so the whole model is never in memory.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ops
from .backend import array_module, to_device
from .config import ModelConfig
from .errors import UserError
from .weights import FLOAT_CODES, WeightStore

LLAMA_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
OPT_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
               "fc1", "fc2")


@dataclass(frozen=True)
class Model:
    config: ModelConfig
    store: object        # WeightStore or anything with its interface (e.g. OverlayStore)
    path: Path


# ----------------------------------------------------------------------------- weight names

def linear_names(config: ModelConfig) -> list[str]:
    """Layer-relative names of the linear sublayers, in forward order."""
    return list(OPT_LINEARS if config.family == "opt" else LLAMA_LINEARS)


def layer_prefix(config: ModelConfig, i: int) -> str:
    return f"model.decoder.layers.{i}." if config.family == "opt" else f"model.layers.{i}."


def linear_shapes(config: ModelConfig) -> dict[str, tuple[int, int]]:
    """Linear sublayer name -> weight shape [R, C]."""
    d, f = config.hidden_size, config.intermediate_size
    q, kv = config.num_heads * config.head_dim, config.num_kv_heads * config.head_dim
    if config.family == "opt":
        return {"self_attn.q_proj": (d, d), "self_attn.k_proj": (d, d),
                "self_attn.v_proj": (d, d), "self_attn.out_proj": (d, d),
                "fc1": (f, d), "fc2": (d, f)}
    return {"self_attn.q_proj": (q, d), "self_attn.k_proj": (kv, d), "self_attn.v_proj": (kv, d),
            "self_attn.o_proj": (d, q), "mlp.gate_proj": (f, d), "mlp.up_proj": (f, d),
            "mlp.down_proj": (d, f)}


def has_bias(config: ModelConfig, linear: str) -> bool:
    if linear.startswith("self_attn."):
        if config.architecture == "Qwen2ForCausalLM":  # Qwen2: q/k/v biased, o not
            return linear != "self_attn.o_proj"
        return config.attention_bias
    return config.mlp_bias


def layer_weight_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every layer-relative weight name -> shape."""
    d = config.hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    for name, shape in linear_shapes(config).items():
        shapes[name + ".weight"] = shape
        if has_bias(config, name):
            shapes[name + ".bias"] = (shape[0],)
    if config.family == "opt":
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            shapes[norm + ".weight"] = (d,)
            shapes[norm + ".bias"] = (d,)
    else:
        shapes["input_layernorm.weight"] = (d,)
        shapes["post_attention_layernorm.weight"] = (d,)
    return shapes


def global_weight_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Weights outside the decoder layers (embeddings, final norm, projections, LM head)."""
    d, v = config.hidden_size, config.vocab_size
    if config.family == "llama":
        shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
        if not config.tie_word_embeddings:
            shapes["lm_head.weight"] = (v, d)
        return shapes
    p = config.word_embed_proj_dim
    shapes = {"model.decoder.embed_tokens.weight": (v, p),
              "model.decoder.embed_positions.weight": (config.max_positions + 2, d)}
    if config.do_layer_norm_before:
        shapes["model.decoder.final_layer_norm.weight"] = (d,)
        shapes["model.decoder.final_layer_norm.bias"] = (d,)
    if p != d:
        shapes["model.decoder.project_in.weight"] = (d, p)
        shapes["model.decoder.project_out.weight"] = (p, d)
    if not config.tie_word_embeddings:
        shapes["lm_head.weight"] = (v, p)
    return shapes


def expected_weights(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every full weight name the forward pass reads -> its shape."""
    shapes = dict(global_weight_shapes(config))
    per_layer = layer_weight_shapes(config)
    for i in range(config.num_layers):
        prefix = layer_prefix(config, i)
        shapes.update({prefix + name: shape for name, shape in per_layer.items()})
    return shapes


# ----------------------------------------------------------------------------- loading

def load_model(model_dir: str | os.PathLike, store=None) -> Model:
    """Read config.json and check every weight's name, shape and dtype from the headers.

    No tensor data is read here; a missing key or a wrong shape is a UserError naming the
    file and the key. ``store`` replaces the directory's own weights (e.g. an OverlayStore).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"model directory not found: {model_dir}")
    config = ModelConfig.from_file(model_dir)  # DIR/config.json, which may not link out of DIR
    store = WeightStore(model_dir) if store is None else store
    check_weights(config, store)
    return Model(config=config, store=store, path=model_dir)


def check_weights(config: ModelConfig, store) -> None:
    source = getattr(store, "source", None) or getattr(store, "model_dir", "the weight store")
    for name, shape in expected_weights(config).items():
        if name not in store:
            raise UserError(f"weight {name!r} missing from {source} ({config.architecture})")
        found = tuple(store.shape(name))
        if found != shape:
            raise UserError(f"weight {name!r} in {store.file_of(name) or source} has shape "
                            f"{list(found)}, expected {list(shape)}")
        if store.dtype(name) not in FLOAT_CODES:
            raise UserError(f"weight {name!r} in {store.file_of(name) or source} has dtype "
                            f"{store.dtype(name)}, expected a float type")


def work_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise UserError(f"unsupported compute dtype {dtype}; choose float32 or float64")
    return dtype


def load_layer(model: Model, i: int, dtype=np.float32, xp=np) -> dict:
    """All weights of decoder layer i, layer-relative names ("self_attn.q_proj.weight", ...)."""
    dtype = work_dtype(dtype)
    prefix = layer_prefix(model.config, i)
    return {name: to_device(model.store.get(prefix + name, dtype), xp)
            for name in layer_weight_shapes(model.config)}


def load_globals(model: Model, dtype=np.float32, xp=np) -> dict:
    """Embedding, final-norm, projection and LM-head weights, full names; the tied head is
    stored once under the embedding's name."""
    dtype = work_dtype(dtype)
    return {name: to_device(model.store.get(name, dtype), xp)
            for name in global_weight_shapes(model.config)}


# ----------------------------------------------------------------------------- blocks

@functools.lru_cache(maxsize=16)
def cached_rope_tables(config: ModelConfig, seq_len: int, dtype_name: str):
    return ops.rope_tables(config, seq_len, np.dtype(dtype_name))


def block_forward(config: ModelConfig, layer: dict, x, capture=None, output: bool = True):
    """One decoder layer.   x [B, L, D] -> [B, L, D]

    ``capture(name, x_in)`` is called with the input [B, L, C] of every linear sublayer (names
    from ``linear_names``); q, k and v share one input and each gets its own call.
    ``output=False`` stops once the last linear's input is captured and returns None: the
    statistics pass discards the dense layer's output, so it skips the last projection.
    """
    if config.family == "opt":
        return opt_block(config, layer, x, capture, output)
    return llama_block(config, layer, x, capture, output)


def attention(config: ModelConfig, layer: dict, h, capture, out_name: str, rope):
    """Multi-head attention sublayer on normalised input h [B, L, D] -> [B, L, D]."""
    names = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
    if capture is not None:
        for name in names:
            capture(name, h)
    q, k, v = (ops.linear(h, layer[n + ".weight"], layer.get(n + ".bias")) for n in names)
    q = ops.split_heads(q, config.num_heads)       # [B, H, L, Dh]
    k = ops.split_heads(k, config.num_kv_heads)    # [B, K, L, Dh]
    v = ops.split_heads(v, config.num_kv_heads)
    if rope is not None:
        cos, sin = rope
        q, k = ops.apply_rope(q, cos, sin), ops.apply_rope(k, cos, sin)
    window = config.sliding_window
    attn = ops.merge_heads(ops.causal_attention(q, k, v, window))  # [B, L, H·Dh]
    if capture is not None:
        capture(out_name, attn)
    return ops.linear(attn, layer[out_name + ".weight"], layer.get(out_name + ".bias"))


def llama_block(config: ModelConfig, layer: dict, x, capture=None, output: bool = True):
    """Pre-norm residual block: x + attn(rms(x)), then + swiglu(rms(·)).   [B, L, D]"""
    xp = array_module(x)
    cos, sin = cached_rope_tables(config, x.shape[1], x.dtype.name)
    rope = (to_device(cos, xp), to_device(sin, xp))
    h = ops.rms_norm(x, layer["input_layernorm.weight"], config.norm_eps)
    x = x + attention(config, layer, h, capture, "self_attn.o_proj", rope)
    h = ops.rms_norm(x, layer["post_attention_layernorm.weight"], config.norm_eps)
    mlp = ops.swiglu_mlp(h, layer["mlp.gate_proj.weight"], layer["mlp.up_proj.weight"],
                         layer["mlp.down_proj.weight"], layer.get("mlp.gate_proj.bias"),
                         layer.get("mlp.up_proj.bias"), layer.get("mlp.down_proj.bias"),
                         capture=capture, output=output)
    return x + mlp if output else None


def opt_block(config: ModelConfig, layer: dict, x, capture=None, output: bool = True):
    """OPT block: LayerNorm before (do_layer_norm_before) or after each residual sublayer."""
    def norm(name, h):
        return ops.layer_norm(h, layer[name + ".weight"], layer[name + ".bias"], config.norm_eps)

    pre = config.do_layer_norm_before
    h = norm("self_attn_layer_norm", x) if pre else x
    x = x + attention(config, layer, h, capture, "self_attn.out_proj", rope=None)
    if not pre:
        x = norm("self_attn_layer_norm", x)
    h = norm("final_layer_norm", x) if pre else x
    mlp = ops.relu_mlp(h, layer["fc1.weight"], layer["fc2.weight"], layer.get("fc1.bias"),
                       layer.get("fc2.bias"), capture=capture, output=output)
    if not output:
        return None
    x = x + mlp
    if not pre:
        x = norm("final_layer_norm", x)
    return x


# ----------------------------------------------------------------------------- ends of the model

def check_tokens(config: ModelConfig, tokens, what: str = "token ids", source=None) -> np.ndarray:
    """Token ids the model can take, as int64 [S, L]; the one check for calibration windows,
    evaluation windows and any forward pass. UserError naming ``what`` and ``source`` for: not
    2-D, not integers, S or L < 1, L above the model's positions, an id outside [0, V)."""
    tokens = np.asarray(tokens)
    where = f" ({source})" if source is not None else ""
    if tokens.ndim != 2:
        raise UserError(f"{what} must be a 2-D [S, L] array, got shape {list(tokens.shape)}{where}")
    if not np.issubdtype(tokens.dtype, np.integer):
        raise UserError(f"{what} must be integers, got dtype {tokens.dtype}{where}")
    n_seq, seq_len = tokens.shape
    if n_seq < 1 or seq_len < 1:
        raise UserError(f"{what} need S >= 1 sequences of L >= 1 tokens, got S={n_seq}, L={seq_len}{where}")
    if seq_len > config.max_positions:
        raise UserError(f"{what}: sequence length {seq_len} exceeds the model's {config.max_positions} "
                        f"positions{where}")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= config.vocab_size:
        bad = low if low < 0 else high
        raise UserError(f"{what}: id {bad} is outside the model's vocabulary [0, {config.vocab_size}){where}")
    return tokens.astype(np.int64, copy=False)


def embed_lookup(config: ModelConfig, rows_of, tokens):
    """Token (and OPT position) embeddings.   tokens [B, L] int -> [B, L, D]

    ``rows_of(name, rows)`` returns rows of a global weight (``rows=None``: all of it), so the
    embedding table can be gathered from disk without being read whole.
    """
    if config.family == "llama":
        return rows_of("model.embed_tokens.weight", tokens)
    x = rows_of("model.decoder.embed_tokens.weight", tokens)                # [B, L, P]
    if config.word_embed_proj_dim != config.hidden_size:
        x = ops.linear(x, rows_of("model.decoder.project_in.weight", None))   # [B, L, D]
    # OPT's learned positions are stored with an offset of 2 (rows 0, 1 were for padding).
    return x + rows_of("model.decoder.embed_positions.weight", slice(2, 2 + tokens.shape[1]))


def embed_with(config: ModelConfig, weights: dict, tokens):
    """embed_lookup on global weights already in memory (see ``load_globals``)."""
    return embed_lookup(config, lambda name, rows: weights[name] if rows is None else weights[name][rows],
                        tokens)


def logits_with(config: ModelConfig, weights: dict, x):
    """Final norm, OPT's project_out, then the LM head.   x [B, L, D] -> [B, L, V]"""
    if config.family == "llama":
        x = ops.rms_norm(x, weights["model.norm.weight"], config.norm_eps)
        head = weights.get("lm_head.weight", weights["model.embed_tokens.weight"])
        return ops.linear(x, head)
    if "model.decoder.final_layer_norm.weight" in weights:
        x = ops.layer_norm(x, weights["model.decoder.final_layer_norm.weight"],
                           weights["model.decoder.final_layer_norm.bias"], config.norm_eps)
    if "model.decoder.project_out.weight" in weights:
        x = ops.linear(x, weights["model.decoder.project_out.weight"])  # [B, L, P]
    head = weights.get("lm_head.weight", weights["model.decoder.embed_tokens.weight"])
    return ops.linear(x, head)


def embed(model: Model, tokens, dtype=np.float32, xp=np):
    """tokens [B, L] -> hidden states [B, L, D] entering layer 0."""
    check_tokens(model.config, tokens, source=model.path)
    dtype, store = work_dtype(dtype), model.store

    def rows_of(name, rows):
        if rows is None:
            return store.get(name, dtype)
        if hasattr(store, "get_rows"):
            return store.get_rows(name, rows, dtype)
        return store.get(name, dtype)[rows]

    return to_device(embed_lookup(model.config, rows_of, np.asarray(tokens)), xp)


def final_logits(model: Model, x, dtype=np.float32, xp=np):
    """Hidden states after the last layer [B, L, D] -> logits [B, L, V]."""
    return logits_with(model.config, load_globals(model, dtype, xp), x)


def forward(model: Model, tokens, dtype=np.float32, xp=np):
    """Logits of the whole model, one layer's weights in memory at a time.  [B, L] -> [B, L, V]"""
    dtype = work_dtype(dtype)
    check_tokens(model.config, tokens, source=model.path)
    glob = load_globals(model, dtype, xp)
    x = embed_with(model.config, glob, to_device(np.asarray(tokens), xp))  # [B, L, D]
    for i in range(model.config.num_layers):
        x = block_forward(model.config, load_layer(model, i, dtype, xp), x)
    return logits_with(model.config, glob, x)
