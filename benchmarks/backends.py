"""NumPy or CuPy: the same prune-and-evaluate run on both backends, timed, and checked to agree.

    python benchmarks/backends.py [--model DIR] [--method dsnot] [--variant reference]
        [--sparsity 0.6] [--nsamples 16] [--seqlen 128] [--eval-windows 8] [--dtype float32]

Prunes the model (default: the demo model, ``demo_model.fetch_demo_model``) with
``pipeline.prune_model`` on calibration windows from the bundled corpus, then measures
perplexity on the bundled evaluation text (``evaluate.perplexity``), once with
``backend="numpy"`` and once with ``backend="cupy"``. Prints the prune and evaluation times of
each, the speedup, the perplexities, and how many mask entries differ (0 expected; float32
activations computed on different hardware can move a weight that sits on a rounding tie, so
a handful of differences in float32 is possible, none in float64). Without CuPy or a GPU the
CuPy run is skipped with a message. Asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from dsnot_ref import data
from dsnot_ref import model as model_lib
from dsnot_ref.backend import get_backend
from dsnot_ref.errors import UserError
from dsnot_ref.evaluate import perplexity
from dsnot_ref.methods import DSnoTSettings, PruneSpec
from dsnot_ref.pipeline import PipelineSettings, prune_model


def run_backend(model, calib, eval_tokens, spec: PruneSpec, backend: str, args) -> dict:
    """Prune and evaluate on one backend. -> times, perplexity and the masks (NumPy)."""
    xp = get_backend(backend)
    settings = PipelineSettings(spec=spec, chunk_size=args.chunk_size, dtype=args.dtype,
                                backend=backend, recon_error=False)
    with tempfile.TemporaryDirectory(prefix=f"dsnot-backends-{backend}-") as tmp:
        started = time.perf_counter()
        with prune_model(model, calib, settings, Path(tmp) / "run") as run:
            prune_seconds = time.perf_counter() - started
            masks = dict(run.masks())
            pruned_model = model_lib.load_model(model.path, store=run.weights_store())
            started = time.perf_counter()
            ppl = perplexity(pruned_model, eval_tokens, args.seqlen, dtype=np.dtype(args.dtype),
                             max_windows=args.eval_windows, xp=xp)
            eval_seconds = time.perf_counter() - started
    return {"prune_s": prune_seconds, "eval_s": eval_seconds, "ppl": ppl["perplexity"],
            "timings": run.timings, "masks": masks}


def mask_differences(a: dict, b: dict) -> int:
    return sum(int(np.count_nonzero(a[name] != b[name])) for name in a)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="HF model directory (default: the demo model)")
    parser.add_argument("--method", default="dsnot", choices=["magnitude", "wanda", "sparsegpt", "dsnot"])
    parser.add_argument("--variant", default="reference", choices=["reference", "official", "exact"])
    parser.add_argument("--sparsity", type=float, default=0.6)
    parser.add_argument("--nsamples", type=int, default=16)
    parser.add_argument("--seqlen", type=int, default=128)
    parser.add_argument("--eval-windows", type=int, default=8)
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        model_dir = args.model
        if model_dir is None:
            from dsnot_ref.demo_model import fetch_demo_model  # noqa: PLC0415 - may download

            model_dir = fetch_demo_model(progress=print)
        model = model_lib.load_model(model_dir)
        tokenizer = data.load_tokenizer(model_dir)
        calib = data.calibration_windows(tokenizer, data.BUNDLED_CALIBRATION, args.nsamples, args.seqlen, args.seed)
        eval_tokens = data.eval_tokens(tokenizer, data.BUNDLED_EVAL)
    except UserError as exc:
        print(f"error: {exc}")
        return 2
    spec = PruneSpec(args.method, args.sparsity, dsnot=DSnoTSettings(variant=args.variant))
    print(f"model {model_dir}: {args.method} {args.sparsity:.0%}"
          f"{f' ({args.variant})' if args.method == 'dsnot' else ''}, S={args.nsamples} L={args.seqlen}, "
          f"{args.eval_windows} eval windows, {args.dtype}")

    results = {}
    for backend in ("numpy", "cupy"):
        try:
            results[backend] = run_backend(model, calib, eval_tokens, spec, backend, args)
        except UserError as exc:          # CuPy missing or no GPU
            print(f"{backend}: skipped ({exc})")
            continue
        r = results[backend]
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in r["timings"].items() if isinstance(v, float))
        print(f"{backend:6s}: prune {r['prune_s']:.1f} s ({stages}) | eval {r['eval_s']:.1f} s | "
              f"perplexity {r['ppl']:.4f}")
    if len(results) == 2:
        cpu, gpu = results["numpy"], results["cupy"]
        print(f"speedup: prune {cpu['prune_s'] / gpu['prune_s']:.1f}x, eval {cpu['eval_s'] / gpu['eval_s']:.1f}x, "
              f"total {(cpu['prune_s'] + cpu['eval_s']) / (gpu['prune_s'] + gpu['eval_s']):.1f}x")
        n_diff = mask_differences(cpu["masks"], gpu["masks"])
        n_all = sum(m.size for m in cpu["masks"].values())
        print(f"masks: {n_diff} of {n_all} entries differ; perplexity relative difference "
              f"{abs(gpu['ppl'] - cpu['ppl']) / cpu['ppl']:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
