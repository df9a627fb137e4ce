"""The reconstruction-error diagnostic from a token sample against the one from every token.

`prune` estimates each sublayer's relative calibration error ‖(W − Ŵ)X‖² / ‖WX‖² from a seeded
sample of ``recon_error_tokens`` tokens (default 2048) when only the diagnostic needs the
Hessian. This script prunes the demo model twice with the same calibration windows (bundled
corpus, seed 0; default S = 32, L = 512) and the same method (default Wanda 60% + DSnoT,
official variant, as `prune`'s benchmark job), once with the sample and once with every token,
and prints, over every sublayer:

  - the relative difference of the error before (initial mask) and after (DSnoT) pruning,
  - the relative difference of the ratio after / before (the change the method made),
  - the seconds the diagnostic (the pipeline's "diagnostics" timing) took in each run and their ratio.

The masks are the same in both runs (the diagnostic does not feed the method). Prints, never
asserts.

    python benchmarks/recon_sample.py [--seqs 32] [--seqlen 512] [--tokens 2048] [--layers N]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np

from dsnot_ref import data, demo_model
from dsnot_ref import model as model_lib
from dsnot_ref.allocator import reuse_freed_memory
from dsnot_ref.methods import PruneSpec
from dsnot_ref.methods.dsnot.common import DSnoTSettings
from dsnot_ref.pipeline import PipelineSettings, prune_model


def run(model, tokens, settings: PipelineSettings, tmp: Path, name: str) -> tuple[dict, float]:
    """(sublayer -> (recon_before, recon_after), seconds of the diagnostic)."""
    with prune_model(model, tokens, settings, tmp / name) as result:
        errors = {
            f"{d['layer']}.{sub}": (v["recon_before"], v["recon_after"])
            for d in result.diagnostics
            for sub, v in d["sublayers"].items()
        }
        return errors, result.timings.get("diagnostics", float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seqs", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=2048, help="the diagnostic's token sample")
    parser.add_argument("--layers", type=int, default=None, help="only the first N decoder layers")
    args = parser.parse_args()
    reuse_freed_memory()  # as the command line does

    model_dir = demo_model.demo_model_dir()
    if not demo_model.is_complete(model_dir):
        raise SystemExit(f"demo model not cached in {model_dir}; run `dsnot-ref fetch-model smollm2-135m`")
    model = model_lib.load_model(model_dir)
    if args.layers is not None:
        model = dataclasses.replace(model, config=dataclasses.replace(model.config, num_layers=args.layers))
    tokenizer = data.load_tokenizer(model_dir)
    tokens = data.calibration_windows(tokenizer, Path(data.BUNDLED_CALIBRATION), args.seqs, args.seqlen, 0)
    spec = PruneSpec("dsnot", 0.6, dsnot=DSnoTSettings(variant="official"))
    print(f"{model_dir.name}: {model.config.num_layers} layers, S={args.seqs}, L={args.seqlen}, "
          f"Wanda 60% + DSnoT (official); load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="dsnot_recon_") as tmp:
        full, full_s = run(model, tokens, PipelineSettings(spec=spec, recon_error_tokens=None), Path(tmp), "full")
        part, part_s = run(model, tokens, PipelineSettings(spec=spec, recon_error_tokens=args.tokens), Path(tmp),
                           "sample")
    names = sorted(full)
    exact = np.array([full[n] for n in names])  # [N, 2] before, after
    sample = np.array([part[n] for n in names])
    rel = np.abs(sample / exact - 1)  # [N, 2]
    change = sample[:, 1] / sample[:, 0] / (exact[:, 1] / exact[:, 0]) - 1  # of the ratio after / before
    n_tokens = args.seqs * args.seqlen
    print(f"{len(names)} sublayers, diagnostic from {min(args.tokens, n_tokens)} of {n_tokens} tokens:")
    for j, which in enumerate(("before", "after")):
        print(f"  error {which:6s}: relative difference median {np.median(rel[:, j]):.1e}, "
              f"95th percentile {np.percentile(rel[:, j], 95):.1e}, max {rel[:, j].max():.1e} ({names[rel[:, j].argmax()]})")
    worst = names[np.abs(change).argmax()]
    print(f"  after / before: relative difference median {np.median(np.abs(change)):.1e}, "
          f"max {np.abs(change).max():.1e} ({worst}: {full[worst][0]:.3e} -> {full[worst][1]:.3e} with every token, "
          f"{part[worst][0]:.3e} -> {part[worst][1]:.3e} with the sample)")
    print(f"  diagnostic: {full_s:.1f} s with every token, {part_s:.1f} s with the sample "
          f"(ratio {part_s / full_s:.2f})")


if __name__ == "__main__":
    main()
