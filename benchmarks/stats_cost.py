"""What the input statistics cost beside the forward pass, with and without the Hessian.

Runs the demo model's first decoder layers (SmolLM2-135M if cached, else random weights of its
shape) over B×L random-token chunks and times, interleaved in one run so that a shared
machine's load hits every variant alike, the best of ``--repeats``:

  - the forward pass of the layer alone (no statistics),
  - the statistics without the Hessian (``--no-recon-error`` with Wanda/DSnoT),
  - with the Hessian's chunk products in float64 (what the methods that use it get),
  - with the Hessian's chunk products in the input's float32 (the default diagnostic),

and prints each statistics variant as a fraction of the forward pass, plus the relative
difference of the reconstruction error (Wanda 50% masks) with float32 products from the one
with float64 products: the diagnostic's rounding cost. Prints, never asserts.

    python benchmarks/stats_cost.py [--seqlen 512] [--chunk 4] [--layers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from dsnot_ref import demo_model
from dsnot_ref import model as model_lib
from dsnot_ref.allocator import reuse_freed_memory
from dsnot_ref.diagnostics import gram_form, relative_errors
from dsnot_ref.methods import PruneSpec, prune_linear
from dsnot_ref.methods.gram import gram_from_hessian
from dsnot_ref.pipeline import ChunkRecorder, StatsCapture

VARIANTS = {  # name -> StatsCapture keywords (None: forward only)
    "forward only": None,
    "stats, no Hessian": {"with_hessian": False},
    "stats + Hessian, float64 products": {"with_hessian": True, "hessian_products": "float64"},
    "stats + Hessian, float32 products": {"with_hessian": True, "hessian_products": "input"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    reuse_freed_memory()  # as the command line does

    model_dir = demo_model.demo_model_dir()
    if not demo_model.is_complete(model_dir):
        raise SystemExit(f"demo model not cached in {model_dir}; run `dsnot-ref fetch-model smollm2-135m`")
    model = model_lib.load_model(model_dir)
    config = model.config
    names = model_lib.linear_names(config)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, config.vocab_size, (args.chunk, args.seqlen), dtype=np.int64)
    x = model_lib.embed_with(config, model_lib.load_globals(model, np.float32, np), tokens)  # [B, L, D]
    print(f"{model_dir.name}: layers 0..{args.layers - 1}, B={args.chunk}, L={args.seqlen}, "
          f"load average {os.getloadavg()[0]:.1f}")
    best = dict.fromkeys(VARIANTS, float("inf"))
    recon = {}
    for i in range(args.layers):
        layer = model_lib.load_layer(model, i, dtype=np.float32, xp=np)
        n_cols = {name: layer[f"{name}.weight"].shape[1] for name in names}
        seconds = dict.fromkeys(VARIANTS, float("inf"))
        for _ in range(args.repeats):
            for variant, kwargs in VARIANTS.items():
                capture = None if kwargs is None else StatsCapture(names, n_cols, **kwargs)
                recorder = None if capture is None else ChunkRecorder([capture], capture.leaders, chunk=0)
                start = time.perf_counter()
                y = model_lib.block_forward(config, layer, x, capture=recorder)
                if recorder is not None:
                    recorder.merge()
                seconds[variant] = min(seconds[variant], time.perf_counter() - start)
                if kwargs is not None and kwargs["with_hessian"]:
                    stats = capture.finalize()
                    recon[variant] = []
                    for n in names:
                        result = prune_linear(layer[f"{n}.weight"], stats[n], PruneSpec("wanda", 0.5))
                        form = gram_form(gram_from_hessian(stats[n].hessian, stats[n].n_seq))
                        recon[variant].append(
                            relative_errors(layer[f"{n}.weight"], result.initial, result.weight, form)["recon_after"])
        for variant in VARIANTS:
            best[variant] = seconds[variant] if i == 0 else best[variant] + seconds[variant]
        exact = np.array(recon["stats + Hessian, float64 products"])
        for variant in list(VARIANTS)[3:]:
            rel = np.abs(np.array(recon[variant]) / exact - 1)
            print(f"layer {i}: Wanda 50% recon error of {len(names)} sublayers, {variant[16:]} vs float64 "
                  f"products over all tokens: max relative difference {rel.max():.1e}")
        x = y
    forward_s = best["forward only"]
    print(f"forward only: {forward_s:.3f} s over {args.layers} layers (best of {args.repeats})")
    for variant in list(VARIANTS)[1:]:
        extra = best[variant] - forward_s
        print(f"  {variant:36s} +{extra:.3f} s = {extra / forward_s:.2f} of the forward")


if __name__ == "__main__":
    main()
