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
"# date:" (or a dated title), "# commit:" and "# command:" lines.
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


def mean_reduction(run: dict) -> float:
    """Mean over sublayers of 1 - recon_after / recon_before: the relative calibration error cut."""
    cuts = [1 - row["recon_after"] / row["recon_before"] for row in run["layers"] if row.get("recon_before")]
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
              "wanda + SparseSwaps": "Wanda + SparseSwaps"}
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


def dsnot_variants(results: Path) -> str:
    """Wanda 60% + each DSnoT variant through `prune`, demo calibration, 64 evaluation windows."""
    raw = load(results, "dsnot_variants60.json")
    wanda = raw["wanda"]
    rows = [(r["variant"], ppl(r["perplexity"]), pct(r["perplexity"] / wanda - 1)) for r in raw["rows"]]
    header = ("Wanda 60% + DSnoT variant", "perplexity", "vs Wanda")
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
    recon = [f"{runs[f'dsnot-{v}@60%']['recon_before_dsnot_sublayers']:.4f} → "
             f"{runs[f'dsnot-{v}@60%']['recon_after_dsnot_sublayers']:.4f}" for v in VARIANTS]
    return "\n".join([markdown(header, rows), "",
                      markdown(("Wanda 60%, recon of DSnoT's sublayers", *VARIANTS), [("before → after", *recon)]),
                      "", source_line(raw, "quality.json")])


OWL_ROWS = (("Wanda", "wanda", 0.7), ("Wanda + DSnoT (reference)", "dsnot_reference", 0.7),
            ("Wanda + DSnoT (exact)", "dsnot_exact", 0.7), ("SparseGPT", "sparsegpt", 0.7),
            ("Wanda", "wanda", 0.6), ("Wanda", "wanda", 0.8))


def owl(results: Path) -> str:
    """Uniform against OWL layerwise sparsity at the quality table's budget."""
    raw = load(results, "owl.json")
    rows = []
    for label, key, p in OWL_ROWS:
        uniform = raw[f"small_{p}_{key}_uniform"]["perplexity"]
        layered = raw[f"small_{p}_{key}_owl"]["perplexity"]
        rows.append((label, f"{100 * p:.0f}%", ppl(uniform), ppl(layered), pct(layered / uniform - 1)))
    return "\n".join([markdown(("method", "P", "uniform", "OWL", "OWL vs uniform"), rows), "",
                      source_line(raw, "owl.json")])


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
        rows.append((setting, f"{ppl(base)} ({start_name})", f"{ppl(perplexity(run))} ({start_name} + SparseSwaps)",
                     pct(perplexity(run) / base - 1), pct(-mean_reduction(run))))
    header = ("demo budget (32 × 512, first 32 windows)", "initial mask", "+ SparseSwaps", "perplexity",
              "calibration error, mean over the 210 sublayers")
    files = ", ".join(f for row in SWAPS_ROWS for f in row[1:3] if f)
    return "\n".join([markdown(header, rows), "",
                      f"*Raw: `benchmarks/results/` {files}; Wanda 60% from `demo.json`; each file's provenance "
                      "names its date, commit and machine.*"])


def swaps_sublayers(results: Path) -> str:
    """Per sublayer type: relative calibration error of Wanda 60% before and after SparseSwaps."""
    raw = load(results, "swaps60.json")
    rows = []
    for name in SUBLAYERS:
        layers = [r for r in raw["layers"] if r["sublayer"].endswith(name)]
        before = sum(r["recon_before"] for r in layers) / len(layers)
        after = sum(r["recon_after"] for r in layers) / len(layers)
        cuts = [1 - r["recon_after"] / r["recon_before"] for r in layers]
        rows.append((name, f"{before:.4f} → {after:.4f}",
                     f"{100 * sum(cuts) / len(cuts):.1f}% ({100 * min(cuts):.0f}% to {100 * max(cuts):.0f}%)"))
    n_layers = len({r["layer"] for r in raw["layers"]})
    header = ("sublayer", f"relative error, Wanda → + SparseSwaps (mean over the {n_layers} layers)",
              "reduction (min to max over layers)")
    return "\n".join([markdown(header, rows), "", source_line(raw, "swaps60.json")])


GRAM_ROWS = (("Wanda 60%", "demo_swaps60_gram64.json", "demo_swaps60_gram32.json"),
             ("Wanda 70%", "swaps70.json", "swaps70_gram32.json"),
             ("Wanda 2:4", "swaps24.json", "swaps24_gram32.json"))


def swaps_gram(results: Path) -> str:
    """SparseSwaps with float64 against float32 Gram products, same job otherwise."""
    rows = []
    for setting, g64, g32 in GRAM_ROWS:
        a, b = load(results, g64), load(results, g32)
        rows.append((setting, ppl(perplexity(a)), ppl(perplexity(b)),
                     f"{100 * mean_reduction(a):.1f}% / {100 * mean_reduction(b):.1f}%",
                     f"{total_error_ratio(a):.4f} / {total_error_ratio(b):.4f}",
                     f"{sum(r['swaps'] for r in a['layers']):,} / {sum(r['swaps'] for r in b['layers']):,}"))
    header = ("setting", "perplexity, float64 G", "perplexity, float32 G",
              "mean error reduction (64 / 32)", "summed error after / before (64 / 32)", "swaps (64 / 32)")
    files = ", ".join(f for row in GRAM_ROWS for f in row[1:])
    return "\n".join([markdown(header, rows), "", f"*Raw: `benchmarks/results/` {files}.*"])


def swaps_time(results: Path) -> str:
    """Prune time of Wanda against Wanda + SparseSwaps at 70%, back to back, no evaluation."""
    rows = []
    for label, name in (("Wanda 70%", "time70_wanda.json"), ("Wanda + SparseSwaps 70%", "time70_swaps.json")):
        run = load(results, name)
        steps = run["pipeline_times"]
        rows.append((label, f"{run['times']['prune']:.1f}",
                     " / ".join(f"{steps[k]:.1f}" for k in ("forward", "stats", "prune", "io"))))
    raw = load(results, "time70_swaps.json")
    return "\n".join([markdown(("job", "prune (s)", "forward / statistics / pruning / I/O (s)"), rows), "",
                      source_line(raw, "time70_wanda.json", "time70_swaps.json")])


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
        wanda = runs.get(f"wanda@{setting}")
        times = [time_ratio(runs.get(f"{job}@{setting}"), wanda) for job in ("sparsegpt", "swaps+update")]
        rows.append((label, *cells, versus, *times))
    header = ("sparsity", *(name for _, name in UPDATE_JOBS), "SparseSwaps + update vs SparseGPT",
              "prune time / Wanda's: SparseGPT", "SparseSwaps + update")
    note = ("Prune time / Wanda's: the ratio of the wall-clock prune times, and in parentheses the same ratio "
            "with each run's prune time divided by its own forward-pass time (the same work in every job, so "
            "a yardstick of how busy the shared machine was during that run).")
    return "\n".join([markdown(header, rows), "", note, "", source_line(raw, "weight_update.json")])


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
                    gpt["recon_mask"][name], gpt["recon_after"][name])))
                for name in sorted(ours["recon_after"], key=lambda n: SUBLAYERS.index(n.rpartition(".")[2]))]
        header = (f"{label}: sublayer", "Wanda mask", "+ SparseSwaps", "+ update", "SparseGPT mask", "SparseGPT")
        parts += [markdown(header, rows), ""]
    return "\n".join([*parts, source_line(raw, "weight_update.json")])


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
    return "\n".join([markdown(header, rows), "", source_line(raw, "weight_update_cost.json")])


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


def transcribed(name: str, key: str) -> Callable[[Path], str]:
    """A table kept as transcribed text in a raw file (the run's own output was not kept)."""

    def table(results: Path) -> str:
        raw = load(results, name)
        found = raw["tables"][key]
        return "\n".join([markdown(tuple(found["header"]), [tuple(r) for r in found["rows"]]), "",
                          f"*Raw: `benchmarks/results/{name}` (transcribed; its provenance says from where).*"])

    table.__doc__ = f"The table {key!r} of {name}, as transcribed."
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
    "dsnot_variants": dsnot_variants,
    "quality": quality,
    "owl": owl,
    "swaps_budget": swaps_budget,
    "swaps_sublayers": swaps_sublayers,
    "swaps_gram": swaps_gram,
    "swaps_time": swaps_time,
    "weight_update": weight_update,
    "weight_update_cost": weight_update_cost,
    "weight_update_sublayers": weight_update_sublayers,
    "large_model": large_model,
    "agreement_end_to_end": agreement_end_to_end,
    "benchmark_figures": benchmark_figures,
    "agreement_forward": agreement_forward,
    "eval_memory": eval_memory,
    "vs_released": vs_released,
    "agreement_identical_inputs": transcribed("released_agreement_transcribed.json", "agreement_identical_inputs"),
    "swaps_overfit": transcribed("swaps_layer2.json", "swaps_overfit"),
    "swaps_initial_masks": transcribed("swaps_layer2.json", "swaps_initial_masks"),
    **{key: transcribed("speed_transcribed.json", key) for key in (
        "speed_vs_released", "speed_memory", "speed_allocator", "speed_recon_sample", "speed_layer_parts")},
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
