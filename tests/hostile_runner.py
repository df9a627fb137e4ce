"""Run many `dsnot-ref` command lines as separate processes, cheaply: used by test_hostile_inputs.

The interpreter starts once and imports the CLI; each case is then a forked child that sets an
address-space limit (RLIMIT_AS) and an alarm, sends stdout/stderr to files, and runs
``dsnot_ref.cli.main(argv)`` as ``python -m dsnot_ref`` would (an uncaught exception prints its
traceback and exits 1). The parent waits for each child with ``os.wait4`` (exit status, peak
resident memory) and kills it after its timeout.

stdin: {"limit_as": bytes, "timeout": seconds, "jobs": n, "cases": [{"id", "argv", "cwd", "env"}]}
stdout: [{"id", "rc", "stdout", "stderr", "seconds", "maxrss_kb", "timed_out"}] (JSON)
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback

from dsnot_ref.cli import build_parser, main  # noqa: F401 - imported before forking

build_parser()  # import every subcommand module once, in the parent


def child(case: dict, out_path: str, err_path: str, limit_as: int, timeout: float) -> None:
    """In the forked child: limits, redirections, then the CLI. Never returns."""
    rc = 1
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))
        signal.alarm(int(timeout) + 1)
        for key, value in case.get("env", {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.chdir(case.get("cwd") or os.getcwd())
        for fd, path in ((1, out_path), (2, err_path)):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        try:
            rc = main(case["argv"])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            rc = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(int(rc) & 0xFF)


def run_cases(spec: dict) -> list[dict]:
    limit_as, timeout, jobs = int(spec["limit_as"]), float(spec["timeout"]), int(spec.get("jobs", 2))
    pending = list(spec["cases"])
    running: dict[int, tuple[dict, str, str, float]] = {}
    results = []
    workdir = tempfile.mkdtemp(prefix="hostile-runner-")
    while pending or running:
        while pending and len(running) < jobs:
            case = pending.pop(0)
            out_path = os.path.join(workdir, f"{len(results) + len(running)}-{os.getpid()}-{time.monotonic_ns()}.out")
            err_path = out_path[:-4] + ".err"
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                child(case, out_path, err_path, limit_as, timeout)
            running[pid] = (case, out_path, err_path, time.monotonic())
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        if pid == 0:
            for other, (case, _, _, started) in running.items():
                if time.monotonic() - started > timeout:
                    os.kill(other, signal.SIGKILL)
                    case["_timed_out"] = True
            time.sleep(0.005)
            continue
        case, out_path, err_path, started = running.pop(pid)
        with open(out_path, encoding="utf-8", errors="replace") as f:
            out = f.read()
        with open(err_path, encoding="utf-8", errors="replace") as f:
            err = f.read()
        os.remove(out_path)
        os.remove(err_path)
        rc = os.waitstatus_to_exitcode(status)
        results.append({"id": case["id"], "rc": rc, "stdout": out[-4000:], "stderr": err[-4000:],
                        "seconds": time.monotonic() - started, "maxrss_kb": usage.ru_maxrss,
                        "timed_out": bool(case.get("_timed_out")) or rc == -signal.SIGALRM})
    os.rmdir(workdir)
    return results


if __name__ == "__main__":
    json.dump(run_cases(json.load(sys.stdin)), sys.stdout)
