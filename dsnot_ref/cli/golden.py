"""`dsnot-ref golden`: run our DSnoT on golden inputs, or check another implementation's outputs.

    dsnot-ref golden run IN.npz -o OUT.npz
        our outputs (mask, ε trace, swaps; exact variant also the E_r trace) for the inputs of
        IN.npz, written atomically to OUT.npz
    dsnot-ref golden check OTHER.npz|DIR [--against REF.npz|DIR] [--rtol R] [--atol A] [--verbose]
        compare OTHER's outputs with the reference case of the same name (default: the
        committed data/golden/); one line per case, the first differing cycle, row and swap
        when they differ (--verbose: every difference); names the committed cases a
        directory lacks; exit 0 if all checked cases are identical, 1 otherwise. Traces are
        compared by each variant's precision contract unless --rtol/--atol are given.

File format and output contract: data/golden/FORMAT.md (version 3; versions 1 and 2 are read too).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from .. import validate
from ..errors import UserError
from . import user_help
from ..golden import GOLDEN_DIR, read_case, read_outputs_file, run_case, write_case
from ..golden_check import compare_outputs, input_differences


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "golden",
        help="golden DSnoT fixtures: run ours, check another implementation",
        **user_help(
            "Golden fixtures: compute our outputs for a problem, or check another implementation's against ours.",
            ["dsnot-ref golden run data/golden/wanda_u50_reference.npz -o ours.npz",
             "dsnot-ref golden check theirs.npz"],
            "A golden file holds one small DSnoT or SparseSwaps problem (weights, statistics, initial mask,\n"
            "settings) and its outputs (final mask, swaps, traces). Masks, swaps, cycles and active flags\n"
            "are compared bit for bit, traces to each variant's precision contract (the golden format page).",
        ),
    )
    sub = p.add_subparsers(dest="golden_command", metavar="ACTION")
    sub.required = True
    run_p = sub.add_parser(
        "run",
        help="compute our outputs for the inputs of a golden file",
        **user_help(
            "Compute our outputs (mask, swaps, traces) for the inputs of a golden file.",
            ["dsnot-ref golden run data/golden/wanda_u50_reference.npz -o ours.npz"],
            "Any file in the golden format is an input: dump a weight matrix and its statistics from your\n"
            "own run and this gives our answer for it.",
        ),
    )
    run_p.add_argument("input", type=Path, help="golden .npz with inputs (outputs, if any, are ignored)")
    run_p.add_argument("-o", "--output", type=Path, required=True, help="where to write inputs + our outputs")
    check_p = sub.add_parser(
        "check",
        help="compare another implementation's outputs with ours",
        **user_help(
            "Compare another implementation's outputs with ours, case by case; exit 0 when all are identical.",
            ["dsnot-ref golden check theirs.npz", "dsnot-ref golden check my_outputs/ --against data/golden/"],
            "Each file (the whole case, or only its name and outputs) is compared with the reference case\n"
            "of the same name; one line per case naming the first differing cycle, row and swap\n"
            "(--verbose: every difference), then the reference cases a directory lacks; exit status 1\n"
            "when any differs.",
        ),
    )
    check_p.add_argument("other", type=Path, help="a golden .npz with outputs, or a directory of them")
    check_p.add_argument("--against", type=Path, default=GOLDEN_DIR,
                         help="reference golden file or directory (default the fixtures shipped with dsnot-ref)")
    check_p.add_argument("--rtol", type=float, default=None,
                         help="override the precision contract: trace tolerance relative to the trace's max |value|")
    check_p.add_argument("--atol", type=float, default=None,
                         help="override the precision contract: absolute trace tolerance (ε and E_r)")
    check_p.add_argument("-v", "--verbose", action="store_true", help="every difference of each case, one per line")
    return p


def run(args) -> int:
    if args.golden_command == "run":
        return _run(args)
    return _check(args)


def _run(args) -> int:
    validate.output_file(args.output, "golden run -o", [args.input])  # before the work
    case, _ = read_case(args.input)
    outputs = run_case(case)
    write_case(args.output, case, outputs)
    error = ""
    if outputs.error_trace is not None:
        error = f", error {outputs.error_trace[0].sum():.6g} -> {outputs.error_trace[-1].sum():.6g}"
    print(f"{case.name}: {outputs.cycles} cycles, {len(outputs.swaps)} swaps{error} -> {args.output}")
    return 0


def _npz_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if not files:
            raise UserError(f"no .npz golden files in directory {path}")
        return files
    if not path.exists():
        raise UserError(f"golden file {path} does not exist")
    return [path]


def _reference_cases(path: Path) -> dict:
    cases = {}
    for f in _npz_files(path):
        case, outputs = read_case(f)
        if outputs is None:
            raise UserError(f"reference golden file {f} has no outputs")
        cases[case.name] = (case, outputs, f)
    return cases


def _check(args) -> int:
    for flag, value in (("--rtol", args.rtol), ("--atol", args.atol)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise UserError(f"{flag} must be a finite number >= 0, got {value}")
    references = _reference_cases(args.against)
    all_identical, seen = True, set()
    for f in _npz_files(args.other):
        case, theirs = read_outputs_file(f, {name: ref[0] for name, ref in references.items()})
        if theirs is None:
            raise UserError(f"golden file {f} has inputs but no outputs to check")
        ref_case, ours, ref_file = references[case.name]
        seen.add(case.name)
        differ = input_differences(case, ref_case)
        if differ:
            print(f"{case.name}: INPUTS DIFFER from {ref_file}: {differ[0]}"
                  + (f" (and {len(differ) - 1} more)" if len(differ) > 1 and not args.verbose else ""))
            if args.verbose:
                for line in differ[1:]:
                    print(f"    {line}")
            all_identical = False
            continue
        cmp = compare_outputs(ours, theirs, ref_case, rtol=args.rtol, atol=args.atol)
        problems = cmp.problems()
        if cmp.identical:
            print(f"{case.name}: IDENTICAL: {cmp.describe()}")
        elif args.verbose:
            print(f"{case.name}: DIFFERENT ({len(problems)} differences, tolerance: {cmp.tolerance_source})")
            for line in problems:
                print(f"    {line}")
        else:
            more = f" (+{len(problems) - 1} more, --verbose)" if len(problems) > 1 else ""
            print(f"{case.name}: DIFFERENT: {problems[0]}{more}")
        all_identical &= cmp.identical
    missing = sorted(set(references) - seen)
    if missing and args.other.is_dir():
        print(f"not checked: {len(missing)} of the {len(references)} reference cases in {args.against} have "
              f"no file in {args.other}: {', '.join(missing)}")
    return 0 if all_identical else 1
