"""Chunks of calibration sequences on worker threads, BLAS on one thread each.

NumPy's element-wise work (softmax, SiLU, RoPE, norms, the statistics' sums) runs on one core;
only its matrix products use several, through the BLAS library's own threads. The pipeline's
chunks are independent until their statistics are merged, so on W cores it runs W chunks at once
on W threads (NumPy releases the GIL inside its loops) with the BLAS pinned to one thread for
the while: every core then does a chunk's products and its element-wise work. Results come back
in chunk order and are merged in that order, so what is merged, and how, is the same as in a
plain loop over the chunks. A chunk's own arithmetic is the same on any thread; whether a BLAS
product's rounding depends on how many threads the BLAS uses is the BLAS build's choice.

The BLAS is pinned through OpenBLAS's ``openblas_set_num_threads``, in every OpenBLAS this
process has loaded (NumPy's and SciPy's wheels each carry one, ``scipy_openblas``; Debian's
packages link the system's ``libopenblas``). Where none is found (Accelerate, MKL, a platform
without ``/proc/self/maps``) the chunks run one after the other, with the BLAS as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

# (setter, getter) symbol names of OpenBLAS builds: NumPy's wheels (64-bit ints), SciPy's, plain
OPENBLAS_SYMBOLS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def loaded_openblas() -> list:
    """(set_num_threads, get_num_threads) of every OpenBLAS this process has loaded (NumPy's and
    SciPy's wheels each carry their own), found among its mapped files; [] where there is none."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = sorted({line.split(maxsplit=5)[-1].strip() for line in maps if "openblas" in line.lower()})
    except OSError:
        return []
    found = (openblas_functions(path) for path in paths if path.startswith("/") and ".so" in path)
    return [functions for functions in found if functions is not None]


@functools.cache
def openblas_functions(path: str):
    """(set_num_threads, get_num_threads) of the OpenBLAS library at ``path``, or None."""
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for setter, getter in OPENBLAS_SYMBOLS:
        if hasattr(lib, setter) and hasattr(lib, getter):
            set_threads, get_threads = getattr(lib, setter), getattr(lib, getter)
            set_threads.argtypes, set_threads.restype = [ctypes.c_int], None
            get_threads.argtypes, get_threads.restype = [], ctypes.c_int
            return set_threads, get_threads
    return None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[bool]:
    """Every loaded OpenBLAS on one thread inside the block; yields whether there was one."""
    libraries = loaded_openblas()
    before = [get_threads() for _, get_threads in libraries]
    for set_threads, _ in libraries:
        set_threads(1)
    try:
        yield bool(libraries)
    finally:
        for (set_threads, _), count in zip(libraries, before):
            set_threads(count)


def ordered_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """fn(item) for every item, on ``workers`` threads, yielded in the items' order.

    At most workers + 1 items are started and not yet yielded, so results (a chunk's outputs or
    partial sums) never pile up beyond that. workers = 1 is a plain loop on this thread.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dsnot-chunk")
    pending = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def chunk_workers(wanted: int) -> Iterator[int]:
    """How many chunks to run at once in the block: ``wanted`` with the BLAS pinned to one
    thread, or 1 where it cannot be pinned (then the BLAS keeps its threads)."""
    if wanted <= 1:
        yield 1
        return
    with single_threaded_blas() as pinned:
        yield wanted if pinned else 1
