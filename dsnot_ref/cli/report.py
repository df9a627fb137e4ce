"""`dsnot-ref report RESULTS.json [--plot FILE.png]`: the per-layer table of a prune run."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import report, validate
from ..errors import UserError
from . import user_help


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="print the per-layer diagnostics of a results file (and plot them)",
        **user_help(
            "Print the per-layer diagnostics of a prune results file, and draw them on request.",
            ["dsnot-ref report out/pruned.json --plot out/pruned.png"],
            "The table has each sublayer's sparsity, mean |eps| and reconstruction error before and after\n"
            "DSnoT or SparseSwaps, and the swaps made; an OWL run adds each layer's outlier ratio and sparsity.",
        ),
    )
    p.add_argument("results", metavar="RESULTS.json", help="written by dsnot-ref prune --results")
    p.add_argument("--plot", metavar="FILE.png", 
                   help="also draw mean |eps| and reconstruction error per layer (needs matplotlib)")
    p.add_argument("--plot-profile", metavar="FILE.png", 
                   help="also draw an OWL run's outlier ratio and sparsity per decoder layer")
    return p


def read_results(path: Path) -> dict:
    """A results file, typed as the report reads it (validate.results_record lists what is refused)."""
    if not path.exists():
        raise UserError(f"results file {path} does not exist")
    try:
        results = validate.read_json_file(path, "results file")
    except UserError as exc:  # "invalid results file P: why" -> "cannot read results file P: why"
        prefix = f"invalid results file {path}: "
        if not str(exc).startswith(prefix):
            raise
        raise UserError(f"cannot read results file {path}: {str(exc)[len(prefix):]}") from None
    return validate.results_record(results, path)


def run(args) -> int:
    results = read_results(Path(args.results))
    if args.plot:  # refuse before printing anything
        validate.output_file(args.plot, "--plot", [args.results])
        report.require_matplotlib(args.plot)
    if args.plot_profile:
        if not report.profile_rows(results):
            raise UserError(f"--plot-profile: {args.results} has no OWL profile "
                            "(run prune with --sparsity-profile owl)")
        validate.output_file(args.plot_profile, "--plot-profile", [args.results])
        report.require_matplotlib(args.plot_profile)
    print("\n".join(report.summary_lines(results)))
    print(report.layer_table(results))
    if report.profile_rows(results):
        print(report.profile_table(results))
    if args.plot:
        report.plot_layers(results, args.plot)
        print(f"figure written to {args.plot}")
    if args.plot_profile:
        report.plot_profile(results, args.plot_profile)
        print(f"figure written to {args.plot_profile}")
    return 0
