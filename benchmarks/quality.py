"""Perplexity and per-layer reconstruction error of every pruning method on the demo model.

For each configuration this script prunes the model with ``pipeline.prune_model`` on
calibration windows from the bundled C4-like corpus, measures perplexity on the bundled
WikiText-like text (``evaluate.perplexity``), and collects each sublayer's relative
reconstruction error ``‖(W − Ŵ) X‖² / ‖W X‖²`` on its own calibration inputs, before DSnoT
(the initial mask) and after. The Hessians are gathered for every run (``recon_error=True``).

Configurations ("full" table, 26 runs):
  dense;
  at 50%, 60%, 70% and 2:4: wanda, and the official, reference and exact DSnoT variants
  started from Wanda;
  at 60% also: magnitude and magnitude + the three variants; SparseGPT with its weight update;
  the SparseGPT mask alone (no update: DSnoT with 0 cycles) and that mask + the three variants.

Default budget (``--preset default``): S = 16 calibration sequences of L = 128 tokens,
perplexity on 16 windows of 128 tokens, DSnoT on the attention sublayers only (the released
code's default). Cost is dominated by the forward passes and Hessians (which grow with S·L),
plus a fixed ~40 s of CPU per run for the float64 reconstruction-error diagnostics. Measured
here on a shared machine: S = 32, L = 256 took about 4.5 minutes of CPU per run (dense 290 s,
Wanda 60% about 260 s); the default has 4× fewer tokens, estimated at 1.5 to 2 minutes per
run, 40 to 55 minutes for the 26 runs on 2 idle cores. Each run's time is printed.
``--preset smoke`` (S = 2, L = 32, 2 windows, three configurations) only checks that
everything runs (about 5 minutes, mostly the fixed diagnostics cost).

Prints a Markdown table and writes every number (with per-layer, per-sublayer diagnostics) to a
JSON file. Never asserts anything.

    python benchmarks/quality.py [--preset default|smoke] [--out benchmarks/results/quality.json]
        [--model DIR] [--nsamples S] [--seqlen L] [--eval-windows W] [--only NAME,NAME]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dsnot_ref import data
from dsnot_ref import model as model_lib
from dsnot_ref.errors import UserError
from dsnot_ref.evaluate import perplexity
from dsnot_ref.io_utils import atomic_write_json
from dsnot_ref.methods import DSnoTSettings, PruneSpec
from dsnot_ref.pipeline import PipelineSettings, jsonable, prune_model
from provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results"

PRESETS = {
    "default": {"nsamples": 16, "seqlen": 128, "eval_windows": 16},
    "smoke": {"nsamples": 2, "seqlen": 32, "eval_windows": 2},
}
SMOKE_CONFIGS = ("dense", "wanda@50%", "dsnot-exact@50%")
VARIANTS = ("official", "reference", "exact")


@dataclass(frozen=True)
class Config:
    name: str  # e.g. "dsnot-exact@60%", "sparsegpt-mask+dsnot-reference@60%"
    level: str  # "50%", "2:4", ...
    spec: PruneSpec


def sparsity_levels():
    """(label, sparsity, nm) of the table's columns."""
    return [("50%", 0.5, None), ("60%", 0.6, None), ("70%", 0.7, None), ("2:4", 0.5, (2, 4))]


def all_configs() -> list[Config]:
    """The full table, in the order it is printed."""
    configs = [Config("dense", "-", PruneSpec("dense", 0.0))]
    for label, p, nm in sparsity_levels():
        configs.append(Config(f"wanda@{label}", label, PruneSpec("wanda", p, nm)))
        for variant in VARIANTS:
            spec = PruneSpec("dsnot", p, nm, "wanda", DSnoTSettings(variant=variant))
            configs.append(Config(f"dsnot-{variant}@{label}", label, spec))
    configs.append(Config("magnitude@60%", "60%", PruneSpec("magnitude", 0.6)))
    for variant in VARIANTS:
        spec = PruneSpec("dsnot", 0.6, None, "magnitude", DSnoTSettings(variant=variant))
        configs.append(Config(f"magnitude+dsnot-{variant}@60%", "60%", spec))
    configs.append(Config("sparsegpt@60%", "60%", PruneSpec("sparsegpt", 0.6)))
    mask_only = DSnoTSettings(max_cycle_time=0)  # SparseGPT's mask, no weight update, no swaps
    configs.append(Config("sparsegpt-mask@60%", "60%", PruneSpec("dsnot", 0.6, None, "sparsegpt", mask_only)))
    for variant in VARIANTS:
        spec = PruneSpec("dsnot", 0.6, None, "sparsegpt", DSnoTSettings(variant=variant))
        configs.append(Config(f"sparsegpt-mask+dsnot-{variant}@60%", "60%", spec))
    return configs


def layer_errors(diagnostics: list[dict]) -> list[dict]:
    """Per layer: every sublayer's recon_before / recon_after / swaps / whether DSnoT ran."""
    keys = ("recon_before", "recon_after", "swaps", "refined", "fraction_pruned")
    return [
        {"layer": d["layer"], "sublayers": {name: {k: sub.get(k) for k in keys} for name, sub in d["sublayers"].items()}}
        for d in diagnostics
    ]


def mean_recon(layers: list[dict], key: str, dsnot_only: bool) -> float | None:
    """Mean relative error over sublayers (only those DSnoT adjusted, when ``dsnot_only``)."""
    values = [
        sub[key]
        for layer in layers
        for sub in layer["sublayers"].values()
        if sub.get(key) is not None and (sub.get("refined") or not dsnot_only)
    ]
    return float(np.mean(values)) if values else None


def run_config(model, calib, eval_tokens, config: Config, args) -> dict:
    """Prune with one configuration, evaluate, and summarise; a UserError becomes a row."""
    settings = PipelineSettings(
        spec=config.spec, skip_layer=args.skip_layer, chunk_size=args.chunk_size, recon_error=True,
        recon_error_tokens=None,  # the table's errors from every calibration token, not prune's sample
    )
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="dsnot-quality-") as tmp:
            with prune_model(model, calib, settings, Path(tmp) / "run") as run:
                prune_seconds = time.perf_counter() - started
                layers = layer_errors(run.diagnostics)
                pruned_model = model_lib.load_model(model.path, store=run.weights_store())
                ppl = perplexity(pruned_model, eval_tokens, args.seqlen, max_windows=args.eval_windows)
    except UserError as exc:
        return {"name": config.name, "level": config.level, "error": str(exc)}
    return {
        "name": config.name,
        "level": config.level,
        "spec": jsonable(asdict(config.spec)),
        "perplexity": ppl["perplexity"],
        "eval": {k: ppl[k] for k in ("n_windows", "n_tokens", "seqlen", "seconds")},
        "prune_seconds": prune_seconds,
        "seconds": time.perf_counter() - started,
        "recon_before_dsnot_sublayers": mean_recon(layers, "recon_before", True),
        "recon_after_dsnot_sublayers": mean_recon(layers, "recon_after", True),
        "recon_before_all": mean_recon(layers, "recon_before", False),
        "recon_after_all": mean_recon(layers, "recon_after", False),
        "swaps": int(sum(sub.get("swaps") or 0 for layer in layers for sub in layer["sublayers"].values())),
        "layers": layers,
    }


def _fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def markdown_table(rows: list[dict]) -> str:
    """One line per configuration: perplexity, mean relative error before/after, swaps, time."""
    lines = [
        "| configuration | sparsity | perplexity | recon before → after (DSnoT sublayers) "
        "| recon before → after (all) | swaps | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['level']} | error: {r['error']} | | | | |")
            continue
        lines.append(
            f"| {r['name']} | {r['level']} | {r['perplexity']:.2f} "
            f"| {_fmt(r['recon_before_dsnot_sublayers'])} → {_fmt(r['recon_after_dsnot_sublayers'])} "
            f"| {_fmt(r['recon_before_all'])} → {_fmt(r['recon_after_all'])} "
            f"| {r['swaps']} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def layer_table(rows: list[dict], level: str) -> str:
    """Per layer, for the configurations at one sparsity level: the mean relative error of the
    sublayers DSnoT adjusts (all sublayers where DSnoT did not run), before → after."""
    chosen = [r for r in rows if r.get("level") == level and "layers" in r]
    if not chosen:
        return ""
    lines = ["| layer | " + " | ".join(r["name"] for r in chosen) + " |", "|---" * (len(chosen) + 1) + "|"]
    for i in range(len(chosen[0]["layers"])):
        cells = []
        for r in chosen:
            layer = [r["layers"][i]]
            dsnot_only = any(sub.get("refined") for sub in layer[0]["sublayers"].values())
            before = mean_recon(layer, "recon_before", dsnot_only)
            after = mean_recon(layer, "recon_after", dsnot_only)
            cells.append(f"{_fmt(before, 3)} → {_fmt(after, 3)}")
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="default")
    p.add_argument("--model", default=None, help="HF model directory (default: the demo model, fetched if needed)")
    p.add_argument("--nsamples", type=int, default=None, help="S calibration sequences")
    p.add_argument("--seqlen", type=int, default=None, help="L tokens per calibration sequence and eval window")
    p.add_argument("--eval-windows", type=int, default=None, help="perplexity windows (default from the preset)")
    p.add_argument("--only", default=None, help="comma-separated configuration names (see --list)")
    p.add_argument("--list", action="store_true", help="list configuration names and exit")
    p.add_argument("--skip-layer", default="mlp", help='DSnoT skips this group: "mlp" (default), "self_attn", "no_skip"')
    p.add_argument("--layer-level", default="60%", help="sparsity level of the per-layer table (e.g. 60%%, 2:4)")
    p.add_argument("--chunk-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None,
                   help="JSON results file (default benchmarks/results/quality.json; quality_smoke.json for the smoke preset)")
    args = p.parse_args(argv)
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.out is None:
        args.out = str(RESULTS / ("quality.json" if args.preset == "default" else f"quality_{args.preset}.json"))
    return args


def select_configs(args) -> list[Config]:
    configs = all_configs()
    names = args.only.split(",") if args.only else (SMOKE_CONFIGS if args.preset == "smoke" else None)
    if names is None:
        return configs
    by_name = {c.name: c for c in configs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UserError(f"unknown configuration(s) {', '.join(unknown)}; see --list")
    return [by_name[n] for n in names]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        print("\n".join(c.name for c in all_configs()))
        return 0
    configs = select_configs(args)
    if args.model is None:
        from dsnot_ref.demo_model import fetch_demo_model  # noqa: PLC0415

        args.model = str(fetch_demo_model())
    model = model_lib.load_model(args.model)
    tokenizer = data.load_tokenizer(args.model)
    calib = data.calibration_windows(tokenizer, data.BUNDLED_CALIBRATION, args.nsamples, args.seqlen, args.seed)
    eval_tokens = data.eval_tokens(tokenizer, data.BUNDLED_EVAL)
    print(
        f"model {args.model}: S={args.nsamples} L={args.seqlen}, eval {args.eval_windows} windows of "
        f"{args.seqlen}, DSnoT skips {args.skip_layer!r}, {len(configs)} runs",
        file=sys.stderr,
    )
    rows = []
    record = {"provenance": provenance(["python", "benchmarks/quality.py", *(sys.argv[1:] if argv is None else argv)]),
              "settings": dict(vars(args)), "runs": rows}
    for config in configs:
        row = run_config(model, calib, eval_tokens, config, args)
        rows.append(row)
        done = row.get("perplexity")
        print(f"{config.name}: perplexity {_fmt(done, 6)} in {row.get('seconds', 0):.0f} s", file=sys.stderr)
        atomic_write_json(args.out, record)  # after every run: a long table survives an interruption
    print(markdown_table(rows))
    per_layer = layer_table(rows, args.layer_level)
    if per_layer:
        print(f"\nPer-layer relative reconstruction error at {args.layer_level} (sublayers DSnoT adjusts):\n")
        print(per_layer)
    print(f"\nwritten {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

