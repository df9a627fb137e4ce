"""Activation files and the run manifest (dsnot_ref.cache)."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from dsnot_ref import cache
from dsnot_ref.errors import UserError


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_file_roundtrip_in_chunks(tmp_path, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5, 3)).astype(dtype)
    path = cache.activation_path(tmp_path, 2)
    with cache.ActivationWriter(path, x.shape, dtype) as w:
        for start in range(0, 7, 3):
            w.write(start, x[start : start + 3])
    # an ordinary .npy file: numpy's own reader agrees, memory-mapped or not
    np.testing.assert_array_equal(np.load(path), x)
    mapped = cache.open_activations(path)
    assert isinstance(mapped, np.memmap) and mapped.dtype == dtype
    np.testing.assert_array_equal(mapped, x)
    np.testing.assert_array_equal(cache.read_chunk(path, 2, 6), x[2:6])
    np.testing.assert_array_equal(cache.read_chunk(path, 6, 9), x[6:])  # stop clipped at S
    assert cache.activation_info(path) == ((7, 5, 3), np.dtype(dtype))
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_activation_file_not_created_on_failure(tmp_path):
    path = cache.activation_path(tmp_path, 0)
    with pytest.raises(RuntimeError):
        with cache.ActivationWriter(path, (4, 2, 2), np.float32) as w:
            w.write(0, np.ones((2, 2, 2), dtype=np.float32))
            raise RuntimeError("killed half way")
    assert not path.exists()
    assert list(path.parent.iterdir()) == []


def test_truncated_file_is_a_user_error(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.zeros((4, 3, 2), dtype=np.float32))
    data = path.read_bytes()
    path.write_bytes(data[:-8])
    with pytest.raises(UserError, match="truncated"):
        cache.read_chunk(path, 2, 4)


def make_model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text('{"hidden_size": 8}')
    (d / "model.safetensors").write_bytes(b"x" * 100)
    return d


def test_model_identity_is_content(tmp_path):
    """The identity of a model is its bytes: a copy elsewhere is the same model; a weight file
    rewritten with other bytes of the same size and the same modification time is another."""
    d = make_model_dir(tmp_path)
    ident = cache.model_identity(d)
    assert ident["weight_files"]["model.safetensors"] == hashlib.sha256(b"x" * 100).hexdigest()
    copy = tmp_path / "elsewhere"
    shutil.copytree(d, copy)
    assert cache.model_identity(copy) == ident
    st = (d / "model.safetensors").stat()
    (d / "model.safetensors").write_bytes(b"y" * 100)
    os.utime(d / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache.model_identity(d) != ident
    with pytest.raises(UserError, match="config.json"):
        cache.model_identity(tmp_path / "nowhere")


def finish_layers(run: Path, n: int) -> None:
    """Stand-ins for the files of ``n`` finished layers (what mark_layers_done records)."""
    for i in range(n):
        for path in cache.finished_files(run, i):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{path.name}".encode())


def test_manifest_create_reopen_and_refuse(tmp_path):
    d = make_model_dir(tmp_path)
    run = tmp_path / "run"
    ident = cache.model_identity(d)
    settings = {"spec": {"method": "wanda", "sparsity": 0.5, "nm": [2, 4]}, "chunk_size": 4}
    m = cache.open_run(run, ident, "abc", settings, num_layers=3)
    assert m["layers_done"] == 0 and m["format_version"] == cache.FORMAT_VERSION
    finish_layers(run, 2)
    cache.activation_path(run, 2).parent.mkdir()
    cache.activation_path(run, 2).write_bytes(b"inputs of layer 2")
    m = cache.mark_layers_done(run, m, 1)
    m = cache.mark_layers_done(run, m, 2)
    on_disk = json.loads((run / cache.MANIFEST_NAME).read_text())
    assert on_disk["layers_done"] == 2
    # tuples compare equal to the lists JSON gives back
    settings_tuple = {"spec": {"method": "wanda", "sparsity": 0.5, "nm": (2, 4)}, "chunk_size": 4}
    assert cache.open_run(run, ident, "abc", settings_tuple, 3)["layers_done"] == 2

    other = {**settings, "spec": {**settings["spec"], "sparsity": 0.6}}
    with pytest.raises(UserError, match=r"spec\.sparsity: 0\.5 .* vs 0\.6"):
        cache.open_run(run, ident, "abc", other, 3)
    with pytest.raises(UserError, match="calibration_tokens_sha256"):
        cache.open_run(run, ident, "abd", settings, 3)
    (d / "config.json").write_text('{"hidden_size": 9}')
    with pytest.raises(UserError, match="config_sha256"):
        cache.open_run(run, cache.model_identity(d), "abc", settings, 3)
    assert json.loads((run / cache.MANIFEST_NAME).read_text()) == on_disk  # refused runs change nothing


def test_refuses_foreign_directory_and_bad_manifest(tmp_path):
    d = make_model_dir(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        cache.open_run(tmp_path / "busy", cache.model_identity(d), "t", {}, 1)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / cache.MANIFEST_NAME).write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        cache.open_run(tmp_path / "bad", cache.model_identity(d), "t", {}, 1)


def test_reopen_removes_temporaries_and_size_counts_them(tmp_path):
    d = make_model_dir(tmp_path)
    run = tmp_path / "run"
    cache.open_run(run, cache.model_identity(d), "t", {}, 2)
    base = cache.cache_size_bytes(run)
    stale = run / "acts" / ".layer_001.npy.x1.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"\0" * 1000)
    assert cache.cache_size_bytes(run) == base + 1000
    cache.open_run(run, cache.model_identity(d), "t", {}, 2)
    assert not stale.exists()
    assert cache.cache_size_bytes(run) == base
    assert os.path.exists(run / cache.MANIFEST_NAME)


def test_run_lock_joins_within_a_process_and_spares_foreign_directories(tmp_path):
    """A second run_lock of the same directory in the same process joins the first (the CLI holds
    the run directory around the pipeline, which takes it too); between processes it is exclusive
    (tests/test_run_ownership.py)."""
    run = tmp_path / "deep" / "run"
    with cache.run_lock(run) as outer:
        assert outer.made == [run, run.parent] and outer.fresh
        with cache.run_lock(run) as inner:
            assert inner is outer
    with cache.run_lock(run):  # released on exit
        pass
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        with cache.run_lock(foreign):
            pass
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]  # no lock file left there
