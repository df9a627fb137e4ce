"""Atomic writes: all or nothing, with ordinary permissions."""

import os
import stat

import pytest

from dsnot_ref.errors import UserError
from dsnot_ref.io_utils import atomic_directory, atomic_path, atomic_write_json


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_atomic_write_has_umask_permissions(tmp_path):
    target = tmp_path / "r.json"
    atomic_write_json(target, {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert target.read_text().strip().startswith("{")


def test_atomic_directory_refuses_nonempty_and_replaces_with_overwrite(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        with atomic_directory(out):
            pass
    with atomic_directory(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("y")
    assert sorted(os.listdir(out)) == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_atomic_directory_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "model"
    with pytest.raises(ValueError):
        with atomic_directory(out) as tmp:
            (tmp / "part").write_text("z")
            raise ValueError("boom")
    assert not out.exists()
    assert os.listdir(tmp_path) == []
