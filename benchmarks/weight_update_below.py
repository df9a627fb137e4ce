"""Count the sublayers whose calibration error after Wanda + SparseSwaps + the update is below
SparseGPT's, per setting, from the per-run results files `benchmarks/weight_update.py` leaves in
its scratch directory (weight_update.json keeps only the means per sublayer type).

    python benchmarks/weight_update_below.py [--scratch /tmp/dsnot_weight_update]
        [--out benchmarks/results/weight_update_sublayers_below.json]

Each run is on its own pruned inputs (layer i sees its own earlier layers), so the comparison is
of what each method leaves in each sublayer, not of the same problem. Prints, never asserts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LABELS = {"0.5": "50%", "0.6": "60%", "0.7": "70%", "2of4": "2:4"}


def errors(path: Path) -> dict[str, float]:
    """(layer, sublayer) -> recon_after of one `prune --results` file with --recon-error."""
    return {(row["layer"], row["sublayer"]): row["recon_after"] for row in json.loads(path.read_text())["layers"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/dsnot_weight_update"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/weight_update_sublayers_below.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from provenance import provenance  # noqa: PLC0415 - beside this script

    rows = []
    for key, label in LABELS.items():
        ours, gpt = args.scratch / f"swaps+update_{key}.json", args.scratch / f"sparsegpt_{key}.json"
        if not (ours.exists() and gpt.exists()):
            continue
        a, b = errors(ours), errors(gpt)
        below = sum(a[name] < b[name] for name in a)
        rows.append({"setting": label, "below": below, "sublayers": len(a)})
        print(f"{label}: {below} of {len(a)} sublayers below SparseGPT's error")
    record = {"provenance": provenance([sys.executable, *sys.argv]), "rows": rows}
    args.out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
