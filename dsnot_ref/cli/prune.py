"""`dsnot-ref prune`: prune a Hugging Face model layer by layer, evaluate it, save it.

Flags follow the released DSnoT main.py (zyxxmu/DSnoT); each is accepted with dashes or with
underscores (``--sparsity-ratio`` or ``--sparsity_ratio``). Differences from the released code:
``--without-same-sign`` is a real boolean (``true``/``false``; the released ``type=bool`` turns
any non-empty string into True), ``--skip-layer none`` means ``no_skip``, the sparsity of an N:M
pattern may be omitted (it is N/M), and every bad input is refused before any work with one line.

    dsnot-ref prune --model DIR --prune-method dsnot --initial-method wanda \\
        --sparsity-ratio 0.6 --sparsity-type unstructured --save-model OUT --results r.json

Order of work: validate everything (flags, files, output locations, backend), tokenize the
calibration and evaluation text, prune (dsnot_ref.pipeline), check the sparsity of every linear
weight, measure perplexity, save, write the results JSON. Progress bars and per-layer lines go to
stderr; the results to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import platform
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

METHODS = ("magnitude", "wanda", "sparsegpt", "dsnot", "dense")
INITIAL_METHODS = ("magnitude", "wanda", "sparsegpt")
VARIANTS = ("reference", "official", "exact")
SKIP_LAYERS = {"mlp": "mlp", "self_attn": "self_attn", "none": None, "no_skip": None}
SUB_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "out_proj", "fc1", "fc2")
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
DEMO_ALIASES = ("smollm2-135m",)
DEFAULT_SEQLEN = 2048


# --- argument parsing -------------------------------------------------------------------------


def option(parser, name: str, **kwargs):
    """Register ``--a-b`` and ``--a_b`` for one argument (the released code uses underscores)."""
    dashed = f"--{name.replace('_', '-')}"
    underscored = f"--{name.replace('-', '_')}"
    strings = [dashed] if dashed == underscored else [dashed, underscored]
    return parser.add_argument(*strings, dest=name.replace("-", "_"), **kwargs)


def one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """argparse prints its usage before an error; we print the error alone, on one line."""

    def error(message):
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)

    parser.error = error
    return parser


def add_prune_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `prune` (strings are checked in :func:`validate`, not by argparse)."""
    option(p, "model", required=True, help="HF model directory, or the alias smollm2-135m")
    option(p, "prune_method", default="dsnot", metavar="METHOD", help="magnitude | wanda | sparsegpt | dsnot | dense (default dsnot)")
    option(p, "initial_method", default=None, metavar="METHOD", help="DSnoT's initial mask: magnitude | wanda | sparsegpt (default wanda)")
    option(p, "sparsity_ratio", type=float, default=None, metavar="P", help="fraction of weights pruned, in [0, 1)")
    option(p, "sparsity_type", default="unstructured", metavar="TYPE", help="unstructured | 2:4 | 4:8 | N:M")
    option(p, "nsamples", type=int, default=128, help="calibration sequences S (default 128; a tokens file brings its own S)")
    option(p, "seqlen", type=int, default=None, help=f"tokens per calibration sequence L (default {DEFAULT_SEQLEN}, capped at the model's positions)")
    option(p, "seed", type=int, default=0, help="seed of the calibration sampling (default 0)")
    option(p, "max_cycle_time", type=int, default=50, help="DSnoT: cycles per row (default 50)")
    option(p, "update_threshold", type=float, default=0.1, help="DSnoT: stop when |eps| is below (default 0.1)")
    option(p, "pow_of_var_regrowing", type=float, default=1.0, help="DSnoT: power of the variance in the growth order (default 1)")
    option(p, "skip_layer", default="mlp", help="DSnoT leaves this group alone: mlp | self_attn | none (default mlp)")
    option(p, "skip_sub_layer", default="none", help="DSnoT leaves this sublayer alone, e.g. q_proj, fc1 (default none)")
    option(p, "without_same_sign", default="true", metavar="BOOL", help="official variant: sign check off (true, default) or on (false)")
    option(p, "dsnot_variant", default="reference", metavar="VARIANT", help="reference | official | exact (default reference)")
    option(p, "lookahead", type=int, default=1, metavar="K", help="exact variant: best swap among the next K x K candidates (default 1)")
    option(p, "cycle_fraction", type=float, default=None, metavar="F", help="exact variant: cycle budget int(F x row width) instead of --max-cycle-time")
    option(p, "on_reject", default="stop", metavar="MODE", help="exact variant: a row whose swap would not lower its error: stop | skip (default stop)")
    option(p, "calibration", default=None, metavar="FILE", help="calibration text (.txt, .jsonl[.gz], .json.gz; default the bundled corpus)")
    option(p, "calibration_tokens", default=None, metavar="FILE.npy", help="calibration token ids, int [S, L] (instead of --calibration)")
    option(p, "eval_dataset", default=None, metavar="FILE", help="evaluation text (default the bundled corpus; 'none' skips evaluation)")
    option(p, "eval_seqlen", type=int, default=None, help="perplexity window length (default the calibration L)")
    option(p, "eval_max_windows", type=int, default=None, help="evaluate on the first N windows only")
    option(p, "save_model", default=None, metavar="DIR", help="write the pruned model here (HF directory + masks.safetensors)")
    option(p, "overwrite", action="store_true", help="replace an existing --save-model directory")
    option(p, "results", default=None, metavar="FILE.json", help="write settings, diagnostics, sparsity, perplexity, times")
    option(p, "backend", default=None, help="numpy | cupy (default $DSNOT_REF_BACKEND, else numpy)")
    option(p, "dtype", default="float32", help="compute dtype: float32 | float64 (default float32)")
    option(p, "run_dir", default=None, metavar="DIR", help="activation cache and pruned layers (default: under the cache directory, named by the model, calibration tokens and settings, so rerunning the same command resumes)")
    option(p, "keep_cache", action="store_true", help="keep the run directory afterwards")
    option(p, "chunk_size", type=int, default=4, help="calibration sequences per forward chunk (default 4)")
    option(p, "no_recon_error", action="store_true", help="skip the reconstruction-error diagnostics (saves a C x C Hessian per sublayer)")
    option(p, "quiet", action="store_true", help="no progress bars")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prune",
        help="prune a model (magnitude, Wanda, SparseGPT, DSnoT), evaluate and save it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_prune_arguments(p)
    return one_line_errors(p)


# --- validation: everything that can be refused, refused before any work -----------------------


@dataclass(frozen=True)
class PruneJob:
    """Validated settings of one `prune` run (no argparse below this point)."""

    model: str  # as given (path or alias)
    model_dir: Path  # resolved HF directory (for an alias: where it is or will be)
    fetch_alias: str | None  # alias to fetch before loading
    method: str
    initial_method: str
    sparsity: float
    nm: tuple[int, int] | None
    sparsity_type: str
    nsamples: int
    seqlen: int | None  # None: DEFAULT_SEQLEN capped at the model's positions
    seed: int
    max_cycle_time: int
    update_threshold: float
    pow_of_var_regrowing: float
    skip_layer: str | None
    skip_sub_layer: str | None
    without_same_sign: bool
    dsnot_variant: str
    lookahead: int
    cycle_fraction: float | None
    on_reject: str
    calibration: Path | None
    calibration_tokens: Path | None
    eval_dataset: Path | None  # None: skip evaluation
    eval_seqlen: int | None
    eval_max_windows: int | None
    save_model: Path | None
    overwrite: bool
    results: Path | None
    backend: str
    dtype: str
    run_dir: Path | None
    keep_cache: bool
    chunk_size: int
    quiet: bool
    recon_error: bool = True  # gather Hessians for the reconstruction-error diagnostics

    def settings_record(self) -> dict:
        """JSON-ready settings (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items() if k != "fetch_alias"} | {
            "model_dir": str(self.model_dir),
            "sparsity_ratio": self.sparsity,
            "prune_method": self.method,
        }


def parse_bool(text: str, flag: str) -> bool:
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise UserError(f"{flag} takes true or false, got {text!r}")


def parse_choice(text: str, choices, flag: str) -> str:
    word = str(text).strip().lower()
    if word not in choices:
        raise UserError(f"unknown {flag} {text!r}; choose one of {', '.join(choices)}")
    return word


def parse_sparsity(ratio: float | None, sparsity_type: str, method: str) -> tuple[float, tuple[int, int] | None, str]:
    """(sparsity, (N, M) or None, normalised type) from --sparsity-ratio and --sparsity-type."""
    kind = sparsity_type.strip().lower()
    nm = None
    if kind != "unstructured":
        match = re.fullmatch(r"(\d+):(\d+)", kind)
        if not match:
            raise UserError(f"unknown --sparsity-type {sparsity_type!r}; use unstructured or N:M such as 2:4")
        n, m = int(match.group(1)), int(match.group(2))
        if not 1 <= n < m:
            raise UserError(f"--sparsity-type {kind}: need 1 <= N < M")
        nm = (n, m)
        if ratio is None:
            ratio = n / m
        elif not np.isclose(ratio, n / m, rtol=0.0, atol=1e-9):
            raise UserError(f"--sparsity-ratio {ratio} does not match --sparsity-type {kind} (N/M = {n / m:g})")
    if ratio is None:
        if method != "dense":
            raise UserError("--sparsity-ratio is required for unstructured sparsity")
        ratio = 0.0
    if not (0.0 <= ratio < 1.0) or not np.isfinite(ratio):
        raise UserError(f"--sparsity-ratio must be in [0, 1), got {ratio}")
    return float(ratio), nm, kind


def resolve_model(text: str) -> tuple[Path, str | None]:
    """(directory, alias to fetch or None); the alias's directory is known before fetching."""
    if text.lower() in DEMO_ALIASES and not Path(text).exists():
        from ..demo_model import demo_model_dir  # noqa: PLC0415

        return demo_model_dir(text.lower()), text.lower()
    path = Path(text)
    if not path.is_dir():
        raise UserError(f"model directory {text} does not exist (or use the alias smollm2-135m)")
    if not (path / "config.json").is_file():
        raise UserError(f"{text} has no config.json; expected a Hugging Face model directory")
    return path, None


def existing_file(text: str | None, flag: str) -> Path | None:
    if text is None:
        return None
    path = Path(text)
    if not path.is_file():
        raise UserError(f"{flag} file {text} does not exist")
    return path


def check_positive(value: int | None, flag: str, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise UserError(f"{flag} must be >= {minimum}, got {value}")


def validate(args) -> PruneJob:
    """Every check that needs no model: flags, files, output locations, backend."""
    from .. import backend, save  # noqa: PLC0415

    method = parse_choice(args.prune_method, METHODS, "--prune-method")
    if args.initial_method is not None and method != "dsnot":
        raise UserError(f"--initial-method only applies to --prune-method dsnot, not {method}")
    initial = parse_choice(args.initial_method or "wanda", INITIAL_METHODS, "--initial-method")
    sparsity, nm, kind = parse_sparsity(args.sparsity_ratio, args.sparsity_type, method)
    variant = parse_choice(args.dsnot_variant, VARIANTS, "--dsnot-variant")
    skip_layer = SKIP_LAYERS[parse_choice(args.skip_layer, tuple(SKIP_LAYERS), "--skip-layer")]
    skip_sub = parse_choice(args.skip_sub_layer, ("none", "no_skip", *SUB_LAYERS), "--skip-sub-layer")
    without_same_sign = parse_bool(args.without_same_sign, "--without-same-sign")
    on_reject = parse_choice(args.on_reject, ("stop", "skip"), "--on-reject")
    if args.lookahead < 1:
        raise UserError(f"--lookahead must be >= 1, got {args.lookahead}")
    if args.cycle_fraction is not None and not 0 <= args.cycle_fraction <= 1:
        raise UserError(f"--cycle-fraction must be in [0, 1], got {args.cycle_fraction}")
    dtype = parse_choice(args.dtype, ("float32", "float64"), "--dtype")
    backend_name = parse_choice(args.backend or backend.backend_name(), backend.BACKENDS, "--backend")
    for value, flag in ((args.nsamples, "--nsamples"), (args.eval_max_windows, "--eval-max-windows"), (args.chunk_size, "--chunk-size")):
        check_positive(value, flag)
    for value, flag in ((args.seqlen, "--seqlen"), (args.eval_seqlen, "--eval-seqlen")):
        check_positive(value, flag, minimum=2)
    if args.max_cycle_time < 0:
        raise UserError(f"--max-cycle-time must be >= 0, got {args.max_cycle_time}")
    if args.calibration and args.calibration_tokens:
        raise UserError("give --calibration or --calibration-tokens, not both")

    model_dir, alias = resolve_model(args.model)
    calibration = existing_file(args.calibration, "--calibration")
    calibration_tokens = existing_file(args.calibration_tokens, "--calibration-tokens")
    eval_dataset = None
    if args.eval_dataset is None or args.eval_dataset.lower() != "none":
        eval_dataset = existing_file(args.eval_dataset, "--eval-dataset") or default_eval_path()
    save_model = Path(args.save_model) if args.save_model else None
    if save_model is not None:
        save.check_output_dir(model_dir, save_model, args.overwrite)
    results = Path(args.results) if args.results else None
    if results is not None:
        check_results_path(results, model_dir)
    run_dir = Path(args.run_dir) if args.run_dir else None
    if run_dir is not None:
        check_run_dir(model_dir, run_dir)
    backend.get_backend(backend_name)  # UserError now, not after tokenising, if CuPy cannot run
    return PruneJob(
        model=args.model, model_dir=model_dir, fetch_alias=alias, method=method, initial_method=initial,
        sparsity=sparsity, nm=nm, sparsity_type=kind, nsamples=args.nsamples, seqlen=args.seqlen,
        seed=args.seed, max_cycle_time=args.max_cycle_time, update_threshold=args.update_threshold,
        pow_of_var_regrowing=args.pow_of_var_regrowing, skip_layer=skip_layer,
        skip_sub_layer=None if skip_sub in ("none", "no_skip") else skip_sub,
        without_same_sign=without_same_sign, dsnot_variant=variant, lookahead=args.lookahead,
        cycle_fraction=args.cycle_fraction, on_reject=on_reject, calibration=calibration,
        calibration_tokens=calibration_tokens, eval_dataset=eval_dataset, eval_seqlen=args.eval_seqlen,
        eval_max_windows=args.eval_max_windows, save_model=save_model, overwrite=args.overwrite,
        results=results, backend=backend_name, dtype=dtype, run_dir=run_dir, keep_cache=args.keep_cache,
        chunk_size=args.chunk_size, quiet=args.quiet, recon_error=not args.no_recon_error,
    )


def default_eval_path() -> Path:
    from .. import data  # noqa: PLC0415

    return Path(data.BUNDLED_EVAL)


def check_results_path(results: Path, model_dir: Path) -> None:
    from ..save import check_writable_parent  # noqa: PLC0415

    if results.is_dir():
        raise UserError(f"--results {results} is a directory; give a file name such as results.json")
    if model_dir.resolve() in results.resolve().parents:
        raise UserError(f"--results {results} is inside the input model directory {model_dir}")
    check_writable_parent(results)


def check_run_dir(model_dir: Path, run_dir: Path) -> None:
    """A run directory is new, empty, or one of ours (to resume); never the model's."""
    from ..cache import check_not_foreign  # noqa: PLC0415
    from ..save import check_writable_parent  # noqa: PLC0415

    src, run = model_dir.resolve(), run_dir.resolve()
    if run == src or src in run.parents or run in src.parents:
        raise UserError(f"--run-dir {run_dir} overlaps the input model directory {model_dir}")
    check_not_foreign(run_dir)  # it is deleted at the end: never adopt a directory of other files
    check_writable_parent(run / "x")


# --- the work -----------------------------------------------------------------------------------


class Clock:
    """Seconds per phase, in the order the phases ran."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.start = time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def total(self) -> dict[str, float]:
        return {**self.seconds, "total": time.perf_counter() - self.start}


def run(args) -> int:
    job = validate(args)
    outcome = execute(job)
    print_outcome(outcome)
    return 0


def execute(job: PruneJob, calib_tokens: np.ndarray | None = None, eval_tokens: np.ndarray | None = None) -> dict:
    """Run one job end to end and return the results dict (also written to ``job.results``).

    ``calib_tokens``/``eval_tokens`` let a caller (the demo) share tokens between runs.
    """
    from .. import model as model_lib  # noqa: PLC0415

    clock = Clock()
    with clock.phase("load"):
        model_dir = fetch_model(job)
        model = model_lib.load_model(model_dir)
        seqlen = resolve_seqlen(job.seqlen, model.config, "--seqlen")
        eval_seqlen = resolve_seqlen(job.eval_seqlen or seqlen, model.config, "--eval-seqlen")
    with clock.phase("calibration"):
        if calib_tokens is None and job.method != "dense":
            calib_tokens = load_calibration(job, model, seqlen)
        if eval_tokens is None and job.eval_dataset is not None:
            eval_tokens = load_eval_tokens(job, model_dir)
    if job.method == "dense":
        store, masks, layers, run = model.store, {}, [], None
    else:
        with clock.phase("prune"):
            run = prune(job, model, calib_tokens)
        store, masks, layers = run.weights_store(), dict(run.masks()), layer_rows(run.diagnostics, job.method == "dsnot")
    try:
        sparsity = sparsity_check(store, masks, job.sparsity)
        perplexity = {}
        if eval_tokens is not None:
            with clock.phase("eval"):
                pruned_model = model_lib.load_model(model_dir, store=store)
                which = "dense" if job.method == "dense" else "pruned"
                perplexity[which] = measure_perplexity(pruned_model, eval_tokens, eval_seqlen, job)
        if job.save_model is not None:
            from ..save import save_pruned_model  # noqa: PLC0415

            with clock.phase("save"):
                save_pruned_model(model_dir, job.save_model, store, masks, overwrite=job.overwrite)
    finally:
        if run is not None:
            run.close()
    results = {
        "dsnot_ref_results": 1,
        "settings": job.settings_record() | {"seqlen": seqlen, "eval_seqlen": eval_seqlen},
        "versions": versions(),
        "calibration": calibration_record(job, calib_tokens),
        "layers": layers,
        "sparsity": sparsity,
        "perplexity": perplexity,
        "times": clock.total(),
        "pipeline_times": dict(run.timings) if run is not None else {},
    }
    if job.results is not None:
        from ..io_utils import atomic_write_json  # noqa: PLC0415

        atomic_write_json(job.results, results)
    return results


def fetch_model(job: PruneJob) -> Path:
    if job.fetch_alias is None:
        return job.model_dir
    from ..demo_model import fetch_demo_model  # noqa: PLC0415

    return Path(fetch_demo_model(job.fetch_alias, progress=lambda line: print(line, file=sys.stderr)))


def resolve_seqlen(requested: int | None, config, flag: str) -> int:
    """The requested length, or DEFAULT_SEQLEN capped at the model's positions."""
    if requested is None:
        return min(DEFAULT_SEQLEN, config.max_positions)
    if requested > config.max_positions:
        raise UserError(f"{flag} {requested} exceeds the model's {config.max_positions} positions")
    return requested


def load_calibration(job: PruneJob, model, seqlen: int) -> np.ndarray:
    """Calibration tokens [S, L]: from --calibration-tokens, else sampled from the text."""
    from .. import data, pipeline  # noqa: PLC0415

    if job.calibration_tokens is not None:
        tokens = data.load_calibration_tokens(job.calibration_tokens, model.config.vocab_size, model.config.max_positions)
    else:
        path = job.calibration or Path(data.BUNDLED_CALIBRATION)
        tokenizer = data.load_tokenizer(model.path)
        tokens = data.calibration_windows(tokenizer, path, job.nsamples, seqlen, job.seed)
    return pipeline.check_calibration_tokens(tokens, model.config)


def load_eval_tokens(job: PruneJob, model_dir: Path) -> np.ndarray:
    from .. import data  # noqa: PLC0415

    return data.eval_tokens(data.load_tokenizer(model_dir), job.eval_dataset)


def prune_spec(job: PruneJob):
    from ..methods import DSnoTSettings, PruneSpec  # noqa: PLC0415

    return PruneSpec(
        method=job.method,
        sparsity=job.sparsity,
        nm=job.nm,
        initial_method=job.initial_method,
        dsnot=DSnoTSettings(
            variant=job.dsnot_variant,
            max_cycle_time=job.max_cycle_time,
            update_threshold=job.update_threshold,
            pow_of_var_regrowing=job.pow_of_var_regrowing,
            without_same_sign=job.without_same_sign,
            lookahead=job.lookahead,
            cycle_fraction=job.cycle_fraction,
            on_reject=job.on_reject,
        ),
    )


def prune(job: PruneJob, model, calib_tokens: np.ndarray):
    """Run the pipeline with a layer progress bar and one summary line per layer (stderr)."""
    from .. import cache, pipeline  # noqa: PLC0415

    settings = pipeline.PipelineSettings(
        spec=prune_spec(job), skip_layer=job.skip_layer, skip_sub_layer=job.skip_sub_layer,
        chunk_size=job.chunk_size, dtype=job.dtype, backend=job.backend, recon_error=job.recon_error,
    )
    run_dir = job.run_dir or default_run_dir(model, calib_tokens, settings)
    report_existing_run(run_dir, job.quiet)
    bar = progress_bar(job.quiet, total=model.config.num_layers, desc="layers", unit="layer")
    chunks = progress_bar(job.quiet, total=1, desc="chunks", unit="chunk", position=1)

    def chunk_progress(done: int, total: int, message: str) -> None:
        chunks.total, chunks.n = total, done
        chunks.set_description_str(f"layer {bar.n}: {message}", refresh=False)
        chunks.refresh()

    def progress(done: int, total: int, message: str) -> None:
        if message.startswith("layer "):
            diagnostics = pipeline.read_json(cache.layer_diagnostics_path(run_dir, done - 1))
            emit(bar, layer_summary(diagnostics), job.quiet)
        bar.n = done
        bar.refresh()

    try:
        return pipeline.prune_model(model, calib_tokens, settings, run_dir, progress=progress,
                                    keep_cache=job.keep_cache, chunk_progress=chunk_progress)
    except Exception:
        # A deterministic failure would fail again: leave nothing behind in the default place.
        if job.run_dir is None and not job.keep_cache:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    except BaseException:
        # Interrupted (Ctrl-C): keep the finished layers so that the same command resumes.
        print(f"dsnot-ref: run directory kept for resuming: {run_dir} "
              f"({cache.cache_size_bytes(run_dir) / 2**20:.1f} MiB); rerun the same command to continue",
              file=sys.stderr)
        raise
    finally:
        chunks.close()
        bar.close()


def default_run_dir(model, calib_tokens: np.ndarray, settings) -> Path:
    """$DSNOT_REF_HOME/runs/<key>: the key hashes the model's identity, the calibration tokens and
    the settings, so rerunning the same command after a crash or kill -9 finds its own run."""
    from .. import cache, data, pipeline  # noqa: PLC0415
    from ..demo_model import cache_home  # noqa: PLC0415

    key = json.dumps([cache.model_identity(model.path), data.tokens_hash(calib_tokens),
                      pipeline.settings_record(settings)], sort_keys=True, default=str)
    return cache_home() / "runs" / hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def report_existing_run(run_dir: Path, quiet: bool) -> None:
    """Say so when a run directory left by an earlier (killed) run is about to be resumed."""
    from .. import cache  # noqa: PLC0415

    manifest = cache.read_manifest(run_dir) if run_dir.is_dir() else None
    if manifest is not None:
        size = cache.cache_size_bytes(run_dir) / 2**20
        print(f"dsnot-ref: found a run directory left by an earlier run: {run_dir} ({size:.1f} MiB, "
              f"{manifest.get('layers_done', 0)} of {manifest.get('num_layers', '?')} layers done); resuming",
              file=sys.stderr)


def progress_bar(quiet: bool, **kwargs):
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(file=sys.stderr, disable=quiet, dynamic_ncols=True, leave=False, **kwargs)


def emit(bar, line: str, quiet: bool) -> None:
    """A progress line on stderr that does not break the bar."""
    if not quiet:
        bar.write(line, file=sys.stderr)


def layer_summary(diagnostics: dict) -> str:
    """'layer 3: mean |eps| 1.2 -> 0.4, 57 swaps, sparsity 0.6000' over the layer's sublayers.

    Mean |ε| is averaged over the sublayers DSnoT adjusted (all of them if none was).
    """
    subs = list(diagnostics["sublayers"].values())
    adjusted = [d for d in subs if d.get("apply_dsnot") and "eps_before" in d] or [d for d in subs if "eps_before" in d]
    parts = [f"layer {diagnostics['layer']}:"]
    if adjusted:
        before = float(np.mean([d["eps_before"] for d in adjusted]))
        after = float(np.mean([d.get("eps_after", d["eps_before"]) for d in adjusted]))
        parts.append(f"mean |eps| {before:.4g} -> {after:.4g},")
    swaps = sum(int(d.get("swaps", 0)) for d in subs)
    sparsity = float(np.mean([sublayer_sparsity(d) for d in subs]))
    parts.append(f"{swaps} swaps, sparsity {sparsity:.4f}")
    return " ".join(parts)


def sublayer_sparsity(d: dict) -> float:
    """The fraction pruned of one sublayer (prune_linear's "sparsity"; older runs: "fraction_pruned")."""
    return float(d["sparsity"] if "sparsity" in d else d["fraction_pruned"])


def layer_rows(diagnostics: list[dict], dsnot_ran: bool) -> list[dict]:
    """Pipeline diagnostics -> one flat row per linear sublayer (the results file's 'layers').

    ``dsnot`` is True for a sublayer DSnoT adjusted (a DSnoT run, not skipped by --skip-layer).
    """
    rows = []
    for layer in diagnostics:
        for sub, d in layer["sublayers"].items():
            row = {"name": f"{layer['layer']}.{sub}", "layer": layer["layer"], "sublayer": sub}
            row["sparsity"] = sublayer_sparsity(d)
            row["dsnot"] = bool(dsnot_ran and d.get("apply_dsnot"))
            row.update({k: v for k, v in d.items() if k not in ("fraction_pruned", "apply_dsnot")})
            rows.append(row)
    return rows


def sparsity_check(store, masks: dict[str, np.ndarray], requested: float) -> dict:
    """The actual fraction of zeros of every pruned linear weight (read back from the weights)."""
    per_layer, zeros, total = {}, 0, 0
    for name in masks:
        w = store.get(name, dtype=np.float32)  # [R, C]
        n_zero = int(np.count_nonzero(w == 0))
        per_layer[name] = n_zero / w.size
        zeros, total = zeros + n_zero, total + w.size
    overall = zeros / total if total else 0.0
    return {"requested": requested, "overall": overall, "per_layer": per_layer}


def measure_perplexity(model, tokens: np.ndarray, seqlen: int, job: PruneJob) -> dict:
    from .. import evaluate  # noqa: PLC0415
    from ..backend import get_backend  # noqa: PLC0415

    if len(tokens) // seqlen == 0:
        raise UserError(f"--eval-dataset {job.eval_dataset} has {len(tokens)} tokens, fewer than one window of {seqlen}")
    bar = progress_bar(job.quiet, desc="perplexity", unit="step")

    def progress(done: int, total: int, message: str = "") -> None:  # total: windows × (layers + 1)
        bar.total, bar.n = total, done
        bar.refresh()

    try:
        result = evaluate.perplexity(
            model, tokens, seqlen, dtype=np.dtype(job.dtype).type, max_windows=job.eval_max_windows,
            progress=progress, xp=get_backend(job.backend),
        )
    finally:
        bar.close()
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in result.items()}


def calibration_record(job: PruneJob, tokens: np.ndarray | None) -> dict:
    if tokens is None:
        return {}
    from .. import data  # noqa: PLC0415

    source = job.calibration_tokens or job.calibration or "bundled"
    return {
        "source": str(source),
        "n_samples": int(tokens.shape[0]),
        "seqlen": int(tokens.shape[1]),
        "seed": job.seed,
        "tokens_sha256": data.tokens_hash(tokens),
    }


def versions() -> dict:
    from .. import __version__  # noqa: PLC0415

    return {"dsnot_ref": __version__, "numpy": np.__version__, "python": platform.python_version()}


def print_outcome(results: dict) -> None:
    """The results on stdout: perplexities and the time of each phase."""
    from ..report import summary_lines  # noqa: PLC0415

    print("\n".join(summary_lines(results)))
