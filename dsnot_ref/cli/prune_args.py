"""Arguments of `dsnot-ref prune`: the flags, and their validation into a frozen ``PruneJob``.

Everything that can be refused is refused here, before any work, with one ``UserError`` line:
flags, files, output locations, the backend. ``cli/prune.py`` does the work; ``cli/demo.py``
builds its jobs through the same parser and ``validate``.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..methods import INITIAL_METHODS, METHODS
from ..methods.dsnot_common import ON_REJECT, VARIANTS
from ..methods.swaps import SwapSettings

SKIP_LAYERS = {"mlp": "mlp", "self_attn": "self_attn", "none": None, "no_skip": None}
SUB_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "out_proj", "fc1", "fc2")
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
DEMO_ALIASES = ("smollm2-135m",)
DEFAULT_SEQLEN = 2048
SWAP_DEFAULTS = SwapSettings()


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
    option(p, "prune_method", default="dsnot", metavar="METHOD",
           help="magnitude | wanda | sparsegpt | dsnot | swaps (SparseSwaps) | dense (default dsnot)")
    option(p, "initial_method", default=None, metavar="METHOD",
           help="initial mask of dsnot and swaps: magnitude | wanda | sparsegpt (default wanda)")
    option(p, "sparsity_ratio", type=float, default=None, metavar="P", help="fraction of weights pruned, in [0, 1)")
    option(p, "sparsity_type", default="unstructured", metavar="TYPE", help="unstructured | 2:4 | 4:8 | N:M")
    option(p, "nsamples", type=int, default=128,
           help="calibration sequences S (default 128; a tokens file brings its own S)")
    option(p, "seqlen", type=int, default=None,
           help=f"tokens per calibration sequence L (default {DEFAULT_SEQLEN}, capped at the model's positions)")
    option(p, "seed", type=int, default=0, help="seed of the calibration sampling (default 0)")
    option(p, "max_cycle_time", type=int, default=50, help="DSnoT: cycles per row (default 50)")
    option(p, "update_threshold", type=float, default=0.1, help="DSnoT: stop when |eps| is below (default 0.1)")
    option(p, "pow_of_var_regrowing", type=float, default=1.0,
           help="DSnoT: power of the variance in the growth order (default 1)")
    option(p, "skip_layer", default=None,
           help="DSnoT (or swaps) leaves this group alone: mlp | self_attn | none (default mlp for dsnot, none for "
                "swaps)")
    option(p, "skip_sub_layer", default="none",
           help="DSnoT leaves this sublayer alone, e.g. q_proj, fc1 (default none)")
    option(p, "without_same_sign", default="true", metavar="BOOL",
           help="official variant: sign check off (true, default) or on (false)")
    option(p, "dsnot_variant", default="reference", metavar="VARIANT",
           help="reference | official | exact (default reference)")
    option(p, "lookahead", type=int, default=1, metavar="K",
           help="exact variant: best swap among the next K x K candidates (default 1)")
    option(p, "cycle_fraction", type=float, default=None, metavar="F",
           help="exact variant: cycle budget int(F x row width) instead of --max-cycle-time")
    option(p, "on_reject", default="stop", metavar="MODE",
           help="exact variant: a row whose swap would not lower its error: stop | skip (default stop)")
    option(p, "swap_max_iter", type=int, default=None, metavar="N",
           help=f"swaps: at most N swaps per row (default {SWAP_DEFAULTS.max_swaps})")
    option(p, "swap_tol", type=float, default=None, metavar="T",
           help=f"swaps: a swap must lower the row's error by more than T x the error (default {SWAP_DEFAULTS.tol:g})")
    option(p, "swap_window", type=int, default=None, metavar="K",
           help=f"swaps: K regrowth x K pruning candidates per round; 0 = all pairs (default {SWAP_DEFAULTS.window})")
    option(p, "swap_refresh", type=int, default=None, metavar="P",
           help=f"swaps: swaps per round before the candidates are rebuilt (default {SWAP_DEFAULTS.refresh})")
    option(p, "sparsity_profile", default="uniform", metavar="PROFILE",
           help="uniform | owl: every decoder layer at the requested sparsity, or OWL's per-layer sparsities "
                "(unstructured only; docs/owl.md)")
    option(p, "owl_m", type=float, default=None, metavar="M",
           help="OWL: a Wanda score is an outlier above M x its layer's mean (default 5)")
    option(p, "owl_lambda", type=float, default=None, metavar="LAMBDA",
           help="OWL: layer sparsities spread over a band of width 2 x LAMBDA (default 0.08)")
    option(p, "owl_budget", default=None, metavar="BUDGET",
           help="OWL: released (centred by layer count, as the released code) | exact (parameter-weighted, clipped to "
                "[0, 0.99]; default released)")
    option(p, "calibration", default=None, metavar="FILE",
           help="calibration text (.txt, .jsonl[.gz], .json.gz; default the bundled corpus)")
    option(p, "calibration_tokens", default=None, metavar="FILE.npy",
           help="calibration token ids, int [S, L] (instead of --calibration)")
    option(p, "eval_dataset", default=None, metavar="FILE",
           help="evaluation text (default the bundled corpus; 'none' skips evaluation)")
    option(p, "eval_seqlen", type=int, default=None, help="perplexity window length (default the calibration L)")
    option(p, "eval_max_windows", type=int, default=None, help="evaluate on the first N windows only")
    option(p, "save_model", default=None, metavar="DIR",
           help="write the pruned model here (HF directory + masks.safetensors)")
    option(p, "overwrite", action="store_true", help="replace an existing --save-model directory")
    option(p, "results", default=None, metavar="FILE.json",
           help="write settings, diagnostics, sparsity, perplexity, times")
    option(p, "backend", default=None, help="numpy | cupy (default $DSNOT_REF_BACKEND, else numpy)")
    option(p, "dtype", default="float32", help="compute dtype: float32 | float64 (default float32)")
    option(p, "run_dir", default=None, metavar="DIR",
           help="activation cache and pruned layers (default: under the cache directory, named by the model, "
                "calibration tokens and settings, so rerunning the same command resumes)")
    option(p, "keep_cache", action="store_true", help="keep the run directory afterwards")
    option(p, "chunk_size", type=int, default=4, help="calibration sequences per forward chunk (default 4)")
    option(p, "no_recon_error", action="store_true",
           help="skip the reconstruction-error diagnostics (saves a C x C Hessian per sublayer)")
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
    sparsity_profile: str = "uniform"  # "uniform" | "owl"
    owl_m: float = 5.0
    owl_lambda: float = 0.08
    owl_budget: str = "released"  # "released" | "exact"
    swap_max_iter: int = SWAP_DEFAULTS.max_swaps  # method "swaps" (docs/swaps.md)
    swap_tol: float = SWAP_DEFAULTS.tol
    swap_window: int = SWAP_DEFAULTS.window
    swap_refresh: int = SWAP_DEFAULTS.refresh

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
    from .. import validate as checks  # noqa: PLC0415

    path = Path(text)
    if not path.exists():
        raise UserError(f"{flag} file {text} does not exist")
    return checks.regular_file(path, f"{flag} file")


def check_positive(value: int | None, flag: str, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise UserError(f"{flag} must be >= {minimum}, got {value}")


def validate(args) -> PruneJob:
    """Every check that needs no model: flags, files, output locations, backend."""
    from .. import backend, save  # noqa: PLC0415

    method = parse_choice(args.prune_method, METHODS, "--prune-method")
    if args.initial_method is not None and method not in ("dsnot", "swaps"):
        raise UserError(f"--initial-method only applies to --prune-method dsnot or swaps, not {method}")
    initial = parse_choice(args.initial_method or "wanda", INITIAL_METHODS, "--initial-method")
    sparsity, nm, kind = parse_sparsity(args.sparsity_ratio, args.sparsity_type, method)
    variant = parse_choice(args.dsnot_variant, VARIANTS, "--dsnot-variant")
    skip_text = args.skip_layer or ("none" if method == "swaps" else "mlp")
    skip_layer = SKIP_LAYERS[parse_choice(skip_text, tuple(SKIP_LAYERS), "--skip-layer")]
    skip_sub = parse_choice(args.skip_sub_layer, ("none", "no_skip", *SUB_LAYERS), "--skip-sub-layer")
    without_same_sign = parse_bool(args.without_same_sign, "--without-same-sign")
    on_reject = parse_choice(args.on_reject, ON_REJECT, "--on-reject")
    check_flag_bounds(args)
    if args.cycle_fraction is not None and not 0 <= args.cycle_fraction <= 1:
        raise UserError(f"--cycle-fraction must be in [0, 1], got {args.cycle_fraction}")
    dtype = parse_choice(args.dtype, ("float32", "float64"), "--dtype")
    backend_name = parse_choice(args.backend or backend.backend_name(), backend.BACKENDS, "--backend")
    counts = ((args.nsamples, "--nsamples"), (args.eval_max_windows, "--eval-max-windows"),
              (args.chunk_size, "--chunk-size"))
    for value, flag in counts:
        check_positive(value, flag)
    for value, flag in ((args.seqlen, "--seqlen"), (args.eval_seqlen, "--eval-seqlen")):
        check_positive(value, flag, minimum=2)
    if args.max_cycle_time < 0:
        raise UserError(f"--max-cycle-time must be >= 0, got {args.max_cycle_time}")
    if args.calibration and args.calibration_tokens:
        raise UserError("give --calibration or --calibration-tokens, not both")
    profile = parse_profile(args, method, nm)

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
        check_results_path(results, model_dir, (calibration, calibration_tokens, eval_dataset))
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
        chunk_size=args.chunk_size, quiet=args.quiet, recon_error=not args.no_recon_error, **profile,
        **parse_swaps(args, method),
    )


def parse_swaps(args, method: str) -> dict:
    """swap_max_iter, swap_tol, swap_window, swap_refresh; their flags need --prune-method swaps."""
    flags = {"swap_max_iter": "max_swaps", "swap_tol": "tol", "swap_window": "window", "swap_refresh": "refresh"}
    given = {name: getattr(args, name) for name in flags if getattr(args, name) is not None}
    if given and method != "swaps":
        names = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UserError(f"{names} only apply to --prune-method swaps, not {method}")
    settings = SwapSettings(**{flags[name]: value for name, value in given.items()})  # UserError if out of range
    return {name: getattr(settings, field) for name, field in flags.items()}


def parse_profile(args, method: str, nm) -> dict:
    """sparsity_profile, owl_m, owl_lambda, owl_budget from their flags; OWL flags need --sparsity-profile owl."""
    from ..methods.owl import BUDGETS, EXACT_CAP, OwlSettings  # noqa: PLC0415

    profile = parse_choice(args.sparsity_profile, ("uniform", "owl"), "--sparsity-profile")
    given = [flag for flag, value in (("--owl-m", args.owl_m), ("--owl-lambda", args.owl_lambda),
                                      ("--owl-budget", args.owl_budget)) if value is not None]
    if profile == "uniform":
        if given:
            raise UserError(f"{given[0]} only applies to --sparsity-profile owl")
        return {"sparsity_profile": profile}
    if method == "dense":
        raise UserError("--sparsity-profile owl needs a pruning method, not dense")
    if nm is not None:
        raise UserError("--sparsity-profile owl is for unstructured sparsity; N:M patterns stay uniform")
    if args.owl_budget is not None and args.owl_budget.strip().lower() == "exact" and args.sparsity_ratio > EXACT_CAP:
        raise UserError(f"--owl-budget exact caps every layer at {EXACT_CAP}; "
                        f"--sparsity-ratio {args.sparsity_ratio} is above it")
    defaults = OwlSettings()
    settings = OwlSettings(
        m=defaults.m if args.owl_m is None else args.owl_m,
        lam=defaults.lam if args.owl_lambda is None else args.owl_lambda,
        budget=defaults.budget if args.owl_budget is None else parse_choice(args.owl_budget, BUDGETS, "--owl-budget"),
    )
    return {"sparsity_profile": profile, "owl_m": settings.m, "owl_lambda": settings.lam, "owl_budget": settings.budget}


def default_eval_path() -> Path:
    from .. import data  # noqa: PLC0415

    return Path(data.BUNDLED_EVAL)


def check_results_path(results: Path, model_dir: Path, inputs=()) -> None:
    """Refuses what validate.output_file refuses: a directory, a device or FIFO, a path in the
    model directory or equal to an input file, an unwritable parent."""
    from .. import validate as checks  # noqa: PLC0415

    checks.output_file(results, "--results", [model_dir, *inputs])


# flag -> (lowest, highest): what a run can take (memory and disk are checked later against
# the model, in check_resources)
FLAG_BOUNDS = {
    "nsamples": (1, 2**20), "seqlen": (2, 2**20), "eval_seqlen": (2, 2**20), "chunk_size": (1, 2**12),
    "max_cycle_time": (0, 2**20), "lookahead": (1, 2**16), "eval_max_windows": (1, 2**31),
    "seed": (-(2**63), 2**63 - 1),
}


def check_flag_bounds(args) -> None:
    """Every integer flag within FLAG_BOUNDS; every float flag finite (one line naming the flag)."""
    for name, (low, high) in FLAG_BOUNDS.items():
        value = getattr(args, name, None)
        if value is not None and not low <= value <= high:
            bound = f">= {low}" if value < low else f"<= {high}"
            raise UserError(f"--{name.replace('_', '-')} must be {bound}, got {value}")
    for name in ("sparsity_ratio", "update_threshold", "pow_of_var_regrowing", "cycle_fraction"):
        value = getattr(args, name, None)
        if value is not None and not np.isfinite(value):
            raise UserError(f"--{name.replace('_', '-')} must be a finite number, got {value}")
    if args.update_threshold < 0:
        raise UserError(f"--update-threshold must be >= 0, got {args.update_threshold}")


def check_resources(job: PruneJob, config, seqlen: int, eval_seqlen: int) -> None:
    """Refuse a run whose arrays cannot fit, before any is allocated: the calibration tokens and
    one forward chunk in memory, the activation cache (inputs and outputs of a layer) on disk,
    the exact variant's [R, k, k] candidate table."""
    import shutil  # noqa: PLC0415

    from .. import validate as checks  # noqa: PLC0415
    from ..config import activation_bytes  # noqa: PLC0415
    from ..demo_model import cache_home  # noqa: PLC0415
    from ..model import linear_shapes  # noqa: PLC0415

    itemsize = np.dtype(job.dtype).itemsize
    n_seq = job.nsamples
    if job.calibration_tokens is not None:
        shape = checks.npy_file(job.calibration_tokens, "calibration tokens")[0]
        n_seq, seqlen = shape if len(shape) == 2 else (1, 1)  # another shape is refused when loading
    if job.method != "dense":
        need = 2 * n_seq * seqlen * 8 + activation_bytes(config, min(job.chunk_size, n_seq), seqlen, itemsize)
        checks.check_memory(need, f"--nsamples {n_seq} x --seqlen {seqlen} (chunk {job.chunk_size})")
        files = 3 if job.sparsity_profile == "owl" else 2  # OWL's dense pass also keeps the embeddings
        cache_bytes = files * n_seq * seqlen * config.hidden_size * itemsize
        where = (job.run_dir or checks.cache_home_dir(cache_home())).resolve()
        while not where.exists():
            where = where.parent
        free = shutil.disk_usage(where).free
        if cache_bytes > free:
            raise UserError(f"--nsamples {n_seq} x --seqlen {seqlen}: the activation cache needs about "
                            f"{checks.format_bytes(cache_bytes)} of disk, {where} has {checks.format_bytes(free)} free")
    if job.method == "dsnot" and job.dsnot_variant == "exact":
        table = max(r * min(job.lookahead, c) ** 2 * 8 * 4 for r, c in linear_shapes(config).values())
        checks.check_memory(table, f"--lookahead {job.lookahead} (the exact variant's [R, k, k] candidates)")
    if job.eval_dataset is not None:
        checks.check_memory(activation_bytes(config, 1, eval_seqlen, itemsize), f"--eval-seqlen {eval_seqlen}")


def check_run_dir(model_dir: Path, run_dir: Path) -> None:
    """A run directory is new, empty, or one of ours (to resume); never the model's."""
    from ..cache import check_not_foreign  # noqa: PLC0415
    from ..save import check_writable_parent  # noqa: PLC0415
    from ..validate import apart_from_model  # noqa: PLC0415

    run = apart_from_model(run_dir, "--run-dir", model_dir).resolve()
    check_not_foreign(run_dir)  # it is deleted at the end: never adopt a directory of other files
    check_writable_parent(run / "x")
