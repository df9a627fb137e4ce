"""How long does the DSnoT loop take, next to the calibration forward pass of the same layer?

    python benchmarks/dsnot_loop.py [--shapes 4096x4096 11008x4096] [--loop-rows 64] [--variants reference official]

For each weight shape [R, C] (random weights and statistics, 60 % unstructured Wanda mask,
50 cycles, default settings) it times:

- the vectorised DSnoT (``methods.refiners.dsnot``: list construction + the cycle loop),
- the plain per-row DSnoT (``methods.dsnot.per_row.dsnot_per_row``) on the first ``--loop-rows`` rows
  only, scaled linearly to R rows (rows are independent apart from the cycle count, so this
  estimate is fair; it is an estimate, not a measurement of all R rows),
- the calibration forward matmul of that layer at S = 32 sequences of L = 512 tokens:
  ``[16384, C] @ [C, R]`` in float32 (what one pass of the calibration data through this
  linear layer costs; the pipeline does this at least once per layer),

and prints the ratios. Target: vectorised DSnoT < 5 % of the forward matmul. Both use every
core: the matmul through BLAS, DSnoT's list building through ``selection.LIST_THREADS`` threads
(printed). On a machine shared with other jobs both slow down, but not equally: compare runs
made at the same load. Prints results; asserts nothing (speed depends on the machine).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dsnot_ref.methods import selection
from dsnot_ref.methods.dsnot.common import DSnoTSettings
from dsnot_ref.methods.dsnot.official_per_row import official_per_row
from dsnot_ref.methods.dsnot.per_row import dsnot_per_row
from dsnot_ref.methods.refiners import dsnot
from dsnot_ref.methods.scores import unstructured_mask, wanda_score

S, L = 32, 512


def synthetic(n_rows: int, n_cols: int, seed: int = 0):
    """Random weight [R, C] and statistics shaped like an LLM layer's (per-sequence-sum units)."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((n_rows, n_cols)) * 0.02).astype(np.float32)
    mean = rng.standard_normal(n_cols) * 0.1
    var = np.exp(rng.standard_normal(n_cols))
    seq_sum = L * mean
    seq_sq = L * (var + mean**2)
    return w, seq_sum, seq_sq, var


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench(n_rows: int, n_cols: int, loop_rows: int, variants, repeat: int) -> None:
    w, seq_sum, seq_sq, var = synthetic(n_rows, n_cols)
    pruned0 = unstructured_mask(wanda_score(w, seq_sq), 0.6)
    x = np.random.default_rng(1).standard_normal((S * L, n_cols), dtype=np.float32)
    t_forward = best_of(lambda: x @ w.T, repeat)                          # [S·L, C] @ [C, R]
    print(f"\n[{n_rows} x {n_cols}]  forward matmul [{S * L}, {n_cols}] @ [{n_cols}, {n_rows}] "
          f"float32: {t_forward:.3f} s")
    for variant in variants:
        settings = DSnoTSettings(variant=variant, max_cycle_time=50)
        result = {}

        def vectorised():
            result["r"] = dsnot(w, pruned0, seq_sum, seq_sq, var, settings)

        t_vec = best_of(vectorised, repeat)
        sub = slice(0, min(loop_rows, n_rows))
        t0 = time.perf_counter()
        plain = official_per_row if variant == "official" else dsnot_per_row
        plain(w[sub], pruned0[sub], seq_sum, seq_sq, var, settings)
        t_loop = (time.perf_counter() - t0) * n_rows / (sub.stop - sub.start)
        r = result["r"]
        print(f"  {variant:9s}: vectorised {t_vec:.3f} s ({r.cycles} cycles, {r.n_swaps} swaps) = "
              f"{100 * t_vec / t_forward:.1f} % of forward | row loop ~{t_loop:.1f} s "
              f"(measured on {sub.stop} rows, scaled) = {t_loop / t_vec:.0f}x slower than vectorised")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["4096x4096", "11008x4096"])
    parser.add_argument("--loop-rows", type=int, default=64)
    parser.add_argument("--variants", nargs="+", default=["reference", "official"])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"DSnoT list threads: {selection.LIST_THREADS}")
    for shape in args.shapes:
        n_rows, n_cols = (int(v) for v in shape.lower().split("x"))
        bench(n_rows, n_cols, args.loop_rows, args.variants, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
