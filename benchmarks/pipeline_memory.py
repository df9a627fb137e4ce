"""Peak resident memory of a full calibration + pruning pass, for models of 4, 8 and 16 layers.

Builds synthetic random LLaMA-shaped models of the same width (hidden 512 by default) in a
temporary directory, runs ``prune_model`` on each in a fresh subprocess, and prints each run's
peak RSS (the child's own VmHWM from /proc/self/status: RUSAGE_CHILDREN reports the maximum over
all children so far, and a child's ru_maxrss inherits the parent's high-water mark across
fork + exec) beside the size of one layer's weights and one activation chunk. The pipeline keeps the activations on disk and one layer in memory, so the
peak should barely grow with depth: target peak(16) / peak(4) < 1.2. Prints, never asserts.

``--save-model`` runs the whole command instead, ``dsnot-ref prune ... --save-model DIR`` (in
the child, through ``dsnot_ref.cli.main``), so the peak includes writing the pruned checkpoint,
which for these models is one ``model.safetensors`` holding every layer. The shapes of issue 14:

    python benchmarks/pipeline_memory.py [--hidden 512] [--seqs 32] [--seqlen 128] [--chunk 4] [--seq-factor 4]
    python benchmarks/pipeline_memory.py --save-model --hidden 1024 --seqs 8 --seqlen 256 --seq-factor 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

CHILD = r"""
import json, sys
import numpy as np
from dsnot_ref import model as model_lib
from dsnot_ref.allocator import reuse_freed_memory
from dsnot_ref.methods import PruneSpec
from dsnot_ref.pipeline import PipelineSettings, prune_model

def peak_kib():
    # VmHWM: peak RSS of this process image. (getrusage's ru_maxrss is no good here: Linux
    # carries the parent's high-water mark across fork + exec into the child's ru_maxrss.)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

model_dir, run_dir, n_seq, seq_len, chunk, method = sys.argv[1:7]
reuse_freed_memory()  # as the command line does
model = model_lib.load_model(model_dir)
tokens = np.random.default_rng(0).integers(0, model.config.vocab_size, (int(n_seq), int(seq_len)), dtype=np.int64)
before = peak_kib()
settings = PipelineSettings(spec=PruneSpec(method=method, sparsity=0.5), chunk_size=int(chunk))
with prune_model(model, tokens, settings, run_dir) as run:
    timings = run.timings
peak = peak_kib()
print(json.dumps({"before_kib": before, "peak_kib": peak, "timings": timings}))
"""

# The same, through the command line with --save-model: argv is `dsnot-ref prune`'s.
CLI_CHILD = r"""
import json, sys
from dsnot_ref.cli import main

def peak_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

status = main(sys.argv[1:-1])
times = json.load(open(sys.argv[-1]))["times"]
print(json.dumps({"status": status, "peak_kib": peak_kib(), "timings": times}))
"""


def llama_config(hidden: int, n_layers: int) -> dict:
    heads = hidden // 64
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "intermediate_size": hidden * 11 // 4,
        "num_hidden_layers": n_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "head_dim": 64,
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": True,
        "vocab_size": 2048,
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def write_model(directory: Path, hidden: int, n_layers: int) -> Path:
    """A random LLaMA checkpoint (float32 safetensors + config.json)."""
    from dsnot_ref import model as model_lib  # noqa: PLC0415
    from dsnot_ref.config import ModelConfig  # noqa: PLC0415

    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(llama_config(hidden, n_layers), indent=2))
    config = ModelConfig.from_file(directory)
    rng = np.random.default_rng(n_layers)
    tensors = {}
    for name, shape in model_lib.expected_weights(config).items():
        if name.endswith("norm.weight"):
            tensors[name] = np.ones(shape, dtype=np.float32)
        else:
            tensors[name] = (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[-1])).astype(np.float32)
    save_file(tensors, str(directory / "model.safetensors"))
    return directory


def layer_bytes(hidden: int) -> int:
    ffn = hidden * 11 // 4
    return 4 * (4 * hidden * hidden + 3 * hidden * ffn + 2 * hidden)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--seqs", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=128)
    parser.add_argument("--chunk", type=int, default=4)
    parser.add_argument("--method", default="wanda")
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--seq-factor", type=int, default=4, help="also run the shallowest model with this many times S")
    parser.add_argument("--save-model", action="store_true", help="run `dsnot-ref prune --save-model` (the peak includes saving)")
    args = parser.parse_args()

    mib = 1024 * 1024
    chunk_bytes = args.chunk * args.seqlen * args.hidden * 4
    what = "dsnot-ref prune --save-model" if args.save_model else "prune_model"
    print(f"{what}: hidden {args.hidden}, MLP {args.hidden * 11 // 4}, S={args.seqs}, L={args.seqlen}, chunk B={args.chunk}, "
          f"method {args.method} 50%")
    print(f"one layer's weights: {layer_bytes(args.hidden) / mib:.1f} MiB; one activation chunk: {chunk_bytes / mib:.2f} MiB; "
          f"all activations of one boundary (on disk): {args.seqs * args.seqlen * args.hidden * 4 / mib:.1f} MiB")
    peaks = {}
    with tempfile.TemporaryDirectory(prefix="dsnot_mem_") as tmp:
        for n in args.layers:
            model_dir = write_model(Path(tmp) / f"model{n}", args.hidden, n)
            peaks[n] = measure(model_dir, Path(tmp) / f"run{n}", args.seqs, args)
        if args.seq_factor > 1:  # same model, more calibration sequences
            n = min(args.layers)
            many = measure(Path(tmp) / f"model{n}", Path(tmp) / f"run{n}x", args.seqs * args.seq_factor, args)
            print(f"peak with S={args.seqs * args.seq_factor} / with S={args.seqs} ({n} layers) = {many / peaks[n]:.3f}")
    if 4 in peaks and 16 in peaks:
        print(f"peak(16) / peak(4) = {peaks[16] / peaks[4]:.3f}  (target < 1.2)")


def measure(model_dir: Path, run_dir: Path, n_seq: int, args) -> int:
    """Run the pass in a fresh process; print and return its peak RSS in bytes."""
    mib = 1024 * 1024
    if args.save_model:
        tokens = run_dir.with_name(run_dir.name + "_tokens.npy")
        vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
        np.save(tokens, np.random.default_rng(0).integers(0, vocab, (n_seq, args.seqlen), dtype=np.int64))
        argv = ["prune", "--model", str(model_dir), "--prune-method", args.method, "--sparsity-ratio", "0.5",
                "--calibration-tokens", str(tokens), "--eval-dataset", "none", "--chunk-size", str(args.chunk),
                "--run-dir", str(run_dir), "--save-model", str(run_dir.with_name(run_dir.name + "_saved")),
                "--results", str(run_dir.with_name(run_dir.name + ".json")), "--quiet"]
        command = [sys.executable, "-c", CLI_CHILD, *argv, argv[-2]]
    else:
        command = [sys.executable, "-c", CHILD, str(model_dir), str(run_dir), str(n_seq), str(args.seqlen), str(args.chunk),
                   args.method]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    peak = result["peak_kib"] * 1024
    weights = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    n_layers = json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
    after_load = f"RSS after load {result['before_kib'] / 1024:6.1f} MiB, " if "before_kib" in result else ""
    print(f"{n_layers:3d} layers, S={n_seq:4d}: checkpoint {weights / mib:7.1f} MiB, {after_load}"
          f"peak RSS {peak / mib:6.1f} MiB, seconds "
          + ", ".join(f"{k} {v:.2f}" for k, v in result["timings"].items()))
    return peak


if __name__ == "__main__":
    main()
