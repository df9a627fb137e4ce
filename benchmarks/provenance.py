"""Stamp a raw results file with where, when and how it was measured.

Every file under benchmarks/results/ carries a "provenance" object (machine, date, commit,
command) as its first key; `make results` refuses files without one. The benchmark scripts that
write JSON call `provenance()` themselves. For a `dsnot-ref` command, run it through this script:

    python benchmarks/provenance.py benchmarks/results/swaps60.json -- \\
        dsnot-ref prune --model smollm2-135m --prune-method swaps --sparsity-ratio 0.6 \\
        --nsamples 32 --seqlen 512 --eval-max-windows 32 --results benchmarks/results/swaps60.json

It runs the command and, if it succeeds, rewrites the results file with the provenance first.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine() -> str:
    """CPU model, core count and the load average when the measurement started."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start"


def commit() -> str:
    """The checked-out commit, with '+ uncommitted changes' when the tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown (not a git checkout)"
    return head + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def provenance(command: list[str]) -> dict:
    return {"machine": machine(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": commit(),
            "command": shlex.join(command)}


def stamped(record: dict, stamp: dict) -> dict:
    """The record with the provenance as its first key (a previous one replaced)."""
    return {"provenance": stamp, **{k: v for k, v in record.items() if k != "provenance"}}


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python benchmarks/provenance.py RESULTS.json -- COMMAND...", file=sys.stderr)
        return 2
    path, command = Path(argv[0]), argv[2:]
    stamp = provenance(command)
    status = subprocess.run(command).returncode
    if status != 0:
        return status
    record = json.loads(path.read_text(encoding="utf-8"))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(stamped(record, stamp), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
