"""Wall time of one calibration + pruning pass on the demo model, split by step.

Runs ``prune_model`` on the demo model (SmolLM2-135M, from the cache; ``--fetch`` downloads
it once) with S calibration sequences of L tokens (default S=32, L=512) and prints the seconds
spent in the forward passes, in gathering statistics, in pruning and in I/O (loading layer
weights, reading and writing activation chunks, writing the pruned layers). Target: statistics
+ I/O under 15% of the total. Prints, never asserts.

    python benchmarks/pipeline_time.py [--seqs 32] [--seqlen 512] [--chunk 4] [--method wanda]
        [--recon-error] [--fetch]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dsnot_ref import demo_model
from dsnot_ref.allocator import reuse_freed_memory
from dsnot_ref import model as model_lib
from dsnot_ref.methods import PruneSpec
from dsnot_ref.pipeline import PipelineSettings, prune_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=4)
    parser.add_argument("--method", default="wanda")
    parser.add_argument("--recon-error", action="store_true", help="also run the reconstruction-error diagnostic")
    parser.add_argument("--fetch", action="store_true", help="download the demo model if it is not cached")
    args = parser.parse_args()
    reuse_freed_memory()  # as the command line does

    model_dir = demo_model.demo_model_dir()
    if not demo_model.is_complete(model_dir):
        if not args.fetch:
            print(f"demo model not cached in {model_dir}; rerun with --fetch", file=sys.stderr)
            return 1
        model_dir = demo_model.fetch_demo_model()
    model = model_lib.load_model(model_dir)
    tokens = np.random.default_rng(0).integers(0, model.config.vocab_size, (args.seqs, args.seqlen), dtype=np.int64)
    settings = PipelineSettings(
        spec=PruneSpec(method=args.method, sparsity=0.5), chunk_size=args.chunk, recon_error=args.recon_error
    )
    print(f"{model_dir.name}: {model.config.num_layers} layers, D={model.config.hidden_size}; "
          f"S={args.seqs}, L={args.seqlen}, B={args.chunk}, method {args.method}, recon_error {settings.recon_error}")
    with tempfile.TemporaryDirectory(prefix="dsnot_time_") as tmp:
        start = time.perf_counter()
        with prune_model(model, tokens, settings, Path(tmp) / "run") as run:
            timings = dict(run.timings)
        wall = time.perf_counter() - start
    accounted = sum(timings.values())
    for key, seconds in timings.items():
        print(f"  {key:8s} {seconds:8.2f} s  {100 * seconds / wall:5.1f}%")
    print(f"  {'other':8s} {wall - accounted:8.2f} s  {100 * (wall - accounted) / wall:5.1f}%")
    print(f"  {'total':8s} {wall:8.2f} s")
    share = (timings["stats"] + timings["io"]) / wall
    print(f"stats + I/O = {100 * share:.1f}% of the total (target < 15%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
