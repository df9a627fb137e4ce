"""Time and peak memory of `dsnot-ref prune --save-model` on a 1B-class model, and how they grow.

Writes a random checkpoint of Llama-3.2-1B's shape (hidden 2048, MLP 8192, 32 heads, 8 KV
heads, vocabulary 128,256, tied embeddings, one bfloat16 ``model.safetensors`` of 2.5 GB as
that model ships; depth from ``--layers``) and runs the whole command in a fresh process for
each configuration: Wanda 60% + DSnoT (official variant, the released defaults), no evaluation,
saving the pruned model. Random weights cost what real ones cost: the work depends on shapes
only (DSnoT's cycles stop early or late with the data, so its share is indicative).

For each run prints the wall time, the phase times the command reports and the peak RSS
(VmHWM of the child). The default configurations vary one factor at a time from a base
(16 layers, S = 8 sequences of L = 256 tokens): calibration sequences S, sequence length L,
depth and width (hidden 1024 / MLP 4096 / 16 heads / 4 KV heads), so each ratio to the base
shows how time and memory grow with that factor. Prints, never asserts.

    python benchmarks/large_model.py [--configs base,S2,L2,depth,width] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dsnot_ref.weights import PendingTensor, float32_to_bf16_bits, write_raw_safetensors_atomic
from provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results"

CHILD = r"""
import json, sys
from dsnot_ref.cli import main

def peak_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

status = main(sys.argv[1:-1])
print(json.dumps({"status": status, "peak_kib": peak_kib(), "results": json.load(open(sys.argv[-1]))}))
"""

WIDE = dict(hidden=2048, mlp=8192, heads=32, kv_heads=8)  # Llama-3.2-1B
NARROW = dict(hidden=1024, mlp=4096, heads=16, kv_heads=4)
CONFIGS = {  # name -> (shape, layers, S, L)
    "base": (WIDE, 16, 8, 256),
    "S2": (WIDE, 16, 16, 256),
    "L2": (WIDE, 16, 8, 512),
    "depth": (WIDE, 24, 8, 256),
    "width": (NARROW, 16, 8, 256),
}


def llama_config(shape: dict, n_layers: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": shape["hidden"], "intermediate_size": shape["mlp"], "num_hidden_layers": n_layers,
        "num_attention_heads": shape["heads"], "num_key_value_heads": shape["kv_heads"], "head_dim": 64,
        "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "tie_word_embeddings": True, "vocab_size": 128256, "torch_dtype": "bfloat16",
        "bos_token_id": 1, "eos_token_id": 2,
    }


def random_bf16(shape: tuple[int, ...], seed: int, norm: bool) -> PendingTensor:
    """One random tensor, made only when the writer reaches it (rows scaled by 1/√fan-in)."""
    def write(f):
        rng = np.random.default_rng(seed)
        if norm:
            values = np.ones(shape, dtype=np.float32)
        else:
            values = rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(shape[-1]))
        f.write(float32_to_bf16_bits(values).astype("<u2").reshape(-1).view(np.uint8).data)

    return PendingTensor("BF16", shape, write)


def write_model(directory: Path, shape: dict, n_layers: int) -> Path:
    from dsnot_ref import model as model_lib  # noqa: PLC0415
    from dsnot_ref.config import ModelConfig  # noqa: PLC0415

    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(llama_config(shape, n_layers), indent=2))
    config = ModelConfig.from_file(directory)
    tensors = {name: random_bf16(tuple(dims), seed, name.endswith("norm.weight"))
               for seed, (name, dims) in enumerate(model_lib.expected_weights(config).items())}
    write_raw_safetensors_atomic(directory / "model.safetensors", tensors)
    return directory


def measure(model_dir: Path, work: Path, n_seq: int, seq_len: int) -> dict:
    """Run `dsnot-ref prune --save-model` in a fresh process; wall time, phase times, peak RSS."""
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    tokens = work / "tokens.npy"
    np.save(tokens, np.random.default_rng(0).integers(0, vocab, (n_seq, seq_len), dtype=np.int64))
    results = work / "results.json"
    argv = ["prune", "--model", str(model_dir), "--prune-method", "dsnot", "--dsnot-variant", "official",
            "--sparsity-ratio", "0.6", "--calibration-tokens", str(tokens), "--eval-dataset", "none",
            "--run-dir", str(work / "run"), "--save-model", str(work / "saved"), "--results", str(results), "--quiet"]
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, *argv, str(results)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"prune failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
    wall = time.perf_counter() - start
    child = json.loads(out.stdout.strip().splitlines()[-1])
    return {"wall": wall, "peak_mib": child["peak_kib"] / 1024, "times": child["results"]["times"],
            "pipeline_times": child["results"].get("pipeline_times", {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--json", default=str(RESULTS / "large_model.json"),
                        help="also write the figures here (default benchmarks/results/large_model.json)")
    args = parser.parse_args()
    names = args.configs.split(",")
    print(f"dsnot-ref prune --save-model, Wanda 60% + DSnoT (official), random bf16 checkpoints; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    figures = {"provenance": provenance(["python", "benchmarks/large_model.py", *sys.argv[1:]])}
    with tempfile.TemporaryDirectory(prefix="dsnot_large_") as tmp:
        models = {}
        for name in names:
            shape, n_layers, n_seq, seq_len = CONFIGS[name]
            key = (shape["hidden"], n_layers)
            if key not in models:
                models[key] = write_model(Path(tmp) / f"model_{shape['hidden']}_{n_layers}", shape, n_layers)
            work = Path(tmp) / f"work_{name}"
            work.mkdir()
            size = (models[key] / "model.safetensors").stat().st_size / 2**30
            fig = measure(models[key], work, n_seq, seq_len)
            figures[name] = {"hidden": shape["hidden"], "mlp": shape["mlp"], "layers": n_layers, "S": n_seq,
                             "L": seq_len, "checkpoint_gib": size, **fig}
            phases = ", ".join(f"{k} {v:.1f}" for k, v in fig["pipeline_times"].items())
            print(f"{name:6s} hidden {shape['hidden']}, MLP {shape['mlp']}, {n_layers} layers, S={n_seq}, L={seq_len}, "
                  f"checkpoint {size:.2f} GiB: wall {fig['wall']:.1f} s, peak RSS {fig['peak_mib']:.0f} MiB "
                  f"({phases})", flush=True)
            shutil.rmtree(work)  # free the disk before the next run
    if "base" in figures:
        base = figures["base"]
        for name, fig in figures.items():
            if name not in ("base", "provenance"):
                print(f"{name:6s} / base: time {fig['wall'] / base['wall']:.2f}, peak {fig['peak_mib'] / base['peak_mib']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
