"""What does the SparseSwaps search cost, next to DSnoT and the calibration forward pass?

    python benchmarks/swaps.py [--shapes 576x576 1536x576 576x1536 4096x4096 11008x4096]
                               [--window 32] [--refresh 8] [--max-swaps 100] [--rows 0]
                               [--threads 0] [--baseline REV]

For each weight shape [R, C] (random weights, correlated random tokens, 60 % unstructured Wanda
mask) it times:

- the vectorised SparseSwaps search (``methods.swaps.sparse_swaps_from_gram``) with the given
  settings, and with ``--exact`` also the exact best pair (window 0, refresh 1);
- the vectorised DSnoT, reference variant, 50 cycles (``methods.refiners.dsnot``);
- the calibration forward matmul of that layer at S = 32, L = 512: ``[16384, C] @ [C, R]``
  in float32 (timed on 2,048 tokens and scaled by 8);

and prints the ratios of CPU time (``time.process_time``: every thread of this process, so BLAS
threads count; wall time means little on a machine shared with other jobs), the relative error
reached, the swaps per row and the memory of G (C × C float64) and of one block's working
arrays. ``--baseline REV`` also times ``dsnot_ref/methods/swaps.py`` as it was at git revision
REV (read with ``git show``) on the same problems in the same run, checks that it makes the same
swaps, and prints the speed-up in CPU and in wall time (the search uses ``--threads`` threads;
wall time counts them, CPU time does not, and on a loaded machine wall time is noisy).
``--rows N`` times the search on the first N rows only and scales linearly to R (rows
are independent); 0 = all rows. G comes from 2·C random tokens, a rank-64 shared part plus
independent noise (the search's cost does not depend on the token count). Asserts nothing:
speed depends on the machine; compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dsnot_ref.methods.dsnot.common import DSnoTSettings
from dsnot_ref.methods.refiners import dsnot
from dsnot_ref.methods.scores import unstructured_mask, wanda_score
from dsnot_ref.methods.gram import row_squared_errors
from dsnot_ref.methods.swaps import SwapSettings, rows_per_block, sparse_swaps_from_gram, window_size

S, L = 32, 512
FORWARD_TOKENS = 2048  # the forward matmul is timed on this many tokens and scaled to S·L


def synthetic(n_rows: int, n_cols: int, seed: int = 0):
    """Weights [R, C], tokens X [2C, C]: a rank-64 shared part plus noise, unevenly scaled columns."""
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.standard_normal(n_cols))
    shared = rng.standard_normal((2 * n_cols, 64)) @ rng.standard_normal((64, n_cols)) / 8
    x = (shared + rng.standard_normal((2 * n_cols, n_cols)) + 0.1) * scale
    w = rng.standard_normal((n_rows, n_cols)) * 0.02
    return w, x


def timed(fn):
    """(CPU seconds of this process, all threads, result): fairer than wall time on a shared machine."""
    t0 = time.process_time()
    out = fn()
    return time.process_time() - t0, out


def timed_both(fn):
    """(CPU seconds, wall seconds, result)."""
    t0 = time.perf_counter()
    cpu, out = timed(fn)
    return cpu, time.perf_counter() - t0, out


def baseline_module(rev: str):
    """``dsnot_ref.methods.swaps`` as it was at git revision ``rev``, imported beside today's."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "show", f"{rev}:dsnot_ref/methods/swaps.py"], cwd=root,
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "swaps_baseline.py"
    path.write_text(source)
    name = "dsnot_ref.methods.swaps_baseline"  # inside the package, so its relative imports resolve
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def compare_baseline(base, w, pruned0, gram, s: SwapSettings, new_times, new_result, scale: float) -> None:
    """Time the baseline's search on the same rows; same swaps? speed-up in CPU and wall time."""
    fields = {f: getattr(s, f) for f in ("max_swaps", "tol", "window", "refresh", "block_rows")}
    cpu, wall, old = timed_both(lambda: base.sparse_swaps_from_gram(w, pruned0, gram, base.SwapSettings(**fields)))
    same = (np.array_equal(old.pruned, new_result.pruned) and np.array_equal(old.log, new_result.log)
            and np.array_equal(old.log_delta, new_result.log_delta))
    print(f"        baseline {cpu * scale:.2f} s CPU, {wall * scale:.2f} s wall; this version "
          f"{new_times[0]:.2f} s CPU, {new_times[1]:.2f} s wall: {cpu * scale / new_times[0]:.2f} x faster in CPU, "
          f"{wall * scale / new_times[1]:.2f} x in wall time; {'same swaps' if same else 'DIFFERENT SWAPS'}")


def bench(n_rows: int, n_cols: int, cfg: SwapSettings, rows: int, exact: bool, base=None) -> None:
    w, x = synthetic(n_rows, n_cols)
    gram = x.T @ x  # [C, C]
    seq_sq = (x**2).sum(axis=0)
    seq_sum = x.sum(axis=0)
    var = x.var(axis=0)
    pruned0 = unstructured_mask(wanda_score(w, seq_sq), 0.6)
    part = n_rows if rows <= 0 else min(rows, n_rows)
    scale = n_rows / part

    x32 = np.random.default_rng(1).standard_normal((FORWARD_TOKENS, n_cols)).astype(np.float32)
    w32 = w.astype(np.float32)
    t_fwd = timed(lambda: x32 @ w32.T)[0] * (S * L / FORWARD_TOKENS)  # scaled to S·L tokens
    del x32
    t_dsnot, _ = timed(lambda: dsnot(w32, pruned0, seq_sum, seq_sq, var, DSnoTSettings()))
    exact_cfg = SwapSettings(window=0, refresh=1, max_swaps=cfg.max_swaps, tol=cfg.tol, threads=cfg.threads)
    settings = [("swaps", cfg)] + ([("exact", exact_cfg)] if exact else [])
    before = row_squared_errors(w[:part], pruned0[:part], gram).sum()
    energy = np.sum(w[:part] * (w[:part] @ gram))
    g_mb = n_cols * n_cols * 8 / 2**20
    print(f"[{n_rows} x {n_cols}]  G {g_mb:.0f} MiB  forward [{S * L} x {n_cols}] @ [{n_cols} x {n_rows}] {t_fwd:.3f} s"
          f"  DSnoT (reference, 50 cycles) {t_dsnot:.3f} s")
    for name, s in settings:
        t, wall, res = timed_both(lambda s=s: sparse_swaps_from_gram(w[:part], pruned0[:part], gram, s))
        t, wall = t * scale, wall * scale
        k = window_size(s, n_cols)
        block = rows_per_block(s, n_cols, k, None)
        print(f"  {name:5s} window {s.window} refresh {s.refresh} max {s.max_swaps} tol {s.tol:g}: "
              f"{t:.2f} s{' (scaled from %d rows)' % part if part < n_rows else ''}"
              f" = {t / t_fwd:.1f} x forward, {t / max(t_dsnot, 1e-9):.1f} x DSnoT;"
              f" rel. error {before / energy:.4f} -> {res.error_after.sum() / energy:.4f}"
              f" ({1 - res.error_after.sum() / before:.1%} lower); swaps/row {res.swaps.mean():.1f};"
              f" block {block} rows ({block * n_cols * 8 / 2**20:.0f} MiB per [rows, C] array)")
        if base is not None:
            compare_baseline(base, w[:part], pruned0[:part], gram, s, (t, wall), res, scale)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["192x576", "576x576", "1536x576", "576x1536", "4096x4096", "11008x4096"])
    p.add_argument("--window", type=int, default=SwapSettings().window)
    p.add_argument("--refresh", type=int, default=SwapSettings().refresh)
    p.add_argument("--max-swaps", type=int, default=SwapSettings().max_swaps)
    p.add_argument("--tol", type=float, default=SwapSettings().tol)
    p.add_argument("--rows", type=int, default=0, help="time the first N rows and scale to R (0: all)")
    p.add_argument("--exact", action="store_true", help="also the exact best pair (window 0, refresh 1)")
    p.add_argument("--threads", type=int, default=SwapSettings().threads, help="search threads (0: every CPU)")
    p.add_argument("--baseline", metavar="REV", help="also time swaps.py of this git revision, same problems")
    args = p.parse_args()
    cfg = SwapSettings(max_swaps=args.max_swaps, tol=args.tol, window=args.window, refresh=args.refresh,
                       threads=args.threads)
    base = baseline_module(args.baseline) if args.baseline else None
    for shape in args.shapes:
        n_rows, n_cols = (int(v) for v in shape.lower().split("x"))
        bench(n_rows, n_cols, cfg, args.rows, args.exact, base)


if __name__ == "__main__":
    main()
