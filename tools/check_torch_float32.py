"""Optional developer check: dsnot_ref's float32 official arithmetic against torch's own ops.

    /work/venv-torch/bin/python tools/check_torch_float32.py [--rows 64] [--seed 0]

Needs torch (never needed by the package or its tests; install it in a separate virtual
environment). For random float32 rows of many widths (tails of every length, the demo
model's 576 and 1536, LLaMA's 4096 and 11008) and rows with exact zeros where a mask keeps a
weight, it checks bit for bit:

- ``torch_row_sum`` (dsnot_ref/released/torch_sum.py) against ``torch.sum(x, dim=1)`` on CPU, with the
  SIMD width of the running torch (``torch.backends.cpu.get_cpu_capability()``);
- ``torch_column_sum`` and ``sequential_sum`` against ``torch.sum`` and ``torch.norm(p=2)`` over
  the tokens of one sequence, on the transposed [C, L] view the released wrapper reduces;
- the official variant's element-wise quantities against the released code's expressions:
  W · sum_metric_row, c / var**γ for γ in (1, 2), the running ε update and the threshold test.

Known difference, reported but not failed: torch's CPU float32 ``sqrt`` (and ``pow(·, 0.5)``)
is not correctly rounded (MKL's vector sqrt: measured within 0.75 ulp, the last bit differs
for ~17% of inputs on an AMD EPYC with torch 2.13.0), while NumPy's is IEEE's. So
|W| · sqrt(scaler_row) can differ in the last bit; it is printed with its ulp range.

Prints one line per check and exits 1 on any unexpected difference.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from dsnot_ref.released.torch_sum import sequential_sum, torch_column_sum, torch_row_sum

WIDTHS = (1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 100, 127, 129, 255, 256, 257, 384, 511,
          513, 576, 1000, 1536, 2047, 2049, 4096, 5000, 11008, 16385)


def lanes_of_torch() -> int:
    """SIMD width of torch's Vectorized<float> in this process."""
    return 16 if torch.backends.cpu.get_cpu_capability().startswith("AVX512") else 8


def check(name: str, ours: np.ndarray, theirs: np.ndarray) -> bool:
    same = ours.dtype == theirs.dtype and np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))
    n_diff = int(np.count_nonzero(ours != theirs))
    print(f"{'ok  ' if same else 'DIFF'} {name}: {n_diff} of {ours.size} differ")
    return same


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    lanes = lanes_of_torch()
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{lanes} float32 lanes, {torch.get_num_threads()} threads")
    ok = True
    for width in WIDTHS:
        x = (rng.standard_normal((args.rows, width)) * np.exp(rng.standard_normal(width))).astype(np.float32)
        x[rng.random(x.shape) < 0.5] = 0.0                                  # kept weights: c = 0
        theirs = torch.sum(torch.from_numpy(x), dim=1, keepdim=True).numpy()[:, 0]
        ok &= check(f"row sum C={width}", torch_row_sum(x, lanes), theirs)
    for width in (576, 1536):                                               # the released wrapper's per-sequence sums
        x = (rng.standard_normal((512, width)) * 3 + 0.3).astype(np.float32)   # one sequence [L, C]
        t = torch.from_numpy(x).t()                                          # [C, L] strided, as add_batch
        ok &= check(f"column sum C={width}", torch_column_sum(x[None])[0], torch.sum(t, dim=1).numpy())
        ok &= check(f"column norm C={width}", np.sqrt(sequential_sum((x * x)[None])[0]),
                    torch.norm(t, p=2, dim=1).numpy())

    w = (rng.standard_normal((args.rows, 1536)) * 0.05).astype(np.float32)
    seq_sum = (rng.standard_normal(1536) * 30).astype(np.float32)
    seq_sq = np.abs(rng.standard_normal(1536) * 500).astype(np.float32)
    var = np.abs(rng.standard_normal(1536) * 3).astype(np.float32)
    tw, ts, tq, tv = (torch.from_numpy(a) for a in (w, seq_sum, seq_sq, var))
    c = w * seq_sum[None, :]
    ok &= check("W * sum_metric_row", c, (tw * ts.reshape((1, -1))).numpy())
    root = torch.sqrt(tq).numpy()
    ulps = root.view(np.int32).astype(np.int64) - np.sqrt(seq_sq).view(np.int32)
    print(f"known sqrt(scaler_row): torch's differs from IEEE sqrt in {np.count_nonzero(ulps)} of "
          f"{ulps.size} entries, by {ulps.min()}..{ulps.max()} ulp")
    ok &= check("|W| * sqrt(scaler_row), same root", np.abs(w) * root[None, :],
                (torch.abs(tw) * torch.sqrt(tq.reshape((1, -1)))).numpy())
    for gamma in (1.0, 2.0):
        theirs = torch.from_numpy(c.copy())
        theirs /= torch.pow(tv.reshape((1, -1)), gamma)
        ok &= check(f"c / var**{gamma}", c / (var ** gamma)[None, :], theirs.numpy())
    eps, c_q, c_g = (rng.standard_normal(args.rows).astype(np.float32) for _ in range(3))
    accept = rng.random(args.rows) < 0.5
    zero = np.float32(0)
    ours = (eps + np.where(accept, c_q, zero)) - np.where(accept, c_g, zero)
    te = torch.from_numpy(eps.copy())
    ta, tcq, tcg = torch.from_numpy(accept), torch.from_numpy(c_q), torch.from_numpy(c_g)
    te += torch.where(ta, tcq, torch.zeros_like(tcq))
    te -= torch.where(ta, tcg, torch.zeros_like(tcg))
    ok &= check("running eps update", ours, te.numpy())
    ok &= check("eps + c_q - c_g", eps + c_q - c_g, (torch.from_numpy(eps) + tcq - tcg).numpy())
    threshold = 0.1
    ours_gt = np.abs(eps) > np.float32(threshold)
    theirs_gt = (abs(torch.from_numpy(eps)) > threshold).numpy()
    ok &= bool(np.array_equal(ours_gt, theirs_gt))
    print(f"{'ok  ' if np.array_equal(ours_gt, theirs_gt) else 'DIFF'} |eps| > threshold (float32 threshold)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
