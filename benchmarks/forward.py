"""Forward-pass throughput of dsnot_ref's NumPy model, beside the machine's plain matmul speed.

Runs the demo model (SmolLM2-135M) if it is cached, else a random model of the same shape
(30 layers, D 576, 9 heads, 3 KV heads, F 1536, V 49152), on B×L tokens, and prints:
  - tokens/s and GFLOP/s of the compute (layers already in memory; the pipeline's case),
  - tokens/s of forward() end to end (each layer read from the store),
  - GFLOP/s of a plain float32 A @ B of similar size, measured in the same run,
  - GFLOP/s of a large square float32 GEMM (the machine's large-GEMM rate), same run,
  - the ratios of the compute rate to both (issue 14's target: >= 0.9 of the large-GEMM rate).
FLOPs = 2·(non-embedding linear params)·tokens + attention (q kᵀ and p v over the causal
L(L+1)/2 pairs) + LM head. Timings are wall-clock: on a shared, loaded machine (see the load
average printed) both numbers drop, and their ratio is the meaningful one.

    python benchmarks/forward.py [--seqlen 512] [--batch 4] [--gemm 3072] [--repeats 3] [--synthetic]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from dsnot_ref import model as model_lib
from dsnot_ref.allocator import reuse_freed_memory
from dsnot_ref.config import ModelConfig
from dsnot_ref.model import Model, forward, layer_weight_shapes, global_weight_shapes, layer_prefix

DEMO_SHAPE = dict(
    architecture="LlamaForCausalLM", family="llama", vocab_size=49152, hidden_size=576,
    intermediate_size=1536, num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64,
    max_positions=8192, norm_eps=1e-5, rope_theta=100000.0, rope_scaling=None,
    tie_word_embeddings=True, attention_bias=False, mlp_bias=False, do_layer_norm_before=True,
    word_embed_proj_dim=576, bos_token_id=1, eos_token_id=2, torch_dtype="float32",
)


class RandomStore:
    """An in-memory WeightStore of random weights (norm weights near 1), for a synthetic model."""

    def __init__(self, config: ModelConfig, seed: int = 0):
        rng = np.random.default_rng(seed)
        shapes = dict(global_weight_shapes(config))
        for i in range(config.num_layers):
            shapes.update({layer_prefix(config, i) + n: s for n, s in layer_weight_shapes(config).items()})
        self._arrays = {}
        for name, shape in shapes.items():
            if len(shape) == 1:
                self._arrays[name] = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            else:
                scale = 1 / np.sqrt(shape[-1])
                self._arrays[name] = (scale * rng.standard_normal(shape, dtype=np.float32))
        self.source = "random weights"

    def names(self):
        return list(self._arrays)

    def __contains__(self, name):
        return name in self._arrays

    def shape(self, name):
        return self._arrays[name].shape

    def dtype(self, name):
        return "F32"

    def file_of(self, name):
        return None

    def get(self, name, dtype=np.float32):
        return self._arrays[name].astype(dtype)


def demo_or_synthetic(synthetic: bool) -> tuple[Model, str]:
    if not synthetic:
        try:
            from dsnot_ref.demo_model import demo_model_dir, is_complete

            model_dir = demo_model_dir()
            if is_complete(model_dir):
                return model_lib.load_model(model_dir), f"demo model {model_dir}"
        except ImportError:
            pass
    config = ModelConfig(**DEMO_SHAPE)
    return Model(config=config, store=RandomStore(config), path=Path("<synthetic>")), "synthetic random model"


def forward_flops(config: ModelConfig, batch: int, seqlen: int) -> float:
    tokens = batch * seqlen
    linear_params = sum(int(np.prod(s)) for n, s in layer_weight_shapes(config).items()
                        if n.endswith(".weight") and len(s) == 2) * config.num_layers
    # q kᵀ and p v over the causal pairs only (t ≥ s): the work attention cannot avoid
    pairs = seqlen * (seqlen + 1) / 2
    attention = 4.0 * batch * pairs * config.num_heads * config.head_dim * config.num_layers
    head = 2.0 * tokens * config.vocab_size * config.word_embed_proj_dim
    return 2.0 * linear_params * tokens + attention + head


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_gflops(tokens: int, config: ModelConfig, repeats: int) -> float:
    """A plain float32 GEMM of the model's biggest per-layer shape: [T, D] @ [D, F]."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((tokens, config.hidden_size), dtype=np.float32)
    b = rng.standard_normal((config.hidden_size, config.intermediate_size), dtype=np.float32)
    n_inner = 20
    t = best_time(lambda: [a @ b for _ in range(n_inner)], repeats)
    return 2.0 * tokens * config.hidden_size * config.intermediate_size * n_inner / t / 1e9


def large_gemm_gflops(n: int, repeats: int) -> float:
    """The machine's large-GEMM rate: a square float32 [n, n] @ [n, n] (issue 14's yardstick)."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    t = best_time(lambda: a @ b, repeats)
    return 2.0 * n ** 3 / t / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4, help="sequences per forward (the pipeline's chunk, 4)")
    parser.add_argument("--gemm", type=int, default=3072, help="side of the square GEMM giving the large-GEMM rate")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="ignore a cached demo model")
    args = parser.parse_args()
    reuse_freed_memory()  # as the command line does

    model, what = demo_or_synthetic(args.synthetic)
    config = model.config
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, size=(args.batch, args.seqlen))
    n_tok = tokens.size
    layers = [model_lib.load_layer(model, i) for i in range(config.num_layers)]
    glob = model_lib.load_globals(model)

    def compute():
        x = model_lib.embed_with(config, glob, tokens)
        for layer in layers:
            x = model_lib.block_forward(config, layer, x)
        return model_lib.logits_with(config, glob, x)

    compute()  # warm-up (RoPE tables, page cache)
    t_compute = best_time(compute, args.repeats)
    t_end_to_end = best_time(lambda: forward(model, tokens), max(1, args.repeats - 1))
    flops = forward_flops(config, args.batch, args.seqlen)
    model_gflops = flops / t_compute / 1e9
    mm_gflops = matmul_gflops(n_tok, config, args.repeats)
    big_gflops = large_gemm_gflops(args.gemm, args.repeats)
    print(f"model: {what}; {args.batch} x {args.seqlen} tokens; {flops / 1e9:.1f} GFLOP per forward; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"forward compute (layers in memory): {n_tok / t_compute:10.1f} tokens/s  {model_gflops:7.1f} GFLOP/s  ({t_compute:.3f} s)")
    print(f"forward() end to end (reads layers): {n_tok / t_end_to_end:10.1f} tokens/s  ({t_end_to_end:.3f} s)")
    print(f"plain float32 matmul [{n_tok}x{config.hidden_size}] @ [{config.hidden_size}x{config.intermediate_size}]: {mm_gflops:7.1f} GFLOP/s")
    print(f"large float32 GEMM [{args.gemm}x{args.gemm}] @ [{args.gemm}x{args.gemm}]: {big_gflops:7.1f} GFLOP/s")
    print(f"ratio model/matmul of its shape: {model_gflops / mm_gflops:.2f}; "
          f"model/large GEMM: {model_gflops / big_gflops:.2f}  (issue 14's target >= 0.9)")


if __name__ == "__main__":
    main()
