"""The `dsnot-ref` command line. The only place that parses arguments and prints results.

Each subcommand lives in its own module of this package and exposes two functions:

    add_parser(subparsers) -> argparse.ArgumentParser   # registers its flags
    run(args) -> int                                     # does the work, returns the exit status

Exit status: what ``run`` returns (0; 1 means "different" for compare-masks and golden check);
2 and one line on stderr for a ``UserError`` or a standard output that cannot be written (a
full device); 128 + the signal for SIGINT, SIGTERM or SIGHUP, and 141 (128 + SIGPIPE) when the
reader of standard output went away. None of these collides with 1, and none prints a traceback.
Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import signal
import sys

from ..allocator import reuse_freed_memory
from ..errors import UserError
from ..io_utils import os_error_text

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
# Signals that end a run the way Ctrl-C does: what a scheduler (SIGTERM) or a closed terminal
# (SIGHUP) sends. Each raises Interrupted, which every cleanup path handles as KeyboardInterrupt.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SIGPIPE_STATUS = 128 + 13  # what a shell reports for a writer killed by SIGPIPE


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which (exit status 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StdoutError(Exception):
    """Standard output cannot be written: ``cause`` is the OSError (EPIPE, ENOSPC, EIO ...)."""

    def __init__(self, cause: OSError):
        super().__init__(str(cause))
        self.cause = cause


class GuardedStdout:
    """sys.stdout whose write errors become StdoutError, told apart from errors of the files a
    command writes (a full disk under --save-model is a UserError of that file, not of stdout)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise StdoutError(exc) from None

    def flush(self):
        try:
            self._stream.flush()
        except OSError as exc:
            raise StdoutError(exc) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def install_signal_handlers() -> dict:
    """SIGTERM and SIGHUP (and SIGINT) raise Interrupted in the main thread. A second signal
    while the first one's cleanup runs is not raised again, so that cleanup finishes.
    Returns the handlers replaced: signal -> handler, for ``restore_signal_handlers``."""
    state = {"raised": False}
    replaced = {}

    def handler(signum, frame):
        if state["raised"]:
            return
        state["raised"] = True
        raise Interrupted(signum)

    for signum in STOP_SIGNALS:
        with contextlib.suppress(ValueError, OSError):  # not the main thread, or not settable
            if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                replaced[signum] = signal.signal(signum, handler)
    return replaced


def restore_signal_handlers(replaced: dict) -> None:
    for signum, handler in replaced.items():
        with contextlib.suppress(ValueError, OSError, TypeError):
            signal.signal(signum, handler)


def silence_stdout() -> None:
    """Point file descriptor 1 at /dev/null, so the interpreter's last flush at exit cannot fail
    again (and print 'Exception ignored ...')."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
        os.close(devnull)


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
    replaced = install_signal_handlers()
    stdout = sys.stdout
    sys.stdout = GuardedStdout(stdout)
    try:
        return run_command(argv)
    finally:
        sys.stdout = stdout
        restore_signal_handlers(replaced)


def run_command(argv: list[str] | None) -> int:
    """Parse, run, flush; the exit status of every way a command can end (module docstring)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        reuse_freed_memory()  # fewer page faults on NumPy's temporaries (allocator.py)
        status = int(args._run(args) or 0)
        sys.stdout.flush()  # a full device is found here, not at exit
        return status
    except UserError as exc:
        print(f"dsnot-ref: error: {exc}", file=sys.stderr)
        return 2
    except StdoutError as exc:
        silence_stdout()
        if exc.cause.errno == errno.EPIPE:
            return SIGPIPE_STATUS  # the reader left on purpose (| head): nothing to say
        print(f"dsnot-ref: error: cannot write to standard output: {exc.cause.strerror}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"dsnot-ref: interrupted ({signal.Signals(exc.signum).name})", file=sys.stderr)
        return 128 + exc.signum
    except OSError as exc:  # the environment: a full disk, a file-size limit, a read-only or unwritable path
        print(f"dsnot-ref: error: {UserError(os_error_text(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dsnot-ref: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
