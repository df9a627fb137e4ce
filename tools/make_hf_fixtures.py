"""Build the tiny Hugging Face parity fixtures under data/fixtures/ (developer tool, run once).

Needs torch and transformers; the package and its tests never import either. For each fixture
this script builds a tiny randomly initialised model of one supported family, saves it with
``save_pretrained`` (safetensors), and stores transformers' float32 logits on fixed token ids as
``logits.npz`` (keys ``tokens`` [B, L] int64 and ``logits`` [B, L, V] float32).

For 16-bit checkpoints the float32 model's weights are first rounded to the 16-bit type and back,
so the stored logits are exactly what a float32 computation on the saved weights gives.

    python tools/make_hf_fixtures.py                 # all fixtures
    python tools/make_hf_fixtures.py tiny-llama      # some of them
    python tools/make_hf_fixtures.py --demo          # logits of the demo model (needs it cached)
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "data" / "fixtures"
TOKENS_SHAPE = (2, 16)  # [B, L] of the parity token ids

LLAMA_BASE = dict(
    vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=1, eos_token_id=2,
)
OPT_BASE = dict(
    vocab_size=256, hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
    max_position_embeddings=256, word_embed_proj_dim=64, do_layer_norm_before=True,
    bos_token_id=2, eos_token_id=2, pad_token_id=1, dropout=0.0, attention_dropout=0.0,
)

# name -> (config class, config kwargs, checkpoint dtype, save options)
FIXTURE_SPECS = {
    # "the tiny llama" other engineers use in pipeline and end-to-end tests (SmolLM-like: tied).
    "tiny-llama": ("LlamaConfig", dict(LLAMA_BASE, tie_word_embeddings=True), "float32", {}),
    "tiny-opt": ("OPTConfig", dict(OPT_BASE), "float32", {}),
    "llama-untied": (
        "LlamaConfig", dict(LLAMA_BASE, tie_word_embeddings=False, num_key_value_heads=4,
                            intermediate_size=96), "float32", {}),
    "llama3-rope": (
        "LlamaConfig", dict(LLAMA_BASE, num_hidden_layers=3, rope_theta=500000.0,
                            rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 8}),
        "float32", {"legacy_rope_config": True}),
    "llama-bf16": ("LlamaConfig", dict(LLAMA_BASE, tie_word_embeddings=False), "bfloat16", {}),
    "llama-f16-sharded": (
        "LlamaConfig", dict(LLAMA_BASE, tie_word_embeddings=False), "float16",
        {"max_shard_size": "60KB"}),
    "mistral": (
        "MistralConfig", dict(LLAMA_BASE, sliding_window=None, tie_word_embeddings=False),
        "float32", {}),
    "mistral-swa": (
        "MistralConfig", dict(LLAMA_BASE, sliding_window=6, tie_word_embeddings=False),
        "float32", {}),
    "qwen2": (
        "Qwen2Config", dict(LLAMA_BASE, num_attention_heads=4, num_key_value_heads=1,
                            rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                            use_sliding_window=False), "float32", {}),
    "opt-postln-proj": (
        "OPTConfig", dict(OPT_BASE, do_layer_norm_before=False, word_embed_proj_dim=32,
                          num_hidden_layers=3), "float32", {}),
}

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what ByteLevel pre-tokenising uses)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def byte_tokenizer() -> Tokenizer:
    """Byte-level BPE with no merges: token id == byte value, so any text tokenises."""
    vocab = {ch: b for b, ch in bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def fixture_tokens(vocab_size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab_size, size=TOKENS_SHAPE, dtype=np.int64)  # [B, L]


def randomise_(model: torch.nn.Module, seed: int) -> None:
    """Give every parameter a visible random value (HF init leaves norms at 1 and biases at 0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "layer_norm.weight" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=gen))


def make_config(cls_name: str, kwargs: dict):
    cfg = getattr(transformers, cls_name)(**kwargs)
    cfg._attn_implementation = "eager"
    return cfg


def legacy_rope_config(config_path: Path) -> None:
    """Rewrite config.json in the pre-v5 form (top-level rope_theta + rope_scaling)."""
    cfg = json.loads(config_path.read_text())
    params = cfg.pop("rope_parameters")
    cfg["rope_theta"] = params.pop("rope_theta")
    cfg["rope_scaling"] = params if params.get("rope_type", "default") != "default" else None
    config_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def build_fixture(name: str, seed: int) -> None:
    cls_name, kwargs, dtype, options = FIXTURE_SPECS[name]
    torch.manual_seed(seed)
    config = make_config(cls_name, kwargs)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    randomise_(model, seed)
    model.eval()
    # Round the parameters (not buffers such as RoPE's inv_freq) to the checkpoint dtype, then
    # compute the reference logits in float32.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(TORCH_DTYPES[dtype]).to(torch.float32))
    tokens = fixture_tokens(config.vocab_size, seed)
    with torch.no_grad():
        logits = model(torch.from_numpy(tokens)).logits.numpy().astype(np.float32)  # [B, L, V]
    out = FIXTURES / name
    if out.exists():
        shutil.rmtree(out)
    model = model.to(TORCH_DTYPES[dtype])
    save_kwargs = {}
    if "max_shard_size" in options:
        save_kwargs["max_shard_size"] = options["max_shard_size"]
    model.save_pretrained(out, **save_kwargs)
    gen_cfg = out / "generation_config.json"
    if gen_cfg.exists():
        gen_cfg.unlink()
    if options.get("legacy_rope_config"):
        legacy_rope_config(out / "config.json")
    if config.vocab_size >= 256:
        byte_tokenizer().save(str(out / "tokenizer.json"))
    np.savez_compressed(out / "logits.npz", tokens=tokens, logits=logits)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(f"{name}: {cls_name} {dtype}, logits {logits.shape}, {size / 1024:.0f} KiB")


def build_demo_fixture() -> None:
    """Logits of the demo model (SmolLM2-135M) on fixed tokens, so a slow test needs no torch."""
    from dsnot_ref.demo_model import fetch_demo_model

    model_dir = fetch_demo_model()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, model.config.vocab_size, size=(1, 32), dtype=np.int64)
    with torch.no_grad():
        logits = model(torch.from_numpy(tokens)).logits.numpy().astype(np.float32)
    # The full [1, 32, 49152] logits are ~6 MB; keep every position's top-16 entries and 256
    # fixed random vocabulary columns, enough to compare the two forward passes.
    top = np.argsort(-logits[0], axis=-1, kind="stable")[:, :16]  # [L, 16]
    sample_ids = np.sort(rng.choice(model.config.vocab_size, size=256, replace=False))
    out = FIXTURES / "demo-logits.npz"
    np.savez_compressed(out, tokens=tokens, top_ids=top.astype(np.int64),
                        top_logits=np.take_along_axis(logits[0], top, axis=-1),
                        sample_ids=sample_ids.astype(np.int64),
                        sample_logits=logits[0][:, sample_ids])
    print(f"demo: {out} ({out.stat().st_size / 1024:.0f} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"fixtures to build (default all): {', '.join(FIXTURE_SPECS)}")
    parser.add_argument("--demo", action="store_true", help="only the demo-model logits fixture")
    args = parser.parse_args()
    if args.demo:
        build_demo_fixture()
        return
    names = args.names or list(FIXTURE_SPECS)
    for name in names:
        build_fixture(name, seed=list(FIXTURE_SPECS).index(name))


if __name__ == "__main__":
    main()
