"""What keeping freed memory in the process (dsnot_ref/allocator.py) buys: the same job with and without.

Runs the first few layers of the demo job (SmolLM2-135M, Wanda 60% + DSnoT official, S × L
calibration windows from the bundled corpus) in fresh processes, alternately with glibc's
default thresholds and with ``reuse_freed_memory()``, and prints each run's wall time, minor
page faults, system time and peak RSS, then the ratios of the medians. Prints, never asserts.

    python benchmarks/allocator.py [--layers 3] [--repeats 3] [--nsamples 32] [--seqlen 512]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
import numpy as np
from dsnot_ref import allocator, cache, model as model_lib
from dsnot_ref.methods import PruneSpec
from dsnot_ref.methods.dsnot.common import DSnoTSettings
from dsnot_ref.pipeline import TIMING_KEYS, PipelineSettings, prune_one_layer, write_embeddings
from dsnot_ref.timing import Timer

model_dir, tokens_path, n_layers, reuse = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
if reuse:
    assert allocator.reuse_freed_memory(), "mallopt failed"
model = model_lib.load_model(model_dir)
tokens = np.load(tokens_path)
settings = PipelineSettings(spec=PruneSpec(method="dsnot", sparsity=0.6, dsnot=DSnoTSettings(variant="official")))
with tempfile.TemporaryDirectory(prefix="dsnot_alloc_") as tmp:
    run = Path(tmp)
    cache.activation_path(run, 0).parent.mkdir(parents=True, exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    write_embeddings(model, tokens, cache.activation_path(run, 0), settings, np, Timer(TIMING_KEYS))
    for i in range(n_layers):
        prune_one_layer(model, i, settings, run, np)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
with open("/proc/self/status") as f:
    peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({"wall": wall, "minflt": after.ru_minflt - before.ru_minflt,
                  "sys": after.ru_stime - before.ru_stime, "peak_mib": peak / 1024}))
"""


def run_child(model_dir: Path, tokens_path: Path, n_layers: int, reuse: bool) -> dict:
    argv = [sys.executable, "-c", CHILD, str(model_dir), str(tokens_path), str(n_layers), "1" if reuse else "0"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    args = parser.parse_args()

    from dsnot_ref import data, demo_model  # noqa: PLC0415

    model_dir = demo_model.demo_model_dir()
    if not demo_model.is_complete(model_dir):
        print(f"demo model not cached in {model_dir}; run `dsnot-ref fetch-model smollm2-135m`", file=sys.stderr)
        return 1
    tokenizer = data.load_tokenizer(model_dir)
    tokens = data.calibration_windows(tokenizer, Path(data.BUNDLED_CALIBRATION), args.nsamples, args.seqlen, 0)
    print(f"{model_dir.name}: first {args.layers} layers, Wanda 60% + DSnoT official, "
          f"S={args.nsamples}, L={args.seqlen}; {args.repeats} runs each, alternating")
    runs: dict[bool, list[dict]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="dsnot_alloc_") as tmp:
        tokens_path = Path(tmp) / "calib.npy"
        np.save(tokens_path, tokens)
        for _ in range(args.repeats):
            for reuse in (False, True):
                result = run_child(model_dir, tokens_path, args.layers, reuse)
                runs[reuse].append(result)
                print(f"  {'reuse  ' if reuse else 'default'}  wall {result['wall']:6.2f} s  "
                      f"minor faults {result['minflt']:7d}  sys {result['sys']:5.2f} s  peak {result['peak_mib']:6.1f} MiB")
    median = {reuse: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for reuse, rs in runs.items()}
    print(f"default / reuse, medians: wall {median[False]['wall'] / median[True]['wall']:.2f}, "
          f"minor faults {median[False]['minflt'] / max(1, median[True]['minflt']):.1f}, "
          f"peak RSS {median[False]['peak_mib'] / median[True]['peak_mib']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
