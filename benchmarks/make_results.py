"""Write every published results table from the raw files in benchmarks/results/.

    python benchmarks/make_results.py          # rewrite the tables in README.md and docs/ (make results)
    python benchmarks/make_results.py --check  # exit 1 naming each table that differs from its raw files

A table lives in a Markdown file between two markers,

    <!-- results:NAME -->
    ...
    <!-- /results:NAME -->

and NAME is one of TABLES below. Everything between the markers is produced here from the raw
files; nothing in it is edited by hand. Every raw file carries its provenance (machine, date,
commit, exact command): a JSON file as its "provenance" object, a text file as "# machine:",
"# date:" (or a dated title), "# commit:" and "# command:" lines. A file whose run kept no output
holds figures transcribed from the text that first quoted them, and its provenance says from where
("recovered"). The prose around a block refers to it and never restates its numbers
(tests/test_results_tables.py checks that too).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOCUMENTS = ("README.md", "docs/*.md", "benchmarks/README.md")
PROVENANCE = ("machine", "date", "commit", "command")
BLOCK = re.compile(r"(<!-- results:([a-z0-9_]+) -->\n)(.*?)(<!-- /results:\2 -->)", re.DOTALL)
SUBLAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


# --- reading -------------------------------------------------------------------------------


def load(results: Path, name: str) -> dict:
    return json.loads((results / name).read_text(encoding="utf-8"))


def source_line(raw: dict, *names: str) -> str:
    """The italic line under a table naming its raw files and their provenance."""
    p = raw["provenance"]
    files = ", ".join(f"`benchmarks/results/{n}`" for n in names)
    return f"*Raw: {files}; {p['date']}, commit {p['commit']}, {p['machine']}.*"


def perplexity(run: dict) -> float:
    """The perplexity of a `prune --results` file's pruned model."""
    return run["perplexity"]["pruned"]["perplexity"]


def reductions(run: dict, sublayer: str = "") -> list[float]:
    """1 - recon_after / recon_before of each sublayer (whose name ends with `sublayer`): the relative
    calibration error cut."""
    return [1 - row["recon_after"] / row["recon_before"] for row in run["layers"]
            if row.get("recon_before") and row["sublayer"].endswith(sublayer)]


def mean_reduction(run: dict) -> float:
    """Mean over sublayers of the relative calibration error cut."""
    cuts = reductions(run)
    return sum(cuts) / len(cuts)


def total_error_ratio(run: dict) -> float:
    """Summed calibration error after / before over every sublayer."""
    layers = run["layers"]
    return sum(row["error_after"] for row in layers) / sum(row["error_before"] for row in layers)


def markdown(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def ppl(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def pct(value: float) -> str:
    return f"{100 * value:+.1f}%".replace("-", "−")


# --- the tables ------------------------------------------------------------------------------


def demo(results: Path) -> str:
    """The README's table: `dsnot-ref demo`, as last run."""
    raw = load(results, "demo.json")
    labels = {"dense": "dense", "wanda": "Wanda", "wanda + DSnoT": "Wanda + DSnoT (reference)",
              "wanda + SparseSwaps": "Wanda + SparseSwaps",
              "wanda + SparseSwaps + update": "Wanda + SparseSwaps + weight update"}
    rows = [(labels[r["model"]], f"{r['perplexity']:.3f}",
             "" if r["model"] == "dense" else f"{r['prune_seconds']:.0f}", f"{r['eval_seconds']:.0f}")
            for r in raw["demo"]]
    size = raw["size"]
    minutes, seconds = divmod(round(raw["total_seconds"]), 60)
    caption = (f"`dsnot-ref demo`: {100 * raw['sparsity']:g}% unstructured, S = {size['nsamples']} calibration sequences of "
               f"L = {size['seqlen']} tokens, perplexity on the first {size['eval_windows']} windows of "
               f"{size['seqlen']} tokens; {minutes} min {seconds:02d} s in all.")
    return "\n".join([markdown(("model", "perplexity", "prune (s)", "eval (s)"), rows), "", caption, "",
                      source_line(raw, "demo.json")])


DEMO_MODELS = (("dense", "dense"), ("wanda", "Wanda"), ("wanda + DSnoT", "Wanda + DSnoT (reference)"),
               ("wanda + SparseSwaps", "Wanda + SparseSwaps"))


def demo_earlier(results: Path) -> str:
    """Earlier runs of `dsnot-ref demo`: perplexity and prune / eval seconds of each model, and the total."""
    raw = load(results, "demo_earlier.json")
    runs = raw["runs"]
    rows = []
    for key, label in DEMO_MODELS:
        cells = []
        for run in runs:
            r = next(r for r in run["demo"] if r["model"] == key)
            prune = "" if key == "dense" else f"{r['prune_seconds']:.0f} / "
            cells.append(f"{r['perplexity']:.3f} ({prune}{r['eval_seconds']:.0f} s)")
        rows.append((label, *cells))
    rows.append(("total", *(f"{run['total_seconds'] // 60} min {run['total_seconds'] % 60:02d} s" for run in runs)))
    header = ("model: perplexity (prune / eval s)", *(run["label"] for run in runs))
    return "\n".join([markdown(header, rows), "", source_line(raw, "demo_earlier.json")])


def dsnot_variants(results: Path) -> str:
    """Wanda 60% + each DSnoT variant through `prune`, demo calibration, 64 evaluation windows."""
    raw = load(results, "dsnot_variants60.json")
    wanda = raw["wanda"]
    rows = [(r["variant"], ppl(r["perplexity"]), pct(r["perplexity"] / wanda - 1),
             f"{r['swaps']:,}" if "swaps" in r else "", r.get("most_cycles", "")) for r in raw["rows"]]
    header = ("Wanda 60% + DSnoT variant", "perplexity", "vs Wanda", "swaps", "most cycles any row ran")
    note = (f"Same budget: dense {ppl(raw['dense'])}, Wanda {ppl(wanda)}; {raw['budget']}.")
    return "\n".join([markdown(header, rows), "", note, source_line(raw, "dsnot_variants60.json")])


QUALITY_ROWS = (
    ("dense", "0%", "dense", None),
    ("Wanda", "50%", "wanda@50%", "dsnot-{}@50%"),
    ("Wanda", "60%", "wanda@60%", "dsnot-{}@60%"),
    ("Wanda", "70%", "wanda@70%", "dsnot-{}@70%"),
    ("Wanda", "2:4", "wanda@2:4", "dsnot-{}@2:4"),
    ("magnitude", "60%", "magnitude@60%", "magnitude+dsnot-{}@60%"),
    ("SparseGPT mask (no update)", "60%", "sparsegpt-mask@60%", "sparsegpt-mask+dsnot-{}@60%"),
    ("SparseGPT (with its OBS update)", "60%", "sparsegpt@60%", None),
)
VARIANTS = ("official", "reference", "exact")


def quality(results: Path) -> str:
    """`benchmarks/quality.py`: every initial mask alone and with each DSnoT variant."""
    raw = load(results, "quality.json")
    runs = {run["name"]: run for run in raw["runs"]}
    rows = []
    for label, level, alone, with_dsnot in QUALITY_ROWS:
        cells = [ppl(runs[with_dsnot.format(v)]["perplexity"]) if with_dsnot else "" for v in VARIANTS]
        rows.append((label, level, ppl(runs[alone]["perplexity"]), *cells))
    header = ("initial mask", "sparsity", "initial mask alone", *(f"+ DSnoT {v}" for v in VARIANTS))
    recon = [(f"Wanda {level}", *(recon_change(runs[f"dsnot-{v}@{level}"]) for v in VARIANTS))
             for level in ("50%", "60%", "70%", "2:4")]
    minutes = sum(run["seconds"] for run in raw["runs"]) / 60
    return "\n".join([markdown(header, rows), "",
                      markdown(("recon of DSnoT's sublayers, before → after", *VARIANTS), recon), "",
                      f"{len(raw['runs'])} runs, {minutes:.0f} min in all.", "", source_line(raw, "quality.json")])


def recon_change(run: dict) -> str:
    before, after = run["recon_before_dsnot_sublayers"], run["recon_after_dsnot_sublayers"]
    return f"{before:.4f} → {after:.4f} ({pct(after / before - 1)})"


OWL_ROWS = (("Wanda", "wanda", 0.7), ("Wanda + DSnoT (reference)", "dsnot_reference", 0.7),
            ("Wanda + DSnoT (exact)", "dsnot_exact", 0.7), ("SparseGPT", "sparsegpt", 0.7),
            ("Wanda", "wanda", 0.6), ("Wanda", "wanda", 0.8))


def owl(results: Path) -> str:
    """Uniform against OWL layerwise sparsity at the quality table's budget."""
    raw = load(results, "owl.json")
    rows = []
    for label, key, p in OWL_ROWS:
        uniform, layered = raw[f"small_{p}_{key}_uniform"], raw[f"small_{p}_{key}_owl"]
        rows.append((label, f"{100 * p:.0f}%", ppl(uniform["perplexity"]), ppl(layered["perplexity"]),
                     pct(layered["perplexity"] / uniform["perplexity"] - 1),
                     f"{uniform['prune_s']:.0f} / {layered['prune_s']:.0f}", f"{layered['owl_pass_s']:.0f}"))
    header = ("method", "P", "uniform", "OWL", "OWL vs uniform", "prune (s), uniform / OWL", "OWL's dense pass (s)")
    return "\n".join([markdown(header, rows), "", owl_profile(raw), "", source_line(raw, "owl.json")])


def owl_profile(raw: dict) -> str:
    """What OWL's 70% profile looked like: outlier ratios and layer sparsities by depth, overall sparsity."""
    run = raw["small_0.7_wanda_owl"]
    ratios, levels = run["outlier_ratios"], run["layer_sparsities"]

    def at(values: list[float], pick) -> str:
        layer = values.index(pick(values))
        return f"{100 * values[layer]:.2f}% (layer {layer})"

    def overall(key: str) -> str:
        return f"{raw[f'small_0.7_{key}_owl']['overall']:.5f} / {raw[f'small_0.7_{key}_uniform']['overall']:.5f}"

    rows = [("outlier ratio (share of scores above M × the layer mean)", at(ratios, min), at(ratios, max),
             f"{100 * ratios[0]:.2f}%"),
            ("OWL's layer sparsity", at(levels, min), at(levels, max), f"{100 * levels[0]:.2f}%")]
    return "\n".join([markdown(("Wanda, OWL at 70%", "lowest", "highest", "layer 0"), rows), "",
                      f"Overall sparsity achieved, OWL / uniform: {overall('wanda')} for the row-wise methods, "
                      f"{overall('sparsegpt')} for SparseGPT."])


SWAPS_ROWS = (
    ("50%", "wanda50.json", "swaps50.json", ""),
    ("60%", None, "swaps60.json", ""),
    ("70%", "wanda70.json", "swaps70.json", ""),
    ("2:4", "wanda24.json", "swaps24.json", ""),
    ("50%, from magnitude", "magnitude50.json", "magswaps50.json", "magnitude"),
    ("60%, from magnitude", "magnitude60.json", "magswaps60.json", "magnitude"),
    ("70%, from magnitude", "magnitude70.json", "magswaps70.json", "magnitude"),
    ("2:4, from magnitude", "magnitude24.json", "magswaps24.json", "magnitude"),
)


def demo_wanda60(results: Path) -> float:
    """Wanda 60% at the demo budget: the demo's own Wanda row (same calibration and evaluation)."""
    return next(r["perplexity"] for r in load(results, "demo.json")["demo"] if r["model"] == "wanda")


def swaps_budget(results: Path) -> str:
    """Initial mask alone against initial mask + SparseSwaps, demo budget, every setting measured."""
    rows = []
    for setting, alone, refined, start in SWAPS_ROWS:
        base = demo_wanda60(results) if alone is None else perplexity(load(results, alone))
        run = load(results, refined)
        start_name = start or "Wanda"
        cuts = reductions(run)
        rows.append((setting, f"{ppl(base)} ({start_name})", f"{ppl(perplexity(run))} ({start_name} + SparseSwaps)",
                     pct(perplexity(run) / base - 1), pct(-mean_reduction(run)),
                     f"{100 * min(cuts):.0f}% to {100 * max(cuts):.0f}%"))
    header = ("demo budget (32 × 512, first 32 windows)", "initial mask", "+ SparseSwaps", "perplexity",
              "calibration error, mean over the 210 sublayers", "error cut, least to most")
    files = ", ".join(f for row in SWAPS_ROWS for f in row[1:3] if f)
    return "\n".join([markdown(header, rows), "",
                      f"*Raw: `benchmarks/results/` {files}; Wanda 60% from `demo.json`; each file's provenance "
                      "names its date, commit and machine.*"])


def swaps_budget_times(results: Path) -> str:
    """Prune time of each perplexity run of the first table, with the machine's load as its provenance states."""
    rows = []
    for setting, alone, refined, _ in SWAPS_ROWS:
        run = load(results, refined)
        base = "" if alone is None else f"{load(results, alone)['times']['prune']:.0f}"
        steps = run["pipeline_times"]
        rows.append((setting, base, f"{run['times']['prune']:.0f}",
                     " / ".join(f"{steps[k]:.0f}" for k in ("forward", "stats", "prune", "io")),
                     run["provenance"]["machine"]))
    header = ("setting", "initial mask: prune (s)", "+ SparseSwaps: prune (s)",
              "+ SparseSwaps: forward / statistics / search / I/O (s)", "machine (the SparseSwaps run)")
    return "\n".join([markdown(header, rows), "", "*Raw: the files of the first table.*"])


SUBLAYER_SETTINGS = (("Wanda 60%", "swaps60.json"), ("Wanda 2:4", "swaps24.json"), ("magnitude 2:4", "magswaps24.json"))


def swaps_sublayers(results: Path) -> str:
    """Per sublayer type: relative calibration error before and after SparseSwaps, and its cut."""
    parts, names = [], []
    for label, name in SUBLAYER_SETTINGS:
        raw = load(results, name)
        rows = []
        for sublayer in SUBLAYERS:
            layers = [r for r in raw["layers"] if r["sublayer"].endswith(sublayer)]
            before = sum(r["recon_before"] for r in layers) / len(layers)
            after = sum(r["recon_after"] for r in layers) / len(layers)
            cuts = reductions(raw, sublayer)
            rows.append((sublayer, f"{before:.4f} → {after:.4f}",
                         f"{100 * sum(cuts) / len(cuts):.1f}% ({100 * min(cuts):.0f}% to {100 * max(cuts):.0f}%)"))
        n_layers = len({r["layer"] for r in raw["layers"]})
        header = (f"{label}: sublayer", f"relative error → + SparseSwaps (mean over the {n_layers} layers)",
                  "error cut, mean (least to most over layers)")
        parts += [markdown(header, rows), ""]
        names.append(name)
    return "\n".join([*parts, f"*Raw: `benchmarks/results/` {', '.join(names)}; each file's provenance names its "
                                 "date, commit and machine.*"])


GRAM_ROWS = (("Wanda 60%", "demo_swaps60_gram64.json", "demo_swaps60_gram32.json", None),
             ("Wanda 70%", "swaps70.json", "swaps70_gram32.json", "wanda70.json"),
             ("Wanda 2:4", "swaps24.json", "swaps24_gram32.json", "wanda24.json"))


def swaps_gram(results: Path) -> str:
    """SparseSwaps with float64 against float32 Gram products, same job otherwise."""
    rows, parting = [], []
    for setting, g64, g32, alone in GRAM_ROWS:
        a, b = load(results, g64), load(results, g32)
        wanda = demo_wanda60(results) if alone is None else perplexity(load(results, alone))
        rows.append((setting, ppl(perplexity(a)), ppl(perplexity(b)),
                     f"{100 * mean_reduction(a):.1f}% / {100 * mean_reduction(b):.1f}%",
                     f"{total_error_ratio(a):.4f} / {total_error_ratio(b):.4f}",
                     f"{sum(r['swaps'] for r in a['layers']):,} / {sum(r['swaps'] for r in b['layers']):,}"))
        first = next(((x, y) for x, y in zip(a["layers"], b["layers"]) if x["swaps"] != y["swaps"]), None)
        parted = "none" if first is None else f"{first[0]['name']}: {first[0]['swaps']:,} / {first[1]['swaps']:,}"
        versus = f"{pct(perplexity(a) / wanda - 1)} / {pct(perplexity(b) / wanda - 1)}"
        parting.append((setting, ppl(wanda), versus, pct(perplexity(b) / perplexity(a) - 1), parted))
    header = ("setting", "perplexity, float64 G", "perplexity, float32 G",
              "mean error reduction (64 / 32)", "summed error after / before (64 / 32)", "swaps (64 / 32)")
    header2 = ("setting", "Wanda alone", "perplexity against Wanda (64 / 32)", "float32 G against float64 G",
               "first sublayer whose swaps differ (64 / 32)")
    files = ", ".join(f for row in GRAM_ROWS for f in row[1:] if f)
    return "\n".join([markdown(header, rows), "", markdown(header2, parting), "",
                      f"*Raw: `benchmarks/results/` {files}; Wanda 60% from `demo.json`.*"])


TIME_PAIRS = (("wanda70.json", 0), ("time70_wanda.json", "time70_swaps.json"), (1, 2), (3, 4))


def timed_run(results: Path, source: str | int) -> dict:
    """One prune timing: a `prune --results` file, or a run of swaps_transcribed.json by its index."""
    if isinstance(source, int):
        return {**load(results, "swaps_transcribed.json")["runs"][source], "source": "swaps_transcribed.json"}
    raw = load(results, source)
    settings = raw["settings"]
    sparsity = (f"{100 * settings['sparsity_ratio']:.0f}%" if settings["sparsity_type"] == "unstructured"
                else settings["sparsity_type"])
    job = {"wanda": "Wanda", "swaps": "Wanda + SparseSwaps"}[settings["prune_method"]]
    p = raw["provenance"]
    return {"date": p["date"], "commit": p["commit"], "load": p["machine"], "sparsity": sparsity, "job": job,
            "prune": raw["times"]["prune"], "pipeline_times": raw["pipeline_times"], "source": source}


def swaps_time(results: Path) -> str:
    """Prune time of Wanda against Wanda + SparseSwaps, each pair back to back on the same job, no evaluation."""
    rows, sources = [], []
    for pair in TIME_PAIRS:
        wanda, swaps = (timed_run(results, source) for source in pair)
        for run in (wanda, swaps):
            steps = run["pipeline_times"]
            ratio = f"{run['prune'] / wanda['prune']:.2f}" if run is swaps else ""
            rows.append((run["date"], run["commit"], f"{run['job']} {run['sparsity']}", f"{run['prune']:.1f}",
                         " / ".join(f"{steps[k]:.1f}" for k in ("forward", "stats", "prune", "io")), ratio,
                         run["load"]))
            sources += [run["source"]] if run["source"] not in sources else []
    header = ("date", "commit", "job", "prune (s)", "forward / statistics / pruning or search / I/O (s)",
              "SparseSwaps / Wanda", "machine")
    return "\n".join([markdown(header, rows), "", f"*Raw: `benchmarks/results/` {', '.join(sources)} "
                                                  "(transcribed runs: their provenance says from where).*"])


UPDATE_JOBS = (("wanda", "Wanda"), ("sparsegpt", "SparseGPT"), ("wanda+update", "Wanda + update"),
               ("swaps+update", "Wanda + SparseSwaps + update"),
               ("magswaps+update", "magnitude + SparseSwaps + update"))
UPDATE_SETTINGS = (("0.5", "50%"), ("0.6", "60%"), ("0.7", "70%"), ("2:4", "2:4"))


def weight_update(results: Path) -> str:
    """`benchmarks/weight_update.py`: perplexity of each job and prune time against Wanda's, demo budget."""
    raw = load(results, "weight_update.json")
    runs = raw["runs"]
    rows = []
    for setting, label in UPDATE_SETTINGS:
        cells = [ppl(runs[f"{job}@{setting}"]["perplexity"]) if f"{job}@{setting}" in runs else "not run"
                 for job, _ in UPDATE_JOBS]
        best, gpt = runs.get(f"swaps+update@{setting}"), runs.get(f"sparsegpt@{setting}")
        versus = pct(best["perplexity"] / gpt["perplexity"] - 1) if best and gpt else ""
        timed = {job: runs.get(f"{job}@{setting}/time") or runs.get(f"{job}@{setting}")
                 for job in ("wanda", "sparsegpt", "swaps+update")}
        times = [time_ratio(timed[job], timed["wanda"]) for job in ("sparsegpt", "swaps+update")]
        rows.append((label, *cells, versus, *times))
    header = ("sparsity", *(name for _, name in UPDATE_JOBS), "SparseSwaps + update vs SparseGPT",
              "prune time / Wanda's: SparseGPT", "SparseSwaps + update")
    note = ("Prune time / Wanda's: the ratio of the wall-clock prune times (from the time runs, `prune` without "
            "evaluation or calibration errors, where a setting has them), and in parentheses the same ratio "
            "with each run's prune time divided by its own forward-pass time (the same work in every job, so "
            "a yardstick of how busy the machine was during that run).")
    seconds = [run["prune_s"] for run in runs.values()]
    dense = next(r["perplexity"] for r in load(results, "demo.json")["demo"] if r["model"] == "dense")
    spread = (f"Dense on the same budget: {dense:.2f} (`demo.json`). The prune phases took "
              f"{min(seconds) / 60:.1f} to {max(seconds) / 60:.1f} min each.")
    return "\n".join([markdown(header, rows), "", note, "", spread, "", source_line(raw, "weight_update.json")])


def weight_update_times(results: Path) -> str:
    """Each run's prune time split by pipeline step, with the machine's load when it started."""
    raw = load(results, "weight_update.json")
    runs = raw["runs"]
    rows = []
    for setting, label in UPDATE_SETTINGS:
        for job, name in UPDATE_JOBS:
            for suffix, kind in (("", "with perplexity"), ("/time", "time run")):
                run = runs.get(f"{job}@{setting}{suffix}")
                if run:
                    steps = run["pipeline_s"]
                    rows.append((label, name, kind, f"{run['prune_s']:.0f}",
                                 " / ".join(f"{steps.get(k, 0.0):.0f}"
                                            for k in ("forward", "stats", "prune", "io", "diagnostics")),
                                 f"{run['load_average']:.1f}", run["commit"]))
    header = ("sparsity", "job", "run", "prune (s)", "forward / statistics / pruning / I/O / diagnostics (s)",
              "load average at the start", "commit")
    return "\n".join([markdown(header, rows), "", source_line(raw, "weight_update.json")])


def weight_update_sublayers(results: Path) -> str:
    """Mean relative calibration error per sublayer type: Wanda's mask, + SparseSwaps, + the update,
    against SparseGPT's mask and SparseGPT with its update, at each sparsity both were run."""
    raw = load(results, "weight_update.json")
    runs = raw["runs"]
    parts = []
    for setting, label in UPDATE_SETTINGS:
        ours, gpt = runs.get(f"swaps+update@{setting}"), runs.get(f"sparsegpt@{setting}")
        if not ours or not gpt:
            continue
        rows = [(name.rpartition(".")[2], *(f"{value:.4f}" for value in (
                    ours["recon_initial"][name], ours["recon_mask"][name], ours["recon_after"][name],
                    gpt["recon_mask"][name], gpt["recon_after"][name])),
                 pct(ours["recon_after"][name] / ours["recon_mask"][name] - 1))
                for name in sorted(ours["recon_after"], key=lambda n: SUBLAYERS.index(n.rpartition(".")[2]))]
        header = (f"{label}: sublayer", "Wanda mask", "+ SparseSwaps", "+ update", "SparseGPT mask", "SparseGPT",
                  "the update's cut")
        parts += [markdown(header, rows), ""]
    below = load(results, "weight_update_sublayers_below.json")
    counts = ", ".join(f"{r['setting']} {r['below']} of {r['sublayers']}" for r in below["rows"])
    return "\n".join([*parts, source_line(raw, "weight_update.json"), "",
                      f"Sublayers whose error after the update is below SparseGPT's (each run on its own pruned "
                      f"inputs): {counts}.", "", source_line(below, "weight_update_sublayers_below.json")])


def time_ratio(run: dict | None, wanda: dict | None) -> str:
    """Prune time over Wanda's, raw and with each divided by its own forward time."""
    if not run or not wanda:
        return ""
    raw = run["prune_s"] / wanda["prune_s"]
    per_forward = (run["prune_s"] / run["pipeline_s"]["forward"]) / (wanda["prune_s"] / wanda["pipeline_s"]["forward"])
    return f"{raw:.2f} ({per_forward:.2f})"


def weight_update_cost(results: Path) -> str:
    """`benchmarks/weight_update_cost.py`: CPU time per row of the exact update, by width and sparsity."""
    raw = load(results, "weight_update_cost.json")
    rows = [(r["C"], f"{100 * r['sparsity']:.0f}%", r["k"], r["rows"], f"{1e3 * r['cpu_s_per_row']:.2f}",
             f"{r['gflop_per_s']:.1f}", r["stands_for"]) for r in raw["rows"]]
    header = ("C", "sparsity", "k kept per row", "rows timed", "CPU ms per row", "GFLOP/s (2k³/3)", "stands for")
    return "\n".join([markdown(header, rows), "", markdown(*update_cost_per_model(raw)), "",
                      source_line(raw, "weight_update_cost.json")])


# Rows of each input width C in one decoder layer, and the number of layers.
UPDATE_MODELS = (("demo model", 30, {576: 2 * 576 + 2 * 192 + 2 * 1536, 1536: 576}),
                 ("LLaMA-7B", 32, {4096: 4 * 4096 + 2 * 11008, 11008: 4096}))


def update_cost_per_model(raw: dict) -> tuple[tuple, list[tuple]]:
    """The measured CPU time per row, times the rows of each width: per layer, its widest inputs' share
    (down_proj), and the whole model."""
    per_row = {(r["C"], r["sparsity"]): r["cpu_s_per_row"] for r in raw["rows"]}
    rows = []
    for model, layers, widths in UPDATE_MODELS:
        for sparsity in sorted({s for _, s in per_row}):
            costs = {c: n * per_row[(c, sparsity)] for c, n in widths.items()}
            layer = sum(costs.values())
            total = layers * layer
            whole = f"{total:,.0f} s" if total < 3600 else f"{total / 3600:.0f} h"
            rows.append((model, f"{100 * sparsity:.0f}%", f"{layer:,.1f}" if layer < 100 else f"{layer:,.0f}",
                         f"{100 * costs[max(widths)] / layer:.0f}%", whole))
    header = ("the exact update, one core", "sparsity", "CPU s per layer", "down_proj's share", "whole model (CPU)")
    return header, rows


LARGE_LABELS = {"base": "base", "S2": "S × 2", "L2": "L × 2", "depth": "depth 24",
                "width": "width (hidden 1024, MLP 4096)"}


def large_model_rows(raw: dict) -> list[tuple]:
    base = raw["base"]
    rows = []
    for key, label in LARGE_LABELS.items():
        if key not in raw:
            continue
        c = raw[key]
        ratio = "" if key == "base" else f" ({c['wall'] / base['wall']:.2f})"
        mem = "" if key == "base" else f" ({c['peak_mib'] / base['peak_mib']:.2f})"
        steps = " / ".join(f"{c['pipeline_times'][k]:.1f}" for k in ("forward", "stats", "prune", "io"))
        rows.append((label, c["layers"], f"{c['S']} × {c['L']}", f"{c['checkpoint_gib']:.2f} GiB",
                     f"{c['wall']:.1f} s{ratio}", f"{c['peak_mib']:.0f} MiB{mem}", steps))
    return rows


def large_model(results: Path) -> str:
    """`benchmarks/large_model.py`: a Llama-3.2-1B-shaped checkpoint, one dimension varied at a time."""
    header = ("configuration", "layers", "S × L", "checkpoint", "wall", "peak RSS",
              "forward / statistics / pruning / I/O (s)")
    parts = []
    for name in ("large_model.json", "large_model_allocator.json"):
        raw = load(results, name)
        parts += [markdown(header, large_model_rows(raw)), "", source_line(raw, name), ""]
    return "\n".join(parts[:-1])


def agreement_end_to_end(results: Path) -> str:
    """Fraction of all mask entries identical end to end, and the first decoder layer that differs."""
    sections = released_sections((results / "released_agreement.txt").read_text(encoding="utf-8"))
    rows = []
    for size, a, b, heading in AGREEMENT_ROWS:
        fractions = sections[heading]
        first = next((layer for layer, f in enumerate(fractions) if f < 1.0), None)
        rows.append((size, a, b, f"{100 * sum(fractions) / len(fractions):.3f}%", "none" if first is None else first))
    for row in load(results, "released_agreement_transcribed.json")["rows"]:
        rows.append((row["size"], row["a"], row["b"], f"{100 * row['identical']:.3f}%", row["first_layer"]))
    return "\n".join([markdown(("S × L", "A", "B", "entries identical", "first differing layer"), rows), "",
                      "*Raw: `benchmarks/results/released_agreement.txt` (one row per decoder layer; the "
                      "fraction above is their mean, all layers being the same size) and "
                      "`benchmarks/results/released_agreement_transcribed.json` (rows whose per-layer output was not kept).*"])


AGREEMENT_ROWS = (
    ("32 × 512", "released, sdpa attention", "released, eager attention",
     "end-to-end, 32 x 512: released sdpa vs released eager"),
    ("32 × 512", "ours, commit fc63a67 (attention divided after PV)", "released, sdpa",
     "end-to-end, 32 x 512: released sdpa vs ours at fc63a67"),
    ("32 × 512", "ours", "released, sdpa", "end-to-end, 32 x 512: released sdpa vs ours"),
    ("8 × 256", "released, sdpa attention", "released, eager attention",
     "end-to-end, 8 x 256: released sdpa vs released eager"),
    ("8 × 256", "ours", "released, sdpa", "end-to-end, 8 x 256: released sdpa vs ours"),
    ("8 × 256", "ours", "released, eager", "end-to-end, 8 x 256: released eager vs ours"),
    ("8 × 256", "ours, commit 9cd1d0e (RMSNorm in NumPy's order)", "released, sdpa (fresh capture)",
     "end-to-end, 8 x 256: released sdpa vs ours at 9cd1d0e"),
)


def released_sections(text: str) -> dict[str, list[float]]:
    """Each '## end-to-end ...' section's per-layer fractions of identical mask entries, keyed by its
    heading without the parenthesised remark that may follow."""
    sections: dict[str, list[float]] = {}
    heading = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = re.sub(r" \(.*$", "", line[3:])
            sections[heading] = []
        elif heading and re.fullmatch(r"\s+\d+\s+[0-9.]+\s+[0-9.]+", line):
            sections[heading].append(float(line.split()[1]))
    return sections


def agreement_forward(results: Path) -> str:
    """One dense decoder layer from sdpa's input: our distance to sdpa, with our matrix products
    and/or our attention swapped for torch's (the ad-hoc section of the agreement raw file)."""
    text = (results / "released_agreement.txt").read_text(encoding="utf-8")
    lines = text[text.index("one layer from sdpa's input, ‖ours − sdpa‖/‖sdpa‖"):].splitlines()[2:]
    rows = []
    for line in lines:
        cells = line.split()
        if len(cells) != 6 or not cells[0].isdigit():
            break
        rows.append((cells[0], *cells[2:]))
    header = ("layer", "ours", "our GEMMs → torch's", "our attention → torch's", "both → torch's")
    return "\n".join([markdown(header, rows), "",
                      "*Raw: `benchmarks/results/released_agreement.txt`, section \"forward pass, first 2 windows "
                      "of 32 x 512\" (‖ours − sdpa‖ / ‖sdpa‖ over 2 × 512 tokens).*"])


def agreement_section(results: Path, heading: str) -> list[str]:
    """The lines of the section of released_agreement.txt whose '## ' heading starts with `heading`."""
    lines = (results / "released_agreement.txt").read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## " + heading))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start + 1:end]


AGREEMENT_SOURCE = "*Raw: `benchmarks/results/released_agreement.txt`, section \"{}\".*"
STATISTICS = {"sum_metric_row": "Σx (`sum_metric_row`)", "scaler_row": "‖x‖² (`scaler_row`)",
              "var": "variance (`var`)"}


def agreement_statistics(results: Path) -> str:
    """The released statistics of the dense model's sublayer inputs: ours in the released float32 order,
    and dsnot_ref's float64 two-pass statistics rounded to float32."""
    heading = "compare_released.py statistics"
    pattern = re.compile(r"\s+(\w+)\s+official \(.*?\) ([0-9.]+) \(([^)]+)\); "
                         r"float64 two-pass, rounded ([0-9.]+) \(([^)]+)\)")
    rows = []
    for line in agreement_section(results, heading):
        found = pattern.fullmatch(line)
        if found:
            name, same, gap, same64, gap64 = found.groups()
            rows.append((STATISTICS[name], f"{100 * float(same):.0f}% ({relative_gap(gap)})",
                         f"{100 * float(same64):.0f}% ({relative_gap(gap64)})"))
    header = ("statistic, 210 sublayers, 8 × 256 tokens",
              "official (released float32 order): entries equal (largest relative gap)",
              "float64 two-pass, rounded to float32: entries equal (largest relative gap)")
    return "\n".join([markdown(header, rows), "", AGREEMENT_SOURCE.format(heading)])


def relative_gap(text: str) -> str:
    return "0" if float(text) == 0 else f"{float(text):.0e}"


def agreement_near_ties(results: Path) -> str:
    """Rows of the released 32 × 512 run whose k-th and (k+1)-th Wanda scores are within a relative gap."""
    heading = "near-ties --capture"
    lines = agreement_section(results, heading)
    gaps = re.findall(r"[0-9.]+e-\d+", lines[0])
    cells = [line.split() for line in lines[1:] if line.strip()]
    per_layer = [[int(x) for x in c[1:-1]] for c in cells if c[0].isdigit()]
    total = next(c for c in cells if c[0] == "all")
    rows = [(f"≤ {float(gap):.0e}", f"{int(total[1 + i]):,} of {int(total[-1].strip('()')):,}",
             f"{min(c[i] for c in per_layer)}-{max(c[i] for c in per_layer)}") for i, gap in enumerate(gaps)]
    header = ("gap between the k-th and (k+1)-th Wanda scores (relative)", "rows, all 30 layers", "rows per layer")
    return "\n".join([markdown(header, rows), "", AGREEMENT_SOURCE.format(heading)])


def agreement_columns(results: Path) -> str:
    """Per sublayer input: the relative difference of each column's Σx² from sdpa's, transformers' eager
    attention against ours, over the dense forward pass."""
    heading = "forward pass, first 2 windows"
    found: dict[str, list[tuple[int, float, float, float, float]]] = {}
    for line in agreement_section(results, heading):
        cells = line.split()
        if len(cells) == 8 and cells[0].isdigit():
            medians_p99 = map(float, (cells[2], cells[4], cells[5], cells[7]))  # eager, then ours
            found.setdefault(cells[1], []).append((int(cells[0]), *medians_p99))

    def span(values: list[float]) -> str:
        return f"{min(values):.1e} to {max(values):.1e}"

    def ratios(rows, early: bool) -> str:
        values = [o / e for layer, e, _, o, _ in rows if (layer < 2) == early and e > 0]
        if not values:
            return ""
        low, high = f"{min(values):.1f}", f"{max(values):.1f}"
        return low if low == high else f"{low}-{high}"

    rows = [(name, span([r[1] for r in rs]), f"{max(r[2] for r in rs):.1e}", span([r[3] for r in rs]),
             f"{max(r[4] for r in rs):.1e}", ratios(rs, True), ratios(rs, False)) for name, rs in found.items()]
    header = ("input of", "eager: median over columns (range over layers)", "eager: 99th percentile, most",
              "ours: median", "ours: 99th percentile, most", "ours / eager, medians, layers 0-1", "from layer 2")
    return "\n".join([markdown(header, rows), "", AGREEMENT_SOURCE.format(heading)])


def agreement_spread(results: Path) -> str:
    """End to end at 32 × 512, ours against released sdpa: how the difference spreads after the first flip."""
    heading = "end-to-end, 32 x 512: released sdpa vs ours"
    layers = [(int(c[0]), float(c[1]), float(c[2])) for c in map(str.split, agreement_section(results, heading))
              if len(c) == 3 and c[0].isdigit()]
    first = next(layer for layer, entries, _ in layers if entries < 1.0)
    shown = [row for row in layers if first - 1 <= row[0] <= first + 4]
    rest = [row for row in layers if row[0] > first + 4]
    rows = [(layer, f"{100 * entries:.2f}%", f"{100 * rows_same:.2f}%") for layer, entries, rows_same in shown]
    rows.append((f"{rest[0][0]}-{rest[-1][0]}", *(f"{100 * min(r[k] for r in rest):.2f}% to "
                                                   f"{100 * max(r[k] for r in rest):.2f}%" for k in (1, 2))))
    transcribed_rows = load(results, "released_agreement_transcribed.json")
    return "\n".join([markdown(("layer", "mask entries identical", "rows identical (all 7 sublayers)"), rows), "",
                      AGREEMENT_SOURCE.format(heading), "",
                      *transcribed_tables(transcribed_rows, "agreement_attention_rows"),
                      transcribed_source("released_agreement_transcribed.json")])


def agreement_attention_change(results: Path) -> str:
    """One dense layer from sdpa's input, before (fa2387b) and after (2abb0a6) the attention change."""
    heading = "compare_released.py forward --sequences 2"
    tables: dict[str, dict[int, list[float]]] = {}
    side = None
    for line in agreement_section(results, heading):
        if line.startswith("# "):
            side = line[2:].rstrip(":")
            tables[side] = {}
        elif side and line.split() and line.split()[0].isdigit():
            cells = line.split()
            tables[side][int(cells[0])] = [float(x) for x in cells[1:]]
    rows = []
    for label, column in (("ours", 2), ("ours with torch's matrix products", 3)):
        before = {k: v[column] for k, v in tables["before"].items()}
        after = {k: v[column] for k, v in tables["after"].items()}
        cuts = [1 - after[k] / before[k] for k in before]
        rows.append((label, f"{before[0]:.2e} → {after[0]:.2e}", f"{100 * max(cuts):.1f}%",
                     f"{sum(after[k] > before[k] for k in before)} of {len(before)}"))
    header = ("‖· − sdpa‖ / ‖sdpa‖, one layer from sdpa's input", "layer 0, before → after",
              "largest cut over the layers", "layers where it grew")
    return "\n".join([markdown(header, rows), "", AGREEMENT_SOURCE.format(heading)])


def vs_released(results: Path) -> str:
    """`benchmarks/vs_released_code.py --out`: every stored run, the released code against ours."""
    rows, sources = [], []
    for path in sorted(results.glob("vs_released_*.json")):
        raw = load(results, path.name)
        steps = raw["profile"]["steps"]
        rows.append((f"{raw['nsamples']} × {raw['seqlen']}", len(raw["round_ratios"]),
                     f"{raw['released_median']:.1f}", f"{raw['ours_median']:.1f}", f"{raw['ratio']:.2f}",
                     " / ".join(f"{steps[k]:.1f}" for k in ("forward", "stats", "prune", "io", "diagnostics")),
                     raw["provenance"]["commit"], raw["provenance"]["machine"]))
        sources.append(f"`benchmarks/results/{path.name}` ({raw['provenance']['date']})")
    header = ("S × L", "rounds", "released (s, median)", "ours (s, median)", "released / ours",
              "ours: forward / statistics / pruning / I/O / diagnostics (s)", "commit", "machine")
    return "\n".join([markdown(header, rows), "", f"*Raw: {', '.join(sources)}.*"])


def eval_memory(results: Path) -> str:
    """`benchmarks/eval_memory.py` and `benchmarks/model_digest.py`: reading a corpus and hashing a model."""
    mem, digest = load(results, "eval_memory.json"), load(results, "model_digest.json")
    rows = [(f"`eval --max-windows 1` on a {mem['eval_max_windows_1']['text_mb']:g} MB text",
             f"{mem['eval_max_windows_1']['peak_rss_mib']:.0f} MiB", f"{mem['eval_max_windows_1']['seconds']:.1f} s"),
            (f"tokenising a {mem['tokenise_pieces']['text_mb']:g} MB text in pieces",
             f"{mem['tokenise_pieces']['peak_rss_mib']:.0f} MiB", f"{mem['tokenise_pieces']['seconds']:.1f} s"),
            (f"tokenising the same text in one encode",
             f"{mem['tokenise_whole']['peak_rss_mib']:.0f} MiB", f"{mem['tokenise_whole']['seconds']:.1f} s"),
            (f"hashing the demo model ({digest['bytes_hashed'] / 2**20:.0f} MiB)", "",
             f"{digest['seconds']:.2f} s ({digest['mb_per_second']:.0f} MB/s)")]
    return "\n".join([markdown(("measurement", "peak RSS", "time"), rows), "",
                      source_line(mem, "eval_memory.json"), "", source_line(digest, "model_digest.json")])


def speed_diagnostic_history(results: Path) -> str:
    """The 1B-shaped base job's pruning step under earlier forms of the diagnostic, and now."""
    raw, large = load(results, "speed_transcribed.json"), load(results, "large_model.json")
    base = large["base"]
    steps = base["pipeline_times"]
    now = (f"the sampled tokens kept as a factor F (`large_model.json`, commit {large['provenance']['commit']})",
           f"{base['wall']:.0f}", f"{steps['prune']:.0f}", "", f"{steps['stats']:.1f}", f"{base['peak_mib']:.0f} MiB")
    found = raw["tables"]["speed_diagnostic_history"]
    return "\n".join([markdown(tuple(found["header"]), [*map(tuple, found["rows"]), now]), "",
                      transcribed_source("speed_transcribed.json"), "", source_line(large, "large_model.json")])


def forward_parity(results: Path) -> str:
    """`benchmarks/forward_parity.py`: our logits against transformers' on every fixture."""
    raw = load(results, "forward_parity.json")
    rows = [(dtype, f"{max(r[dtype] for r in raw['rows']):.1e}",
             max(raw["rows"], key=lambda r: r[dtype])["fixture"]) for dtype in ("float32", "float64")]
    header = (f"ours against transformers' logits, {len(raw['rows'])} fixtures", "largest absolute difference", "on")
    return "\n".join([markdown(header, rows), "", source_line(raw, "forward_parity.json")])


def ci_run(results: Path) -> str:
    """The last timed `.ci/run`: tests passed and skipped, and the wall time from a clean clone."""
    text = (results / "ci_run.txt").read_text(encoding="utf-8")
    fields = dict(line.split(": ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    meta = dict(line[2:].split(": ", 1) for line in text.splitlines() if line.startswith("# "))
    return (f"`{meta['command']}` on a clean clone, commit {meta['commit']}, {meta['date']}, {meta['machine']}: "
            f"{fields['passed']} passed, {fields['skipped']} skipped, {fields['wall']} wall in all.\n\n"
            "*Raw: `benchmarks/results/ci_run.txt`.*")


def transcribed_tables(raw: dict, *keys: str) -> list[str]:
    """The named tables of a transcribed raw file, each followed by a blank line."""
    parts = []
    for key in keys:
        found = raw["tables"][key]
        parts += [markdown(tuple(found["header"]), [tuple(r) for r in found["rows"]]), ""]
    return parts


def transcribed_source(name: str) -> str:
    return f"*Raw: `benchmarks/results/{name}` (transcribed; its provenance says from where).*"


def transcribed(name: str, *keys: str) -> Callable[[Path], str]:
    """Tables kept as transcribed text in a raw file (the runs' own output was not kept)."""

    def table(results: Path) -> str:
        return "\n".join([*transcribed_tables(load(results, name), *keys), transcribed_source(name)])

    table.__doc__ = f"The tables {', '.join(map(repr, keys))} of {name}, as transcribed."
    return table


def benchmark_figures(results: Path) -> str:
    """The figures the benchmark scripts printed, against each script's target."""
    raw = load(results, "benchmark_figures.json")
    rows = [(f"`{r['script']}`", r["target"], r["measured"]) for r in raw["rows"]]
    return "\n".join([markdown(("script", "target", "measured"), rows), "",
                      "*Raw: `benchmarks/results/benchmark_figures.json` (transcribed: these scripts print "
                      "their figures; its provenance says what was recovered).*"])


TABLES: dict[str, Callable[[Path], str]] = {
    "demo": demo,
    "demo_earlier": demo_earlier,
    "dsnot_variants": dsnot_variants,
    "quality": quality,
    "owl": owl,
    "swaps_budget": swaps_budget,
    "swaps_sublayers": swaps_sublayers,
    "swaps_budget_times": swaps_budget_times,
    "swaps_gram": swaps_gram,
    "swaps_time": swaps_time,
    "weight_update": weight_update,
    "weight_update_cost": weight_update_cost,
    "weight_update_sublayers": weight_update_sublayers,
    "weight_update_times": weight_update_times,
    "large_model": large_model,
    "agreement_end_to_end": agreement_end_to_end,
    "benchmark_figures": benchmark_figures,
    "agreement_forward": agreement_forward,
    "agreement_statistics": agreement_statistics,
    "agreement_near_ties": agreement_near_ties,
    "agreement_columns": agreement_columns,
    "agreement_spread": agreement_spread,
    "agreement_attention_change": agreement_attention_change,
    "agreement_forward_steps": transcribed("released_agreement_transcribed.json", "agreement_forward_steps"),
    "agreement_first_flips": transcribed("released_agreement_transcribed.json", "agreement_first_flips"),
    "eval_memory": eval_memory,
    "vs_released": vs_released,
    "agreement_identical_inputs": transcribed("released_agreement_transcribed.json", "agreement_identical_inputs"),
    "swaps_overfit": transcribed("swaps_layer2.json", "swaps_overfit"),
    "swaps_initial_masks": transcribed("swaps_layer2.json", "swaps_initial_masks"),
    "swaps_search": transcribed("swaps_layer2.json", "swaps_search", "swaps_search_cost"),
    "swaps_search_speed": transcribed("swaps_transcribed.json", "swaps_search_speed"),
    "swaps_cpu_cost": transcribed("swaps_transcribed.json", "swaps_cpu_cost"),
    **{key: transcribed("speed_transcribed.json", key) for key in (
        "speed_vs_released", "speed_memory", "speed_allocator", "speed_recon_sample", "speed_layer_parts",
        "speed_stats_cost", "speed_prune_step")},
    "speed_changes": transcribed("speed_transcribed.json", "speed_changes", "speed_not_kept"),
    "speed_profile": transcribed("speed_transcribed.json", "speed_profile", "speed_element_rates"),
    "speed_diagnostic_history": speed_diagnostic_history,
    "forward_parity": forward_parity,
    "ci_run": ci_run,
}


# --- writing ---------------------------------------------------------------------------------


def documents(root: Path) -> list[Path]:
    return sorted({path for pattern in DOCUMENTS for path in root.glob(pattern)})


def render(text: str, results: Path, where: str) -> str:
    """The document with every results block regenerated; an unknown table name is an error."""

    def block(match: re.Match) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"make_results: {where}: unknown table {name!r} (known: {', '.join(TABLES)})")
        return match.group(1) + TABLES[name](results) + "\n" + match.group(4)

    return BLOCK.sub(block, text)


def tables_in(text: str) -> list[str]:
    return [match.group(2) for match in BLOCK.finditer(text)]


def missing_provenance(results: Path) -> list[str]:
    """Raw files that do not name their machine, date, commit and command."""
    problems = []
    for path in sorted(results.iterdir()):
        if path.suffix == ".json":
            found = json.loads(path.read_text(encoding="utf-8")).get("provenance") or {}
            lacking = [key for key in PROVENANCE if not found.get(key)]
        else:
            text = path.read_text(encoding="utf-8")
            lacking = [key for key in PROVENANCE if f"# {key}:" not in text]
        if lacking:
            problems.append(f"{path.name}: no {', '.join(lacking)}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate the results tables from benchmarks/results/.")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if any table is stale")
    args = parser.parse_args(argv)
    problems = missing_provenance(RESULTS)
    stale = []
    for path in documents(ROOT):
        text = path.read_text(encoding="utf-8")
        new = render(text, RESULTS, str(path.relative_to(ROOT)))
        if new == text:
            continue
        stale.append(str(path.relative_to(ROOT)))
        if not args.check:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(new, encoding="utf-8")
            tmp.replace(path)
    for problem in problems:
        print(f"make_results: {problem}", file=sys.stderr)
    if args.check and stale:
        print(f"make_results: tables differ from benchmarks/results/ in {', '.join(stale)} (run make results)",
              file=sys.stderr)
    elif stale:
        print(f"make_results: rewrote {', '.join(stale)}")
    return 1 if problems or (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
