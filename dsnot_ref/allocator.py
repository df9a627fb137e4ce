"""Keep freed memory in the process, so that NumPy's large temporaries reuse warm pages.

A decoder layer's forward pass on one chunk makes a few hundred temporaries of 1-10 MiB (the
products, the attention scores, the element-wise steps). glibc's malloc serves a request above
its mmap threshold (128 KiB at start, raised as the program runs, at most 32 MiB) with fresh
pages from the kernel, and gives memory freed at the top of its heap back to the kernel above
its trim threshold. Either way the next temporary lands on pages the kernel must zero on first
touch: one minor page fault per 4 KiB. On the demo job that is about 37,000 faults per layer,
and the products run on cold cache lines.

``reuse_freed_memory`` raises both thresholds to 1 GiB (mallopt M_MMAP_THRESHOLD and
M_TRIM_THRESHOLD), so freed blocks stay in the heap and are handed out again, and keeps one
arena (M_ARENA_MAX = 1): the pipeline's worker threads (dsnot_ref/threads.py) would otherwise
each get an arena of their own, each keeping its own freed temporaries, and the peak grows with
the threads (the demo job with two workers: benchmarks/results/demo_job_peak_rss.txt).
``benchmarks/allocator.py`` on the demo job's first three layers (Wanda 60% + DSnoT official,
32 × 512, fresh processes alternating, medians of 3): minor faults 119k -> 8k, wall time 1.11
times lower, peak RSS 1.10 times higher (memory once used stays mapped until the process ends;
flatness in depth is unchanged, docs/speed.md).

The command line calls it once at start (``cli.main``), and so do the benchmarks that time the
pipeline directly. The library itself never changes process-wide settings. Elsewhere than on
glibc (macOS, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1  # from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
THRESHOLD_BYTES = 1 << 30


def reuse_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds to 1 GiB and one arena; True when all three were set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all([bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES)), bool(mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES)),
                bool(mallopt(M_ARENA_MAX, 1))])
