"""Perplexity and prune time of the exact weight update against Wanda and SparseGPT, demo budget.

Runs `dsnot-ref prune` on the demo model (SmolLM2-135M from the cache), one fresh process per
job, all with the demo budget: 32 calibration windows of 512 tokens from the bundled corpus
(seed 0), perplexity on the first 32 windows of 512 tokens of the bundled evaluation text,
every other flag at its default. Jobs (``--jobs``, in this order within each setting):

    swaps+update      --prune-method swaps --initial-method wanda --weight-update exact
    sparsegpt         --prune-method sparsegpt
    wanda             --prune-method wanda
    wanda+update      --prune-method wanda --weight-update exact
    magswaps+update   --prune-method swaps --initial-method magnitude --weight-update exact

Settings (``--settings``, in this order): 0.7, 0.6, 2:4, 0.5. Each run's results file is kept
as ``OUT/<job>_<setting>.json``; ``OUT/summary.json`` gathers the perplexities, prune times,
each job's ratio to Wanda's prune time in the same session, the machine, the date, the commit,
and the exact command of each run. A run whose results file already exists is not repeated (so
an interrupted session can be continued). Wall-clock times: read the ratios, both runs saw the
same machine within the hour. Prints, never asserts.

    python benchmarks/weight_update.py --out benchmarks/results/weight_update [--settings 0.7,0.6]
        [--jobs swaps+update,sparsegpt,wanda]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

JOBS = {
    "swaps+update": ["--prune-method", "swaps", "--initial-method", "wanda", "--weight-update", "exact"],
    "sparsegpt": ["--prune-method", "sparsegpt"],
    "wanda": ["--prune-method", "wanda"],
    "wanda+update": ["--prune-method", "wanda", "--weight-update", "exact"],
    "magswaps+update": ["--prune-method", "swaps", "--initial-method", "magnitude", "--weight-update", "exact"],
}
SETTINGS = ("0.7", "0.6", "2:4", "0.5")
BUDGET = ["--nsamples", "32", "--seqlen", "512", "--eval-max-windows", "32", "--quiet"]


def sparsity_flags(setting: str) -> list[str]:
    return ["--sparsity-type", setting] if ":" in setting else ["--sparsity-ratio", setting]


def command(job: str, setting: str, out: Path) -> list[str]:
    name = f"{job}_{setting.replace(':', 'of')}"
    return [sys.executable, "-m", "dsnot_ref", "prune", "--model", "smollm2-135m", *JOBS[job],
            *sparsity_flags(setting), *BUDGET, "--results", str(out / f"{name}.json"),
            "--run-dir", f"/tmp/dsnot_weight_update/run_{name}"]


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True, check=False).stdout.strip()
    return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def summary_row(results: dict) -> dict:
    layers = results.get("layers", [])
    return {"perplexity": results["perplexity"]["pruned"]["perplexity"], "prune_s": results["times"]["prune"],
            "pipeline_s": results["pipeline_times"],
            "recon_after_mean": sum(r["recon_after"] for r in layers) / len(layers) if layers else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--jobs", default=",".join(JOBS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"runs": {}}
    summary.update({"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
                    "environment": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
                    "budget": "32 x 512 calibration (bundled corpus, seed 0), 32 x 512 evaluation windows"})
    for setting in args.settings.split(","):
        for job in args.jobs.split(","):
            cmd = command(job, setting, args.out)
            results_path = Path(cmd[cmd.index("--results") + 1])
            key = f"{job}@{setting}"
            if not results_path.exists():
                load = os.getloadavg()[0]
                started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                summary["runs"][key] = {"command": shlex.join(cmd), "started": started, "load_average": load,
                                        "commit": git_commit()}
            row = summary["runs"].setdefault(key, {"command": shlex.join(cmd)})
            row.update(summary_row(json.loads(results_path.read_text())))
            wanda = summary["runs"].get(f"wanda@{setting}")
            for other in summary["runs"]:
                if other.endswith(f"@{setting}") and wanda and "prune_s" in summary["runs"][other]:
                    summary["runs"][other]["prune_ratio_to_wanda"] = summary["runs"][other]["prune_s"] / wanda["prune_s"]
            print(f"{key:24s} ppl {row['perplexity']:9.3f}  prune {row['prune_s']:7.1f} s", flush=True)
            tmp = summary_path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(summary, indent=1))
            tmp.replace(summary_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
