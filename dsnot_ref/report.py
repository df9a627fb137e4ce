"""Turning results into text tables and an optional figure. Pure formatting: no argparse, no I/O
except the figure file that ``plot_layers`` is asked to write.

The results JSON of ``dsnot-ref prune --results`` (written by dsnot_ref/cli/prune.py) has:

    settings     the pruning and evaluation settings (JSON scalars)
    versions     dsnot_ref, numpy, python
    calibration  source, n_samples (S), seqlen (L), tokens_sha256
    layers       one row per linear sublayer, in forward order:
                 name, layer, sublayer, shape, sparsity, dsnot (bool: adjusted by DSnoT)
                 and the method's diagnostics: eps_before, eps_after (mean |ε| of the rows),
                 swaps, recon_before, recon_after (relative calibration reconstruction error)
    profile      kind ("uniform" | "owl"); for OWL also m, lambda, budget and per decoder layer:
                 outlier_ratios (share of Wanda scores above m x the layer mean), layer_params,
                 layer_sparsities (requested of each layer), seconds (the dense pass)
    sparsity     requested, overall (fraction of zeros over all pruned linear weights),
                 per_layer (per weight), per_decoder_layer, requested_per_decoder_layer (OWL)
    perplexity   pruned (and dense when computed): perplexity, n_windows, n_tokens, seqlen
    times        seconds per phase: load, calibration, prune, eval, save, total
"""

from __future__ import annotations

import math
from pathlib import Path

from .errors import UserError

# (key, header, format) of the per-layer table; a missing value prints as "-".
LAYER_COLUMNS = (
    ("name", "layer", "{}"),
    ("sparsity", "sparsity", "{:.4f}"),
    ("eps_before", "mean|eps| before", "{:.4g}"),
    ("eps_after", "after", "{:.4g}"),
    ("swaps", "swaps", "{:d}"),
    ("recon_before", "recon before", "{:.4g}"),
    ("recon_after", "after", "{:.4g}"),
)


def format_value(value, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def format_table(rows: list[dict], columns) -> str:
    """Rows of dicts -> an aligned text table (first column left-aligned, the rest right)."""
    headers = [header for _, header, _ in columns]
    cells = [[format_value(row.get(key), fmt) for key, _, fmt in columns] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values):
        first = values[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(values[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in cells)])


def layer_table(results: dict) -> str:
    """The per-layer diagnostics table of a results dict."""
    rows = results.get("layers") or []
    if not rows:
        raise UserError("the results have no per-layer diagnostics ('layers' is empty)")
    return format_table(rows, LAYER_COLUMNS)


def summary_lines(results: dict) -> list[str]:
    """A few lines: what was run, sparsity check, perplexities and times."""
    settings = results.get("settings") or {}
    lines = [
        "model {model}: {method} at sparsity {sparsity} ({sparsity_type})".format(
            model=settings.get("model", "?"),
            method=method_label(settings),
            sparsity=settings.get("sparsity_ratio", "?"),
            sparsity_type=settings.get("sparsity_type", "?"),
        )
    ]
    sparsity = results.get("sparsity") or {}
    per_layer = list((sparsity.get("per_layer") or {}).values())
    if per_layer:
        lines.append(
            f"sparsity check: {sparsity['overall']:.4f} of linear weights are zero "
            f"(requested {sparsity.get('requested', '?')}; per layer min {min(per_layer):.4f}, "
            f"max {max(per_layer):.4f}, {len(per_layer)} layers)"
        )
    elif sparsity:
        lines.append("sparsity check: no linear weight was pruned")
    per_decoder = sparsity.get("per_decoder_layer") or []
    if number_list(per_decoder) and per_decoder:
        requested = sparsity.get("requested_per_decoder_layer")
        if not (number_list(requested) and len(requested) == len(per_decoder)):
            requested = None
        pairs = [f"{i}: {a:.4f}" if requested is None else f"{i}: {requested[i]:.4f} -> {a:.4f}"
                 for i, a in enumerate(per_decoder)]
        what = "requested -> achieved" if requested is not None else "achieved"
        lines.append(f"per decoder layer ({what}): " + ", ".join(pairs))
    if results.get("layers"):
        lines.append(reconstruction_line(results))
    for which, ppl in (results.get("perplexity") or {}).items():
        if ppl:
            value = math.inf if ppl["perplexity"] is None else ppl["perplexity"]  # null: it overflowed
            lines.append(f"perplexity ({which}): {value:.4f} on {ppl['n_windows']} windows of {ppl['seqlen']} tokens")
    times = results.get("times") or {}
    if times:
        lines.append("times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
    return lines


def reconstruction_line(results: dict) -> str:
    """What the results hold of the reconstruction-error diagnostic (an observer, dsnot_ref/diagnostics.py)."""
    rows = results.get("layers") or []
    have = sum(1 for row in rows if row.get("recon_after") is not None)
    if not have:
        return "reconstruction errors: not gathered (the diagnostic is off unless prune is given --recon-error)"
    tokens = (results.get("settings") or {}).get("recon_error_tokens")
    sample = "every calibration token" if tokens is None else f"a sample of up to {tokens} calibration tokens"
    return f"reconstruction errors: {have} of {len(rows)} sublayers, estimated from {sample}"


def profile_rows(results: dict) -> list[dict]:
    """One row per decoder layer of an OWL run: outlier ratio, requested and achieved sparsity."""
    profile = results.get("profile") or {}
    if not isinstance(profile, dict) or profile.get("kind") != "owl":
        return []
    achieved = (results.get("sparsity") or {}).get("per_decoder_layer") or []
    ratios, sparsities = profile.get("outlier_ratios"), profile.get("layer_sparsities")
    if not (number_list(ratios) and number_list(sparsities) and len(ratios) == len(sparsities)
            and number_list(achieved) and all(isinstance(profile.get(k), (int, float)) for k in ("m", "lambda"))):
        raise UserError("the results' OWL profile is malformed (outlier_ratios, layer_sparsities, m, lambda)")
    return [
        {"layer": i, "outlier": 100.0 * d, "requested": p, "achieved": achieved[i] if i < len(achieved) else None}
        for i, (d, p) in enumerate(zip(profile["outlier_ratios"], profile["layer_sparsities"]))
    ]


def number_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def profile_table(results: dict) -> str:
    """The OWL profile of a results dict, one row per decoder layer ('' for a uniform run)."""
    rows = profile_rows(results)
    if not rows:
        return ""
    profile = results["profile"]
    title = (f"OWL profile (M {profile['m']:g}, lambda {profile['lambda']:g}, budget {profile['budget']}; "
             f"dense pass {profile.get('seconds', float('nan')):.1f} s)")
    columns = (
        ("layer", "layer", "{}"),
        ("outlier", "outliers (%)", "{:.3f}"),
        ("requested", "requested", "{:.4f}"),
        ("achieved", "achieved", "{:.4f}"),
    )
    return title + "\n" + format_table(rows, columns)


def method_label(settings: dict) -> str:
    """'wanda', 'wanda + DSnoT (reference)', 'dense' ... from the settings."""
    method = settings.get("prune_method", "?")
    if method == "dsnot":
        return f"{settings.get('initial_method', 'wanda')} + DSnoT ({settings.get('dsnot_variant', 'reference')})"
    if method == "swaps":
        return f"{settings.get('initial_method', 'wanda')} + SparseSwaps"
    return method


def comparison_table(comparisons, label_a: str, label_b: str) -> str:
    """The per-layer table of ``save.compare_mask_sets``."""
    rows = [
        {
            "name": c.name,
            "shape": "x".join(str(n) for n in c.shape),
            "identical": c.identical_fraction,
            "rows_differ": c.rows_differ,
            "sparsity_a": c.sparsity_a,
            "sparsity_b": c.sparsity_b,
            "first_rows": (",".join(map(str, c.first_rows)) + (",…" if c.rows_differ > len(c.first_rows) else "")
                           if c.first_rows else "-"),
        }
        for c in comparisons
    ]
    columns = (
        ("name", "weight", "{}"),
        ("shape", "shape", "{}"),
        ("identical", "identical", "{:.6f}"),
        ("rows_differ", "rows differ", "{:d}"),
        ("sparsity_a", f"sparsity {label_a}", "{:.4f}"),
        ("sparsity_b", f"sparsity {label_b}", "{:.4f}"),
        ("first_rows", "first differing rows", "{}"),
    )
    return format_table(rows, columns)


def demo_table(rows: list[dict]) -> str:
    """The demo's result table: one row per model variant."""
    columns = (
        ("model", "model", "{}"),
        ("sparsity", "sparsity", "{:.4f}"),
        ("perplexity", "perplexity", "{:.3f}"),
        ("prune_seconds", "prune (s)", "{:.1f}"),
        ("eval_seconds", "eval (s)", "{:.1f}"),
    )
    return format_table(rows, columns)


def require_matplotlib(path):
    """matplotlib.pyplot (non-interactive backend), or a UserError naming the figure file."""
    try:
        import matplotlib  # noqa: PLC0415 - optional extra "plot"

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise UserError(
            f"--plot {path} needs matplotlib, which is not installed (pip install -e .[plot])"
        ) from None
    return plt


def plot_layers(results: dict, path) -> Path:
    """Figure of per-layer mean |ε| and reconstruction error, before and after DSnoT, as PNG."""
    plt = require_matplotlib(path)
    rows = results.get("layers") or []
    if not rows:
        raise UserError("the results have no per-layer diagnostics to plot")
    x = list(range(len(rows)))
    panels = (("eps", "mean |ε| per row"), ("recon", "relative reconstruction error"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6.0, 0.25 * len(rows)), 6.5), sharex=True)
    for ax, (key, title) in zip(axes, panels):
        for when, marker in (("before", "o"), ("after", "x")):
            ys = [row.get(f"{key}_{when}") for row in rows]
            ys = [float("nan") if y is None else y for y in ys]
            ax.plot(x, ys, marker=marker, linestyle="-", label=when)
        ax.set_title(title)
        ax.set_yscale("log")
        ax.legend()
    axes[-1].set_xticks(x)
    axes[-1].set_xticklabels([row.get("name", str(i)) for i, row in enumerate(rows)], rotation=90, fontsize=6)
    return save_figure(plt, fig, path)


def save_figure(plt, fig, path) -> Path:
    """Write a figure as PNG atomically (temporary name, then rename) and close it."""
    from .io_utils import atomic_path  # noqa: PLC0415

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


def plot_profile(results: dict, path) -> Path:
    """Figure of an OWL run as PNG: outlier ratio per decoder layer, and its requested and
    achieved sparsity beside the overall target."""
    rows = profile_rows(results)
    if not rows:
        raise UserError("the results have no OWL profile to plot (run prune with --sparsity-profile owl)")
    plt = require_matplotlib(path)
    x = [row["layer"] for row in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(6.0, 0.25 * len(rows)), 6.0), sharex=True)
    top.bar(x, [row["outlier"] for row in rows], color="tab:gray")
    top.set_ylabel("outliers (%)")
    top.set_title(f"share of Wanda scores above {results['profile']['m']:g} x the layer mean")
    bottom.plot(x, [row["requested"] for row in rows], marker="o", label="OWL, requested")
    achieved = [float("nan") if row["achieved"] is None else row["achieved"] for row in rows]
    bottom.plot(x, achieved, marker="x", linestyle="", label="achieved")
    bottom.axhline(float(results.get("sparsity", {}).get("requested", float("nan"))), color="k",
                   linestyle="--", linewidth=1, label="uniform")
    bottom.set_ylabel("sparsity")
    bottom.set_xlabel("decoder layer")
    bottom.set_xticks(x)
    bottom.tick_params(axis="x", labelsize=7)
    bottom.legend()
    return save_figure(plt, fig, path)
