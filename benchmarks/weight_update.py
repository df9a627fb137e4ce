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

Settings (``--settings``, in this order): 0.7, 0.6, 2:4, 0.5. Each run's own results file and
run directory go to a scratch directory (``--scratch``); a run whose results file is already
there is not repeated, so an interrupted session continues, and several sessions may share the
scratch directory. ``--out`` (default benchmarks/results/weight_update.json) gathers every
finished run there: perplexity, prune time and its phases, the mean relative calibration error
per sublayer type of the initial mask, the final mask and the weights returned, each job's ratio to Wanda's prune
time at the same setting, and per run its command, start time, load average and commit; its
"provenance" names the machine, date, commit and the command of this script. Wall-clock times
on a shared machine: read the ratios with the load averages beside them. Prints, never asserts.

    python benchmarks/weight_update.py [--settings 0.7,0.6] [--jobs swaps+update,sparsegpt,wanda]
        [--no-eval] [--scratch /tmp/dsnot_weight_update] [--out benchmarks/results/weight_update.json]

``--no-eval`` skips the perplexity and the calibration errors (a timing run of `prune` as a user
runs it; its key gets the suffix "/time"); where a setting has time runs, the tables take the
prune-time ratios from them.
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

# The jobs that gather G also report each sublayer's calibration errors (--recon-error reads their
# own G: a few products per sublayer); Wanda's run is `prune` at its defaults, the time yardstick.
JOBS = {
    "swaps+update": ["--prune-method", "swaps", "--initial-method", "wanda", "--weight-update", "exact",
                     "--recon-error"],
    "sparsegpt": ["--prune-method", "sparsegpt", "--recon-error"],
    "wanda": ["--prune-method", "wanda"],
    "wanda+update": ["--prune-method", "wanda", "--weight-update", "exact", "--recon-error"],
    "magswaps+update": ["--prune-method", "swaps", "--initial-method", "magnitude", "--weight-update", "exact",
                        "--recon-error"],
}
SETTINGS = ("0.7", "0.6", "2:4", "0.5")
BUDGET = ["--nsamples", "32", "--seqlen", "512", "--eval-max-windows", "32", "--quiet"]


def sparsity_flags(setting: str) -> list[str]:
    return ["--sparsity-type", setting] if ":" in setting else ["--sparsity-ratio", setting]


def run_name(job: str, setting: str, evaluate: bool) -> str:
    return f"{job}_{setting.replace(':', 'of')}" + ("" if evaluate else "_time")


def command(job: str, setting: str, scratch: Path, evaluate: bool) -> list[str]:
    name = run_name(job, setting, evaluate)
    budget = BUDGET if evaluate else [*BUDGET[:4], "--eval-dataset", "none", "--quiet"]
    flags = JOBS[job] if evaluate else [f for f in JOBS[job] if f != "--recon-error"]  # a time run: as users run it
    return [sys.executable, "-m", "dsnot_ref", "prune", "--model", "smollm2-135m", *flags,
            *sparsity_flags(setting), *budget, "--results", str(scratch / f"{name}.json"),
            "--run-dir", str(scratch / f"run_{name}")]


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":(exclude)benchmarks/results"],  # not the results file this script rewrites
                           capture_output=True, text=True, check=False).stdout.strip()
    return done.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def sublayer_means(layers: list[dict], key: str) -> dict:
    """Mean of one relative-error diagnostic per sublayer type over the layers."""
    names = sorted({row["sublayer"] for row in layers})
    return {name: sum(r[key] for r in layers if r["sublayer"] == name) / sum(r["sublayer"] == name for r in layers)
            for name in names if all(key in r for r in layers if r["sublayer"] == name)}


def summary_row(results: dict) -> dict:
    layers = results.get("layers", [])
    pruned = results.get("perplexity", {}).get("pruned")
    return {"perplexity": pruned["perplexity"] if pruned else None, "prune_s": results["times"]["prune"],
            "pipeline_s": results["pipeline_times"],
            "recon_initial": sublayer_means(layers, "recon_before"),
            "recon_mask": sublayer_means(layers, "recon_mask") or sublayer_means(layers, "recon_before"),
            "recon_after": sublayer_means(layers, "recon_after")}


def provenance(argv: list[str]) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else ""
    return {"machine": f"{platform.node()}: {cpu}, {os.cpu_count()} CPUs (see each run's load average)",
            "date": datetime.date.today().isoformat(), "commit": git_commit(),
            "command": shlex.join(["python", "benchmarks/weight_update.py", *argv]),
            "environment": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/weight_update.json"))
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/dsnot_weight_update"))
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--jobs", default=",".join(JOBS))
    parser.add_argument("--no-eval", action="store_true")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    evaluate = not args.no_eval
    for setting in args.settings.split(","):
        for job in args.jobs.split(","):
            cmd = command(job, setting, args.scratch, evaluate)
            results_path = args.scratch / f"{run_name(job, setting, evaluate)}.json"
            if not results_path.exists():
                meta = {"command": shlex.join(cmd), "load_average": os.getloadavg()[0], "commit": git_commit(),
                        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                results_path.with_suffix(".meta").write_text(json.dumps(meta))
            row = summary_row(json.loads(results_path.read_text()))
            ppl = "" if row["perplexity"] is None else f"ppl {row['perplexity']:9.3f}  "
            print(f"{job}@{setting}{'' if evaluate else '/time'}: {ppl}prune {row['prune_s']:7.1f} s", flush=True)
            collect(args.scratch, args.out, sys.argv[1:])
    return 0


def collect(scratch: Path, out: Path, argv: list[str]) -> None:
    """Every finished run in ``scratch`` into one results file with its provenance."""
    runs = {}
    for path in sorted(scratch.glob("*.json")):
        job, _, rest = path.stem.rpartition("_") if not path.stem.endswith("_time") else path.stem[:-5].rpartition("_")
        setting = rest.replace("of", ":")
        key = f"{job}@{setting}" + ("/time" if path.stem.endswith("_time") else "")
        meta_path = path.with_suffix(".meta")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        runs[key] = {**meta, **summary_row(json.loads(path.read_text()))}
    for key, row in runs.items():
        setting = key.split("@")[1].split("/")[0]
        wanda = runs.get(f"wanda@{setting}/time") or runs.get(f"wanda@{setting}")
        if wanda:
            row["prune_ratio_to_wanda"] = row["prune_s"] / wanda["prune_s"]
    commits = sorted({row["commit"].split()[0] for row in runs.values() if row.get("commit")})
    record = {"provenance": {**provenance(argv), "commit": ", ".join(commits) + " (each run names its own)"}
              if commits else provenance(argv),
              "budget": "32 x 512 calibration (bundled corpus, seed 0); perplexity on the first 32 windows of "
                        "512 tokens of the bundled evaluation text",
              "runs": runs}
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    raise SystemExit(main())
