"""Broken standard output and stop signals, on real subprocesses.

- Standard output closed by its reader (``| head -c1``) or on a full device (/dev/full): no
  traceback; exit 141 (closed pipe) or 2 (full device), never 1, which compare-masks and golden
  check use for "different"; files the command wrote stay written.
- SIGTERM and SIGHUP are handled as Ctrl-C: exit 128 + signal, the temporary directory of a save
  and the hidden-state file of an evaluation removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "data" / "fixtures"
TINY = FIXTURES / "tiny-llama"
GOLDEN = ROOT / "data" / "golden"
TEXT = "The quick brown fox jumps over the lazy dog. " * 40


def env_for(tmp_path: Path) -> dict:
    env = dict(os.environ, DSNOT_REF_HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path / "tmp"),
               PYTHONPATH=str(ROOT))
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return env


def run_with_stdout(argv, stdout, tmp_path: Path, script: str = "") -> subprocess.CompletedProcess:
    """``python -c 'script; main(argv)'`` with the given stdout (a file descriptor or file)."""
    code = f"{script}\nimport sys\nfrom dsnot_ref.cli import main\nsys.exit(main({[str(a) for a in argv]!r}))"
    return subprocess.run([sys.executable, "-c", code], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          env=env_for(tmp_path), cwd=tmp_path, timeout=300)


def run_into_closed_pipe(argv, tmp_path: Path) -> subprocess.CompletedProcess:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: every write fails with EPIPE
    try:
        return run_with_stdout(argv, write_end, tmp_path)
    finally:
        os.close(write_end)


@pytest.fixture(scope="module")
def pruned_pair(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Two pruned copies of the tiny model and a results file (made once, in-process)."""
    from dsnot_ref.cli import main

    work = tmp_path_factory.mktemp("pruned")
    (work / "calib.txt").write_text(TEXT)
    for name in ("a", "b"):
        rc = main(["prune", "--model", str(TINY), "--prune-method", "wanda", "--sparsity-ratio", "0.5",
                   "--nsamples", "2", "--seqlen", "16", "--calibration", str(work / "calib.txt"),
                   "--eval-dataset", "none", "--save-model", str(work / name), "--results",
                   str(work / f"{name}.json"), "--run-dir", str(work / f"run-{name}"), "--quiet"])
        assert rc == 0
    return work / "a", work / "b", work / "a.json"


def commands(work: Path, pruned_pair) -> dict[str, list]:
    """Every command that prints to stdout, on inputs small enough for a test."""
    a, b, results = pruned_pair
    (work / "calib.txt").write_text(TEXT)
    (work / "eval.txt").write_text(TEXT)
    home_model = work / "home" / "models" / "smollm2-135m"  # fetch-model finds it already there
    if not home_model.exists():
        shutil.copytree(TINY, home_model)
        (home_model / "dsnot_ref_source.json").write_text("{}")
    small = ["--nsamples", "2", "--seqlen", "16", "--calibration", work / "calib.txt", "--quiet"]
    return {
        "fetch-model": ["fetch-model"],
        "eval": ["eval", "--model", TINY, "--dataset", work / "eval.txt", "--seqlen", "16", "--quiet",
                 "--results", work / "eval.json"],
        "prune": ["prune", "--model", TINY, "--prune-method", "wanda", "--sparsity-ratio", "0.5", *small,
                  "--eval-dataset", work / "eval.txt", "--eval-max-windows", "2",
                  "--save-model", work / "saved", "--overwrite", "--results", work / "prune.json",
                  "--run-dir", work / "run"],
        "demo": ["demo", "--model", TINY, "--nsamples", "2", "--seqlen", "16", "--eval-max-windows", "1",
                 "--quiet", "--results", work / "demo.json"],
        "compare-masks": ["compare-masks", a, a],
        "report": ["report", results],
        "golden run": ["golden", "run", GOLDEN / "wanda_2of4_reference.npz", "-o", work / "golden.npz"],
        "golden check": ["golden", "check", GOLDEN / "wanda_2of4_reference.npz"],
    }


# files each command writes before it prints, which a failing stdout must not lose (the demo
# prints its settings before any work, so a closed pipe stops it before it has anything to save)
WRITTEN = {"eval": ["eval.json"], "prune": ["saved/model.safetensors", "prune.json"],
           "golden run": ["golden.npz"]}


@pytest.mark.parametrize("name", ["fetch-model", "eval", "prune", "demo", "compare-masks", "report",
                                  "golden run", "golden check"])
def test_closed_pipe(tmp_path, pruned_pair, name):
    argv = commands(tmp_path, pruned_pair)[name]
    proc = run_into_closed_pipe(argv, tmp_path)
    assert proc.returncode == 128 + signal.SIGPIPE, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr
    for path in WRITTEN.get(name, []):
        assert (tmp_path / path).is_file(), path


@pytest.mark.parametrize("name", ["compare-masks", "golden check", "report", "eval"])
def test_full_device(tmp_path, pruned_pair, name):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    argv = commands(tmp_path, pruned_pair)[name]
    with open("/dev/full", "w") as full:
        proc = run_with_stdout(argv, full, tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["dsnot-ref: error: cannot write to standard output: No space left on device"], proc.stderr
    for path in WRITTEN.get(name, []):
        assert (tmp_path / path).is_file(), path


def test_compare_masks_still_says_different_with_status_1(tmp_path, pruned_pair):
    """The guard changes nothing for a working stdout: 0 for identical masks."""
    a, _, _ = pruned_pair
    proc = run_with_stdout(["compare-masks", a, a], subprocess.PIPE, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "identical" in proc.stdout


def kill_self_when(module: str, function: str, signum: int, after_calls: int = 1) -> str:
    """Python source that wraps ``module.function`` so that its ``after_calls``-th call sends
    ``signum`` to this process (a real signal, delivered while the work is under way)."""
    return f"""
import os, importlib
_mod = importlib.import_module({module!r})
_orig = getattr(_mod, {function!r})
_calls = [0]
def _wrapped(*args, **kwargs):
    _calls[0] += 1
    if _calls[0] == {after_calls}:
        os.kill(os.getpid(), {int(signum)})
    return _orig(*args, **kwargs)
setattr(_mod, {function!r}, _wrapped)
"""


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_save_removes_the_partial_copy(tmp_path, signum):
    (tmp_path / "calib.txt").write_text(TEXT)
    out_parent = tmp_path / "models"
    out_parent.mkdir()
    argv = ["prune", "--model", TINY, "--prune-method", "wanda", "--sparsity-ratio", "0.5", "--nsamples", "2",
            "--seqlen", "16", "--calibration", tmp_path / "calib.txt", "--eval-dataset", "none", "--quiet",
            "--save-model", out_parent / "pruned", "--run-dir", tmp_path / "run"]
    # the signal arrives while the first weight file is being written into the hidden temporary copy
    script = kill_self_when("dsnot_ref.save", "write_raw_safetensors_atomic", signum)
    proc = run_with_stdout(argv, subprocess.PIPE, tmp_path, script)
    assert proc.returncode == 128 + signum, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"interrupted ({signal.Signals(signum).name})" in proc.stderr
    assert leftovers(out_parent) == []  # neither the model nor a hidden .pruned.*.tmp copy
    assert leftovers(tmp_path / "tmp") == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_evaluation_removes_the_hidden_state_file(tmp_path, signum):
    (tmp_path / "eval.txt").write_text(TEXT)
    # hidden states always go to a temporary file here, and the signal comes after the first layer
    script = ("import dsnot_ref.evaluate as _ev\n_ev.MEMMAP_BYTES = 0\n"
              + kill_self_when("dsnot_ref.model", "block_forward", signum, after_calls=2))
    proc = run_with_stdout(["eval", "--model", TINY, "--dataset", tmp_path / "eval.txt", "--seqlen", "16",
                            "--quiet"], subprocess.PIPE, tmp_path, script)
    assert proc.returncode == 128 + signum, proc.stderr
    assert "Traceback" not in proc.stderr
    assert leftovers(tmp_path / "tmp") == []


def test_the_hidden_state_file_exists_while_evaluating(tmp_path):
    """Independent evidence for the test above: with no signal, the temporary file is there
    mid-run (so the test above removes something real)."""
    (tmp_path / "eval.txt").write_text(TEXT)
    script = ("import os, dsnot_ref.evaluate as _ev, dsnot_ref.model as _m\n_ev.MEMMAP_BYTES = 0\n"
              "_orig = _m.block_forward\n"
              "def _spy(*a, **k):\n"
              "    seen = [p for d in os.listdir(os.environ['TMPDIR']) for p in os.listdir(os.path.join(os.environ['TMPDIR'], d))]\n"
              "    print('TEMP', seen, file=__import__('sys').stderr)\n"
              "    return _orig(*a, **k)\n"
              "_m.block_forward = _spy\n")
    proc = run_with_stdout(["eval", "--model", TINY, "--dataset", tmp_path / "eval.txt", "--seqlen", "16",
                            "--quiet"], subprocess.PIPE, tmp_path, script)
    assert proc.returncode == 0, proc.stderr
    assert "TEMP ['hidden.f']" in proc.stderr
    assert leftovers(tmp_path / "tmp") == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_signal_during_pruning_keeps_a_resumable_run_directory(tmp_path, signum):
    """A scheduler's SIGTERM (or a closed terminal's SIGHUP) mid-run stops it as Ctrl-C does: the
    run directory stays, and the same command then finishes it, saving the same model as a run
    that was never stopped."""
    (tmp_path / "calib.txt").write_text(TEXT)

    def argv(name: str, run_dir: str, quiet: bool = True) -> list:
        return ["prune", "--model", TINY, "--prune-method", "wanda", "--sparsity-ratio", "0.5", "--nsamples", "2",
                "--seqlen", "16", "--calibration", tmp_path / "calib.txt", "--eval-dataset", "none",
                *(["--quiet"] if quiet else []), "--save-model", tmp_path / name, "--run-dir", tmp_path / run_dir]

    # block_forward's 4th call is in layer 1 (layer 0: statistics pass, then its outputs)
    script = kill_self_when("dsnot_ref.model", "block_forward", signum, after_calls=4)
    stopped = run_with_stdout(argv("resumed", "run"), subprocess.PIPE, tmp_path, script)
    assert stopped.returncode == 128 + signum, stopped.stderr
    assert "Traceback" not in stopped.stderr and "run directory kept" in stopped.stderr
    assert leftovers(tmp_path / "run") and not (tmp_path / "resumed").exists()
    resumed = run_with_stdout(argv("resumed", "run", quiet=False), subprocess.PIPE, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    whole = run_with_stdout(argv("whole", "run-whole"), subprocess.PIPE, tmp_path)
    assert whole.returncode == 0, whole.stderr
    for f in (tmp_path / "whole").iterdir():
        assert (tmp_path / "resumed" / f.name).read_bytes() == f.read_bytes(), f.name
    assert leftovers(tmp_path / "tmp") == []
