"""Choosing NumPy or CuPy. The only module that imports CuPy, and only when asked.

Array code elsewhere takes its array module from its inputs (``array_module(w)``), so a
function written for NumPy runs unchanged on CuPy arrays. Data moves between host and device
only through ``to_device`` and ``to_numpy``, at the edges (loading a layer, writing results).
"""

from __future__ import annotations

import os
from types import ModuleType

import numpy as np

from .errors import UserError

BACKENDS = ("numpy", "cupy")


def backend_name(name: str | None = None) -> str:
    """The backend asked for: the argument, else $DSNOT_REF_BACKEND, else "numpy"."""
    chosen = (name or os.environ.get("DSNOT_REF_BACKEND") or "numpy").lower()
    if chosen not in BACKENDS:
        raise UserError(f"unknown backend {chosen!r}; choose one of {', '.join(BACKENDS)}")
    return chosen


def get_backend(name: str | None = None) -> ModuleType:
    """The array module for a backend name; a clear UserError when CuPy cannot run."""
    chosen = backend_name(name)
    if chosen == "numpy":
        return np
    try:
        import cupy  # noqa: PLC0415 - lazy on purpose: CuPy is an optional extra
    except ImportError as exc:
        raise UserError(
            f"backend 'cupy' requested but CuPy is not importable ({exc}); "
            "install it with: pip install -e .[gpu]"
        ) from None
    try:
        n_gpus = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        raise UserError(f"backend 'cupy' requested but no GPU is visible ({exc})") from None
    if n_gpus == 0:
        raise UserError("backend 'cupy' requested but no GPU is visible")
    return cupy


def array_module(*arrays) -> ModuleType:
    """NumPy or CuPy, whichever the arrays live in (NumPy for plain Python values)."""
    for a in arrays:
        if type(a).__module__.startswith("cupy"):
            import cupy  # noqa: PLC0415

            return cupy
    return np


def to_device(a: np.ndarray, xp: ModuleType):
    """Host array -> array of backend ``xp`` (a no-op for NumPy)."""
    return a if xp is np else xp.asarray(a)


def to_numpy(a) -> np.ndarray:
    """Any backend's array -> NumPy array on the host (a no-op for NumPy)."""
    if isinstance(a, np.ndarray):
        return a
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)
