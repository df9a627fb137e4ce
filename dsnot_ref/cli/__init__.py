"""The `dsnot-ref` command line. The only place that parses arguments and prints results.

Each subcommand lives in its own module of this package and exposes two functions:

    add_parser(subparsers) -> argparse.ArgumentParser   # registers its flags
    run(args) -> int                                     # does the work, returns the exit status

Errors: a ``UserError`` anywhere below becomes one line on stderr and exit status 2.
Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..allocator import reuse_freed_memory
from ..errors import UserError

# Subcommand name -> module in this package (imported lazily so `--help` stays fast and a
# missing optional dependency of one subcommand cannot break the others).
SUBCOMMANDS = {
    "fetch-model": "fetch_model",
    "eval": "eval_cmd",
    "prune": "prune",
    "demo": "demo",
    "compare-masks": "compare_masks",
    "report": "report",
    "golden": "golden",
}


def user_help(purpose: str, examples: list[str], details: str = "") -> dict:
    """The description of a command's --help, written for its user: a one-line purpose, examples
    of the command as typed, then any details (each a paragraph of plain text).

    Returns the keyword arguments of ``add_parser`` / ``ArgumentParser`` that set it verbatim."""
    text = purpose + "\n\nexample:\n" + "\n".join(f"  {line}" for line in examples)
    if details:
        text += "\n\n" + details
    return {"description": text, "formatter_class": argparse.RawDescriptionHelpFormatter}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsnot-ref",
        **user_help(
            "Prune large language models with DSnoT and related methods, in NumPy, on a CPU.",
            ["dsnot-ref demo", "dsnot-ref prune --model path/to/hf-model --sparsity-ratio 0.6 --save-model out/pruned"],
            "Every command has its own --help. Results go to stdout, progress to stderr; a user error is\n"
            "one line and exit status 2.",
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(f"{__name__}.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{module_name}":
                continue  # a subcommand module absent from this install
            raise
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    reuse_freed_memory()  # fewer page faults on NumPy's temporaries (allocator.py)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"dsnot-ref: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dsnot-ref: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
