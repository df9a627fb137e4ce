"""CPU time of the exact weight update (``update_grouped``) per row, at the demo's and LLaMA-7B's widths.

Random problems (a positive definite Gram matrix, a diagonal plus a rank-64 Gaussian term;
Gaussian weights; a per-row magnitude mask): the solve's cost depends on the shapes only, not on the values. For each width C and
sparsity p it times ``update_grouped`` on ``rows`` rows (process CPU time, so another job on
the machine inflates it less than wall time) and reports the seconds per row and the flop rate
of the 2k³/3 LU flops (k = C − int(C·p) kept weights per row). The demo's sublayers are timed
whole (576 or 1536 rows); at C = 4096 and 11008 a few rows give the per-row cost, which a full
matrix multiplies by its row count (docs/weight_update.md §4).

    python benchmarks/weight_update_cost.py [--out benchmarks/results/weight_update_cost.json]

Set OPENBLAS_NUM_THREADS=1 on a shared machine (a threaded LAPACK call waits for busy cores).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dsnot_ref.methods.scores import unstructured_mask
from dsnot_ref.methods.weight_update import update_grouped

# (C, rows timed, what it stands for)
CASES = ((576, 576, "demo q/o_proj (576 rows; k/v_proj 192, gate/up 1536)"),
         (1536, 576, "demo down_proj (576 rows)"),
         (4096, 4, "LLaMA-7B q/k/v/o (4096 rows each), gate/up (11008 rows each)"),
         (11008, 1, "LLaMA-7B down_proj (4096 rows)"))
SPARSITIES = (0.6, 0.7)


def time_case(n_cols: int, rows: int, sparsity: float, rng) -> dict:
    factor = rng.standard_normal((n_cols, 64))
    hessian = factor @ factor.T + np.diag(rng.uniform(1.0, 2.0, n_cols))  # [C, C]
    w = rng.standard_normal((rows, n_cols))
    pruned = unstructured_mask(np.abs(w), sparsity)
    start = time.process_time()
    update_grouped(w, pruned, hessian)
    seconds = time.process_time() - start
    k = n_cols - int(n_cols * sparsity)
    return {"C": n_cols, "rows": rows, "sparsity": sparsity, "k": k, "cpu_s": seconds,
            "cpu_s_per_row": seconds / rows, "gflop_per_s": 2 * k**3 / 3 * rows / seconds / 1e9,
            "load_average": os.getloadavg()[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/weight_update_cost.json"))
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n_cols, n_rows, label in CASES:
        for p in SPARSITIES:
            row = {**time_case(n_cols, n_rows, p, rng), "stands_for": label}
            print(f"C {n_cols:5d} p {p:.1f} k {row['k']:5d}: {row['cpu_s_per_row'] * 1e3:9.2f} ms per row, "
                  f"{row['gflop_per_s']:5.1f} GFLOP/s", flush=True)
            rows.append(row)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "") if Path("/proc/cpuinfo").exists() else ""
    record = {"provenance": {"machine": f"{platform.node()}: {cpu}, {os.cpu_count()} CPUs, shared with other jobs",
                             "date": datetime.date.today().isoformat(), "commit": commit,
                             "command": shlex.join(["python", "benchmarks/weight_update_cost.py", *sys.argv[1:]]),
                             "environment": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS",)}},
              "rows": rows}
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
