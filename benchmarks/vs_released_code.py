"""Wall time of `dsnot-ref prune` against the released DSnoT code on the same job.

The job (issue 14): SmolLM2-135M, Wanda 60% + DSnoT (official variant, the released defaults:
50 cycles, threshold 0.1, skip the MLP), the same S × L calibration windows (default 32 × 512,
from the bundled corpus, seed 0), no evaluation.

When a Python with torch + transformers (``--torch-python``, default /work/venv-torch/bin/python)
and a copy of the released repository (``--released DIR``, zyxxmu/DSnoT; default
../released-dsnot beside this checkout) are both present, runs both, one after the other, and
prints the ratio of their prune times. The released ``prune_DSnoT`` runs unmodified, loaded the
way tools/compare_released.py loads it (its ``import_released``/``load_model``/``released_args``:
our token windows instead of C4, float32 on CPU), with no recording hooks. Otherwise prints ours
against the stored reference figure below. Times are wall-clock: on a shared machine run it idle
or read the ratio only. Prints, never asserts; target ratio released / ours >= 1.5.

    python benchmarks/vs_released_code.py [--nsamples 32] [--seqlen 512] [--released DIR] [--torch-python PY]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# The released code's prune time on this job, S=32, L=512, torch 2.13 CPU, this 2-core machine.
REFERENCE = {"seconds": 99.8, "measured": "2026-12-01", "nsamples": 32, "seqlen": 512}

RELEASED_CHILD = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1] + "/tools")
from compare_released import import_released, load_model, released_args
import torch

released_dir, model_dir, tokens_path = sys.argv[2:5]
tokens = np.load(tokens_path)
released = import_released(released_dir)
model = load_model(model_dir, tokens.shape[1], "sdpa")
batches = [(torch.from_numpy(tokens[i:i + 1].astype(np.int64)), None) for i in range(len(tokens))]
released.get_loaders = lambda *a, **k: (batches, None)
released.print = lambda *a, **k: None
start = time.perf_counter()
with torch.no_grad():
    released.prune_DSnoT(released_args(len(tokens), 0.6, 50), model, None, torch.device("cpu"))
print(json.dumps({"prune": time.perf_counter() - start, "threads": torch.get_num_threads()}))
"""


def calibration_tokens(model_dir: Path, nsamples: int, seqlen: int) -> np.ndarray:
    """The windows `dsnot-ref prune` samples by default (bundled corpus, seed 0): [S, L]."""
    from dsnot_ref import data  # noqa: PLC0415

    tokenizer = data.load_tokenizer(model_dir)
    return data.calibration_windows(tokenizer, Path(data.BUNDLED_CALIBRATION), nsamples, seqlen, 0)


def run_ours(model_dir: Path, tokens_path: Path, tmp: Path) -> dict:
    """`dsnot-ref prune` with its defaults on the job; its phase times and the process wall time."""
    results = tmp / "ours.json"
    command = [sys.executable, "-m", "dsnot_ref", "prune", "--model", str(model_dir), "--prune-method", "dsnot",
               "--dsnot-variant", "official", "--sparsity-ratio", "0.6", "--calibration-tokens", str(tokens_path),
               "--eval-dataset", "none", "--run-dir", str(tmp / "run"), "--results", str(results), "--quiet"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    times = json.loads(results.read_text())
    return {"prune": times["times"]["prune"], "wall": wall, "pipeline": times["pipeline_times"]}


def run_released(torch_python: Path, released: Path, model_dir: Path, tokens_path: Path) -> dict:
    command = [str(torch_python), "-c", RELEASED_CHILD, str(REPO), str(released), str(model_dir), str(tokens_path)]
    start = time.perf_counter()
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "wall": time.perf_counter() - start}


def released_available(torch_python: Path, released: Path) -> str | None:
    """None when the released code can run here, else why not."""
    if not (released / "lib" / "prune.py").is_file():
        return f"no released code in {released}"
    if not (REPO / "tools" / "compare_released.py").is_file():
        return "tools/compare_released.py is missing"
    if not torch_python.is_file():
        return f"no Python at {torch_python}"
    probe = subprocess.run([str(torch_python), "-c", "import torch, transformers"], capture_output=True)
    return None if probe.returncode == 0 else f"{torch_python} lacks torch or transformers"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--model", type=Path, default=None, help="HF directory (default: the cached demo model)")
    parser.add_argument("--released", type=Path, default=REPO.parent / "released-dsnot")
    parser.add_argument("--torch-python", type=Path, default=Path("/work/venv-torch/bin/python"))
    args = parser.parse_args()

    from dsnot_ref import demo_model  # noqa: PLC0415

    model_dir = args.model or demo_model.demo_model_dir()
    if not (model_dir / "config.json").is_file():
        print(f"no model in {model_dir}; run `dsnot-ref fetch-model smollm2-135m`", file=sys.stderr)
        return 1
    why_not = released_available(args.torch_python, args.released)
    print(f"{model_dir.name}: Wanda 60% + DSnoT official, S={args.nsamples}, L={args.seqlen}, no evaluation; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="dsnot_vs_released_") as tmp:
        tmp = Path(tmp)
        tokens_path = tmp / "calib.npy"
        np.save(tokens_path, calibration_tokens(model_dir, args.nsamples, args.seqlen))
        ours = run_ours(model_dir, tokens_path, tmp)
        print(f"ours:     prune {ours['prune']:7.1f} s (process {ours['wall']:.1f} s; "
              + ", ".join(f"{k} {v:.1f}" for k, v in ours["pipeline"].items()) + ")")
        if why_not is None:
            theirs = run_released(args.torch_python, args.released, model_dir, tokens_path)
            print(f"released: prune {theirs['prune']:7.1f} s (process {theirs['wall']:.1f} s, {theirs['threads']} torch threads)")
            print(f"released / ours = {theirs['prune'] / ours['prune']:.2f}  (target >= 1.5)")
            return 0
    print(f"released code not run ({why_not}); stored figure: {REFERENCE['seconds']} s prune at "
          f"S={REFERENCE['nsamples']}, L={REFERENCE['seqlen']} on this 2-core machine, measured {REFERENCE['measured']}")
    if (args.nsamples, args.seqlen) == (REFERENCE["nsamples"], REFERENCE["seqlen"]):
        print(f"stored released / ours = {REFERENCE['seconds'] / ours['prune']:.2f}  (target >= 1.5)")
    else:
        print("(a ratio needs the reference job's S and L)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
