"""How far our forward pass is from transformers' logits on every committed fixture.

The fixtures under data/fixtures/ hold transformers' float32 logits for a few tokens
(tools/make_hf_fixtures.py); tests/test_model_parity.py asserts ≤ 1e-4. This prints and stores
the largest absolute difference per fixture, our float32 and float64 forward passes each.
Writes benchmarks/results/forward_parity.json:

    python benchmarks/forward_parity.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from provenance import provenance, stamped

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "data" / "fixtures"
RESULTS = ROOT / "benchmarks" / "results" / "forward_parity.json"


def largest_difference(fixture: Path, dtype) -> float:
    """max |ours − transformers'| over the fixture's logits [B, L, V]."""
    from dsnot_ref.model import forward, load_model

    ref = np.load(fixture / "logits.npz")
    return float(np.abs(forward(load_model(fixture), ref["tokens"], dtype=dtype) - ref["logits"]).max())


def main() -> int:
    rows = [{"fixture": path.name, "float32": largest_difference(path, np.float32),
             "float64": largest_difference(path, np.float64)}
            for path in sorted(FIXTURES.iterdir()) if (path / "logits.npz").is_file()]
    for row in rows:
        print(f"{row['fixture']:24s} float32 {row['float32']:.2e}  float64 {row['float64']:.2e}")
    record = stamped({"rows": rows}, provenance([sys.executable, *sys.argv]))
    RESULTS.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
