"""Wall time of `dsnot-ref prune` with its defaults against the released DSnoT code on the same job.

The job (issues 14 and 25): SmolLM2-135M, Wanda 60% + DSnoT (official variant, the released
defaults: 50 cycles, threshold 0.1, skip the MLP), the same S × L calibration windows (default
32 × 512, from the bundled corpus, seed 0), no evaluation. Ours runs as `dsnot-ref prune` with
every other flag at its default.

When a Python with torch + transformers (``--torch-python``, default /work/venv-torch/bin/python)
and a copy of the released repository (``--released DIR``, zyxxmu/DSnoT; default
../released-dsnot beside this checkout) are both present, the two run alternately, ``--rounds``
times each (ours, released, ours, released, ...), so that a machine shared with other work
slows both alike, and the ratio of their median prune times is printed. The released
``prune_DSnoT`` runs unmodified, loaded the way tools/compare_released.py loads it (its
``import_released``/``load_model``/``released_args``: our token windows instead of C4, float32 on
CPU), with no recording hooks. Without them only ours runs.

Then the profile of our median run: seconds per pipeline step (forward, stats, prune, io, and
the rest of the prune phase), and the floor: the job's matrix-product work (both passes over
every layer's S·L tokens, attention included) at this machine's large float32 GEMM rate,
measured here; what each step spends above it. Prints, never asserts.

    python benchmarks/vs_released_code.py [--rounds 3] [--nsamples 32] [--seqlen 512] [--released DIR]
        [--torch-python PY] [--out benchmarks/results/vs_released.json]

``--out`` writes every round's times, the medians, the ratio and the profile to a JSON file
stamped with its provenance (machine, date, commit, command).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.15  # released / ours asked for by issue 25

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


def product_flops(config, n_seq: int, seq_len: int) -> float:
    """Multiply-adds (×2) of the job's matrix products: per decoder layer the statistics pass
    (every projection but the last one of the MLP) and the output pass (all of them), each over
    S·L tokens, and causal attention (queries in blocks of ops.QUERY_BLOCK meet the keys up to
    their block's end)."""
    from dsnot_ref import ops  # noqa: PLC0415

    tokens = n_seq * seq_len
    d, f, dh = config.hidden_size, config.intermediate_size, config.head_dim
    h, k = config.num_heads, config.num_kv_heads
    attention_proj = 2 * tokens * d * dh * (2 * h + 2 * k)              # q, o and k, v
    mlp_in, mlp_out = 2 * tokens * d * f * 2, 2 * tokens * f * d        # gate and up; down
    keys_seen = sum(min(seq_len, start + ops.QUERY_BLOCK) * min(ops.QUERY_BLOCK, seq_len - start)
                    for start in range(0, seq_len, ops.QUERY_BLOCK))     # query-key pairs per head
    attention = 2 * 2 * n_seq * h * dh * keys_seen                      # q kᵀ and P v
    one_pass = attention_proj + mlp_in + attention
    return config.num_layers * (2 * one_pass + mlp_out)


def gemm_rate(config) -> float:
    """FLOP/s of a large float32 product of this model's shape ([2048, D] @ [D, F]), best of 5."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, config.hidden_size), dtype=np.float32)
    b = rng.standard_normal((config.hidden_size, config.intermediate_size), dtype=np.float32)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / best


def print_profile(model_dir: Path, run: dict, n_seq: int, seq_len: int) -> dict:
    """Where each second of our prune phase went, and the floor of the forward's products."""
    from dsnot_ref.config import ModelConfig  # noqa: PLC0415

    config = ModelConfig.from_file(model_dir / "config.json")
    flops, rate = product_flops(config, n_seq, seq_len), gemm_rate(config)
    floor = flops / rate
    steps = dict(run["pipeline"])
    steps["rest of the prune phase"] = run["prune"] - sum(steps.values())
    print(f"profile of our median run ({run['prune']:.1f} s prune phase):")
    for name, seconds in steps.items():
        print(f"  {name:24s} {seconds:7.1f} s  {100 * seconds / run['prune']:5.1f} %")
    print(f"  floor: {flops / 1e12:.2f} TFLOP of matrix products at {rate / 1e9:.0f} GFLOP/s "
          f"(a [2048, D] @ [D, F] float32 product here) = {floor:.1f} s; the forward step is "
          f"{steps.get('forward', 0.0) - floor:+.1f} s above it, everything else "
          f"({run['prune'] - steps.get('forward', 0.0):.1f} s) is above the floor")
    return {"steps": steps, "product_tflop": flops / 1e12, "gemm_gflops": rate / 1e9, "floor_seconds": floor}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each, alternating (default 3)")
    parser.add_argument("--model", type=Path, default=None, help="HF directory (default: the cached demo model)")
    parser.add_argument("--released", type=Path, default=REPO.parent / "released-dsnot")
    parser.add_argument("--torch-python", type=Path, default=Path("/work/venv-torch/bin/python"))
    parser.add_argument("--out", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "benchmarks"))
    from provenance import provenance, stamped  # noqa: PLC0415 - beside this script

    stamp = provenance([sys.executable, *sys.argv])

    from dsnot_ref import demo_model  # noqa: PLC0415

    model_dir = args.model or demo_model.demo_model_dir()
    if not (model_dir / "config.json").is_file():
        print(f"no model in {model_dir}; run `dsnot-ref fetch-model smollm2-135m`", file=sys.stderr)
        return 1
    why_not = released_available(args.torch_python, args.released)
    print(f"{model_dir.name}: Wanda 60% + DSnoT official, S={args.nsamples}, L={args.seqlen}, no evaluation; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, {args.rounds} rounds")
    ours, theirs = [], []
    with tempfile.TemporaryDirectory(prefix="dsnot_vs_released_") as tmp:
        tmp = Path(tmp)
        tokens_path = tmp / "calib.npy"
        np.save(tokens_path, calibration_tokens(model_dir, args.nsamples, args.seqlen))
        for k in range(args.rounds):
            ours.append(run_ours(model_dir, tokens_path, tmp))
            line = f"round {k + 1}: ours {ours[-1]['prune']:6.1f} s"
            if why_not is None:
                theirs.append(run_released(args.torch_python, args.released, model_dir, tokens_path))
                line += f", released {theirs[-1]['prune']:6.1f} s ({theirs[-1]['threads']} torch threads)"
            print(line + f"; load average {os.getloadavg()[0]:.1f}", flush=True)
    record = {"nsamples": args.nsamples, "seqlen": args.seqlen, "ours": ours, "released": theirs}
    ours_median = statistics.median(r["prune"] for r in ours)
    print(f"ours:     median prune {ours_median:7.1f} s")
    if why_not is None:
        theirs_median = statistics.median(r["prune"] for r in theirs)
        ratios = [t["prune"] / o["prune"] for o, t in zip(ours, theirs)]
        print(f"released: median prune {theirs_median:7.1f} s")
        print(f"released / ours = {theirs_median / ours_median:.2f} (medians; per round "
              + ", ".join(f"{r:.2f}" for r in ratios) + f"; target >= {TARGET})")
        record.update(released_median=theirs_median, ratio=theirs_median / ours_median, round_ratios=ratios)
    else:
        print(f"released code not run ({why_not}): no ratio")
    median_run = sorted(ours, key=lambda r: r["prune"])[len(ours) // 2]
    record.update(ours_median=ours_median, profile=print_profile(model_dir, median_run, args.nsamples, args.seqlen))
    if args.out is not None:
        args.out.write_text(json.dumps(stamped(record, stamp), indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
