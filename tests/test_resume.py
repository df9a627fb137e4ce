"""A pruning run killed with SIGKILL resumes and ends bit-for-bit like an uninterrupted run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from dsnot_ref import cache
from dsnot_ref import model as model_lib
from dsnot_ref.config import ModelConfig
from dsnot_ref.errors import UserError
from dsnot_ref.methods import PruneSpec
from dsnot_ref.pipeline import PipelineSettings, prune_model

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS.parent / "data" / "fixtures"
N_LAYERS = 4
N_SEQ, SEQ_LEN, CHUNK = 6, 16, 1


def make_deep_llama(directory: Path, n_layers: int = N_LAYERS, seed: int = 0) -> Path:
    """A random LLaMA like the tiny-llama fixture but with ``n_layers`` layers (safetensors + config)."""
    directory.mkdir(parents=True)
    raw = json.loads((FIXTURES / "tiny-llama" / "config.json").read_text())
    raw["num_hidden_layers"] = n_layers
    (directory / "config.json").write_text(json.dumps(raw, indent=2))
    config = ModelConfig.from_file(directory)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in model_lib.expected_weights(config).items():
        if name.endswith("norm.weight"):
            tensors[name] = (1 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            tensors[name] = (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
    save_file(tensors, str(directory / "model.safetensors"))
    return directory


def settings_for(sparsity=0.5):
    return PipelineSettings(spec=PruneSpec(method="dsnot", sparsity=sparsity), chunk_size=CHUNK)


def calibration_tokens():
    return np.random.default_rng(7).integers(0, 256, size=(N_SEQ, SEQ_LEN), dtype=np.int64)


CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
import numpy as np
import test_resume
from dsnot_ref import model as model_lib
from dsnot_ref.pipeline import prune_model

delay = [{delay}]
fast_forward = model_lib.block_forward
def block_forward(*args, **kwargs):   # slowed down so that the parent can kill mid-run
    time.sleep(delay[0])
    return fast_forward(*args, **kwargs)
def progress(event):   # after layer 1, crawl: the kill lands inside layer 2
    if event.done >= 2 and delay[0] > 0:
        delay[0] = 2.0
model_lib.block_forward = block_forward
model = model_lib.load_model({model_dir!r})
prune_model(model, test_resume.calibration_tokens(), test_resume.settings_for(), {run_dir!r},
            progress=progress, keep_cache=True)
"""


def run_child(model_dir: Path, run_dir: Path, delay: float) -> subprocess.Popen:
    code = CHILD.format(tests=str(TESTS), model_dir=str(model_dir), run_dir=str(run_dir), delay=delay)
    return subprocess.Popen([sys.executable, "-c", code], cwd=TESTS.parent)


def layers_done(run_dir: Path) -> int:
    manifest = cache.read_manifest(run_dir)
    return 0 if manifest is None else manifest["layers_done"]


def tree_hashes(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def run_outputs(run) -> dict:
    """Everything a run produced except its timings: tensors, masks and diagnostics."""
    weights = {}
    for path in run.layer_files:
        weights.update(load_file(str(path)))
    diagnostics = [{k: v for k, v in d.items() if k != "timings"} for d in run.diagnostics]
    return {"weights": weights, "masks": dict(run.masks()), "diagnostics": diagnostics}


def assert_same_outputs(a: dict, b: dict) -> None:
    assert a["weights"].keys() == b["weights"].keys()
    for name in a["weights"]:
        assert a["weights"][name].dtype == b["weights"][name].dtype
        assert a["weights"][name].tobytes() == b["weights"][name].tobytes(), name  # bit for bit
    assert a["masks"].keys() == b["masks"].keys()
    for name in a["masks"]:
        np.testing.assert_array_equal(a["masks"][name], b["masks"][name], err_msg=name)
    assert a["diagnostics"] == b["diagnostics"]


def test_killed_run_resumes_to_identical_result(tmp_path):
    model_dir = make_deep_llama(tmp_path / "model")
    before = tree_hashes(model_dir)
    model = model_lib.load_model(model_dir)

    reference = prune_model(model, calibration_tokens(), settings_for(), tmp_path / "uninterrupted", keep_cache=True)
    want = run_outputs(reference)
    final_want = np.array(reference.final_hidden())

    run_dir = tmp_path / "killed"
    child = run_child(model_dir, run_dir, delay=0.01)
    deadline = time.monotonic() + 120
    try:
        while layers_done(run_dir) < 2:  # poll the manifest until layer 1 is done
            assert child.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    killed_at = layers_done(run_dir)
    assert killed_at == 2
    left = cache.cache_size_bytes(run_dir)
    print(f"killed after {killed_at} layers; run directory holds {left} bytes")
    assert left > 0

    # A run directory made with other settings is refused, and left as it was.
    snapshot = tree_hashes(run_dir)
    with pytest.raises(UserError, match=r"other inputs \(settings\.spec\.sparsity"):
        prune_model(model, calibration_tokens(), settings_for(0.6), run_dir)
    with pytest.raises(UserError, match="calibration_tokens_sha256"):
        prune_model(model, calibration_tokens()[::-1], settings_for(), run_dir)
    assert tree_hashes(run_dir) == snapshot

    # Rerun: continues from the first unfinished layer, ends with identical results.
    progress = []
    resumed = prune_model(
        model, calibration_tokens(), settings_for(), run_dir, keep_cache=True, progress=lambda *a: progress.append(a)
    )
    assert [p[0].done for p in progress] == list(range(killed_at + 1, N_LAYERS + 1))  # layers 2, 3 only
    assert_same_outputs(run_outputs(resumed), want)
    assert np.array(resumed.final_hidden()).tobytes() == final_want.tobytes()
    assert not list(run_dir.rglob(".*.tmp"))  # the killed run's temporaries are gone

    # A finished run returns at once with the same result.
    again = prune_model(model, calibration_tokens(), settings_for(), run_dir, keep_cache=True, progress=lambda *a: progress.append(a))
    assert len(progress) == N_LAYERS - killed_at
    assert_same_outputs(run_outputs(again), want)

    assert tree_hashes(model_dir) == before  # the input model was never written to


def test_uninterrupted_runs_are_deterministic_across_processes(tmp_path):
    # Same as above without a kill: a child process and this one agree bit for bit, which is
    # what makes a resumed run (a new process) comparable to an uninterrupted one.
    model_dir = make_deep_llama(tmp_path / "model", n_layers=2)
    model = model_lib.load_model(model_dir)
    child = run_child(model_dir, tmp_path / "child", delay=0.0)
    assert child.wait(timeout=120) == 0
    here = prune_model(model, calibration_tokens(), settings_for(), tmp_path / "here", keep_cache=True)
    there = prune_model(model, calibration_tokens(), settings_for(), tmp_path / "child", keep_cache=True)
    assert_same_outputs(run_outputs(there), run_outputs(here))
