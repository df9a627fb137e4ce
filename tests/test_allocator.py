"""allocator.reuse_freed_memory: sets glibc's thresholds where it can, does nothing elsewhere."""

import platform

import numpy as np
import pytest

from dsnot_ref import allocator


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_sets_both_thresholds_on_glibc():
    assert allocator.reuse_freed_memory() is True
    x = np.ones(1 << 22, dtype=np.float32)  # 16 MiB: from the heap now; allocation still works
    assert float(x.sum()) == float(1 << 22)


def test_does_nothing_off_linux(monkeypatch):
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    assert allocator.reuse_freed_memory() is False


def test_does_nothing_without_glibc(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("musl", "1.2"))
    assert allocator.reuse_freed_memory() is False
