"""A run owns its run directory: two processes never share one, a refused process touches
nothing, and a failed or interrupted run never removes work that is not its own.

The concurrency cases run real `dsnot-ref prune` processes; the first is held inside its first
layer (its pipeline waits for a file the test creates) while the second starts.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dsnot_ref import cache, pipeline
from dsnot_ref.cli import main
from dsnot_ref.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "data" / "fixtures" / "tiny-llama"

# A `dsnot-ref prune` process whose first layer waits until the file argv[1] exists; it writes
# argv[2] once it is inside the layer (holding its run directory).
HELD = """
import sys, time
from pathlib import Path
from dsnot_ref import pipeline
from dsnot_ref.cli import main

go, inside = Path(sys.argv[1]), Path(sys.argv[2])
real = pipeline.prune_one_layer
def held(*args, **kwargs):
    inside.touch()
    while not go.exists():
        time.sleep(0.05)
    return real(*args, **kwargs)
pipeline.prune_one_layer = held
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture
def calib(tmp_path):
    path = tmp_path / "calib.npy"
    np.save(path, np.random.default_rng(0).integers(3, 256, size=(2, 16), dtype=np.int64))
    return path


def prune_argv(calib: Path, *extra) -> list[str]:
    return ["prune", "--model", str(TINY), "--calibration-tokens", str(calib), "--eval-dataset", "none",
            "--prune-method", "wanda", "--sparsity-ratio", "0.5", "--quiet", *map(str, extra)]


def tree(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def start_held(tmp_path: Path, argv: list[str], env: dict) -> tuple[subprocess.Popen, Path]:
    go, inside = tmp_path / "go", tmp_path / "inside"
    child = subprocess.Popen([sys.executable, "-c", HELD, str(go), str(inside), *argv], env=env, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not inside.exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the first process never reached its first layer"
        time.sleep(0.05)
    return child, go


def run_second(argv: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dsnot_ref", *argv], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("explicit", [False, True], ids=["default-run-dir", "explicit-run-dir"])
def test_second_process_is_refused_and_touches_nothing(tmp_path, calib, explicit):
    """Table row 1: the same command twice. The second is refused in one line before any work and
    removes nothing; the first, held inside its first layer meanwhile, then finishes normally."""
    env = {**os.environ, "DSNOT_REF_HOME": str(tmp_path / "home")}
    run_dir = tmp_path / "run"
    extra = ("--run-dir", run_dir) if explicit else ()
    first, go = start_held(tmp_path, prune_argv(calib, *extra, "--results", tmp_path / "a.json"), env)
    try:
        if not explicit:
            (run_dir,) = (tmp_path / "home" / "runs").iterdir()
        before = tree(run_dir)
        second = run_second(prune_argv(calib, *extra, "--results", tmp_path / "b.json"), env)
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip().splitlines() == [
            f"dsnot-ref: error: run directory {run_dir} is in use by another process"]
        assert tree(run_dir) == before   # the first one's directory, untouched
        assert not (tmp_path / "b.json").exists()
    finally:
        go.touch()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert (tmp_path / "a.json").is_file()
    assert not run_dir.exists()   # the owner cleaned up after its success


def interrupted_run(tmp_path, calib, monkeypatch, *extra) -> Path:
    """A run stopped (KeyboardInterrupt) inside layer 1: layer 0 finished, a temporary written."""
    real = pipeline.prune_one_layer

    def stop_at_layer_1(model, i, settings, run_dir, *args, **kwargs):
        if i == 1:
            (Path(run_dir) / "acts" / ".layer_002.npy.x.tmp").write_bytes(b"partial")
            raise KeyboardInterrupt
        return real(model, i, settings, run_dir, *args, **kwargs)

    monkeypatch.setattr(pipeline, "prune_one_layer", stop_at_layer_1)
    assert main(prune_argv(calib, *extra)) == 130
    monkeypatch.setattr(pipeline, "prune_one_layer", real)


def test_interrupted_run_keeps_its_layers_and_loses_its_temporaries(tmp_path, calib, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    interrupted_run(tmp_path, calib, monkeypatch, "--run-dir", run_dir)
    err = capsys.readouterr().err
    assert f"run directory kept: {run_dir} (1 layers done" in err
    assert cache.read_manifest(run_dir)["layers_done"] == 1
    assert not list(run_dir.rglob("*.tmp"))
    argv = [a for a in prune_argv(calib, "--run-dir", run_dir) if a != "--quiet"]
    assert main(argv) == 0   # resumes and finishes
    assert "found a run directory left by an earlier run" in capsys.readouterr().err
    assert not run_dir.exists()


def test_failure_after_an_earlier_run_keeps_that_run(tmp_path, calib, monkeypatch, capsys):
    """Table row 6: a killed run with the default run directory, rerun hitting an error (here a
    full disk while saving): the earlier run's finished layers stay, the error is one line."""
    monkeypatch.setenv("DSNOT_REF_HOME", str(tmp_path / "home"))
    interrupted_run(tmp_path, calib, monkeypatch)
    (run_dir,) = (tmp_path / "home" / "runs").iterdir()
    capsys.readouterr()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "model.safetensors"))

    import dsnot_ref.save  # noqa: PLC0415

    monkeypatch.setattr(dsnot_ref.save, "save_pruned_model", disk_full)
    assert main(prune_argv(calib, "--save-model", tmp_path / "out")) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("dsnot-ref: error: No space left on device: ") and len(lines) == 1, lines
    assert f"run directory kept: {run_dir} (2 layers done" in lines[-1]
    assert cache.read_manifest(run_dir)["layers_done"] == 2   # finished, waiting to be saved


def test_refused_input_removes_only_a_run_directory_this_process_made(tmp_path, calib, monkeypatch, capsys):
    """A deterministic refusal met during the run removes a run directory this process made (and
    the parents made for it); one that held an earlier run stays."""
    real = pipeline.prune_one_layer

    def refuse_layer_1(model, i, *args, **kwargs):
        if i == 1:
            raise UserError("weight of layer 1 has NaN values")
        return real(model, i, *args, **kwargs)

    monkeypatch.setattr(pipeline, "prune_one_layer", refuse_layer_1)
    run_dir = tmp_path / "new" / "deeper" / "run"
    assert main(prune_argv(calib, "--run-dir", run_dir)) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["dsnot-ref: error: weight of layer 1 has NaN values"]
    assert not (tmp_path / "new").exists()

    monkeypatch.setattr(pipeline, "prune_one_layer", real)
    kept = tmp_path / "kept"
    interrupted_run(tmp_path, calib, monkeypatch, "--run-dir", kept)
    monkeypatch.setattr(pipeline, "prune_one_layer", refuse_layer_1)
    assert main(prune_argv(calib, "--run-dir", kept)) == 2
    assert cache.read_manifest(kept)["layers_done"] == 1


def test_lock_is_exclusive_between_processes(tmp_path):
    """cache.run_lock: another process holding the directory -> "in use", and nothing created."""
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from dsnot_ref import cache\n"
         "with cache.run_lock(sys.argv[1]):\n    print('held', flush=True); sys.stdin.read()", str(run_dir)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = tree(run_dir)
        with pytest.raises(UserError, match="in use by another process"):
            with cache.run_lock(run_dir):
                pass
        assert tree(run_dir) == before == {".lock": hashlib.sha256(b"").hexdigest()}
    finally:
        holder.communicate("", timeout=30)
    with cache.run_lock(run_dir) as claim:   # released with the process
        assert claim.fresh
