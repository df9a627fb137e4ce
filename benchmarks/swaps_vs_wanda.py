"""Wall time of `dsnot-ref prune` with the SparseSwaps refiner against Wanda alone, same job.

Issue 15's aim: the whole prune with the refiner at most 2 × Wanda's prune time on the same job.
Runs `dsnot-ref prune` on the demo model (SmolLM2-135M from the cache) twice, one after the
other, with the same calibration windows (bundled corpus, seed 0, S × L, default 32 × 512), no
evaluation, every other flag at its default:

    wanda:  --prune-method wanda --sparsity-ratio R
    swaps:  --prune-method swaps --initial-method wanda --sparsity-ratio R

and prints each run's prune time split into forward / statistics / pruning / I/O, and the ratio
swaps / Wanda. ``--repeats N`` alternates the order (wanda, swaps, swaps, wanda, ...) and prints
every pair's ratio and the median. Wall-clock: run it on an idle machine, and read the ratio
(both runs see the same machine within minutes). Prints, never asserts.

    python benchmarks/swaps_vs_wanda.py [--sparsity 0.6] [--nsamples 32] [--seqlen 512] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

JOBS = {
    "wanda": ["--prune-method", "wanda"],
    "swaps": ["--prune-method", "swaps", "--initial-method", "wanda"],
}


def run_prune(job: str, model_dir: Path, tokens_path: Path, sparsity: float, tmp: Path) -> dict:
    """One `dsnot-ref prune` in a fresh process: its prune time and pipeline phase times."""
    results = tmp / f"{job}.json"
    command = [sys.executable, "-m", "dsnot_ref", "prune", "--model", str(model_dir), *JOBS[job],
               "--sparsity-ratio", str(sparsity), "--calibration-tokens", str(tokens_path),
               "--eval-dataset", "none", "--run-dir", str(tmp / f"run_{job}"), "--results", str(results), "--quiet"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    out = json.loads(results.read_text())
    return {"prune": out["times"]["prune"], "pipeline": out["pipeline_times"]}


def describe(job: str, run: dict) -> str:
    phases = ", ".join(f"{k} {v:.1f}" for k, v in run["pipeline"].items())
    return f"{job:5s}: prune {run['prune']:7.1f} s ({phases})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsity", type=float, default=0.6)
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1, help="pairs of runs, order alternated")
    args = parser.parse_args()

    from dsnot_ref import data, demo_model  # noqa: PLC0415

    model_dir = demo_model.demo_model_dir()
    if not demo_model.is_complete(model_dir):
        print(f"no demo model in {model_dir}; run `dsnot-ref fetch-model smollm2-135m`", file=sys.stderr)
        return 1
    print(f"{model_dir.name}: Wanda {args.sparsity:.0%} alone and + SparseSwaps, S={args.nsamples}, "
          f"L={args.seqlen}, no evaluation; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    ratios = []
    with tempfile.TemporaryDirectory(prefix="dsnot_swaps_vs_wanda_") as tmp:
        tmp = Path(tmp)
        tokens_path = tmp / "calib.npy"
        tokenizer = data.load_tokenizer(model_dir)
        np.save(tokens_path, data.calibration_windows(tokenizer, Path(data.BUNDLED_CALIBRATION),
                                                      args.nsamples, args.seqlen, 0))
        for k in range(args.repeats):
            order = ("wanda", "swaps") if k % 2 == 0 else ("swaps", "wanda")
            runs = {job: run_prune(job, model_dir, tokens_path, args.sparsity, tmp) for job in order}
            for job in order:
                print(describe(job, runs[job]))
            ratios.append(runs["swaps"]["prune"] / runs["wanda"]["prune"])
            print(f"pair {k + 1}: swaps / wanda = {ratios[-1]:.2f}  (aim <= 2)  load average {os.getloadavg()[0]:.1f}")
    if len(ratios) > 1:
        print(f"median swaps / wanda over {len(ratios)} pairs = {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
