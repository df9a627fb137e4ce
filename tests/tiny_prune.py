"""`dsnot-ref prune` on the tiny LLaMA fixture, in-process, for the command-line tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dsnot_ref.cli import main

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "tiny-llama"


def run_prune(tmp_path: Path, *extra: str):
    """Prune with 4 x 32 random calibration tokens, no evaluation, a run dir inside tmp_path:
    -> (exit code, the results record or None)."""
    tokens = np.random.default_rng(0).integers(3, 256, size=(4, 32), dtype=np.int64)
    np.save(tmp_path / "calib.npy", tokens)
    results = tmp_path / "r.json"
    argv = ["prune", "--model", str(FIXTURE), "--calibration-tokens", str(tmp_path / "calib.npy"),
            "--eval-dataset", "none", "--results", str(results), "--quiet", "--run-dir", str(tmp_path / "run"),
            *extra]
    rc = main(argv)
    return rc, (json.loads(results.read_text()) if rc == 0 else None)
