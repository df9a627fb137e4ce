"""Time to identify a model by content (``cache.model_identity``: sha256 of config.json and every
weight file), once per run. Writes benchmarks/results/model_digest.json:

    python benchmarks/model_digest.py [--model smollm2-135m]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from provenance import provenance, stamped

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dsnot_ref import cache  # noqa: E402
from dsnot_ref.demo_model import fetch_demo_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    args = parser.parse_args()
    stamp = provenance([sys.executable, *sys.argv])
    model_dir = Path(args.model) if Path(args.model).is_dir() else Path(fetch_demo_model(args.model))
    size = sum(p.stat().st_size for p in model_dir.iterdir() if p.is_file())
    start = time.perf_counter()
    cache.model_identity(model_dir)
    seconds = time.perf_counter() - start
    record = {"model": args.model, "bytes_hashed": size, "seconds": round(seconds, 3),
              "mb_per_second": round(size / seconds / 1e6, 1)}
    (ROOT / "benchmarks" / "results" / "model_digest.json").write_text(
        json.dumps(stamped(record, stamp), indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
