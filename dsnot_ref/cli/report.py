"""`dsnot-ref report RESULTS.json [--plot FILE.png]`: the per-layer table of a prune run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import report
from ..errors import UserError
from ..save import check_writable_parent


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="print the per-layer diagnostics of a results file (and plot them)",
        description=__doc__,
    )
    p.add_argument("results", metavar="RESULTS.json", help="written by dsnot-ref prune --results")
    p.add_argument("--plot", metavar="FILE.png", help="also draw mean |eps| and reconstruction error per layer (needs matplotlib)")
    return p


def read_results(path: Path) -> dict:
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"results file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read results file {path}: {exc}") from None
    if not isinstance(results, dict) or "layers" not in results:
        raise UserError(f"{path} is not a dsnot-ref results file (no 'layers')")
    return results


def run(args) -> int:
    results = read_results(Path(args.results))
    if args.plot:  # refuse before printing anything
        check_writable_parent(args.plot)
        report.require_matplotlib(args.plot)
    print("\n".join(report.summary_lines(results)))
    print(report.layer_table(results))
    if args.plot:
        report.plot_layers(results, args.plot)
        print(f"figure written to {args.plot}")
    return 0
