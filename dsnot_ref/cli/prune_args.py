"""Arguments of `dsnot-ref prune`: the flags, and their validation into a frozen ``PruneJob``.

Everything that can be refused is refused here, before any work, with one ``UserError`` line:
flags, files, output locations, the backend. A job is four groups: ``Inputs`` (model and
calibration data), the pipeline's own ``PipelineSettings`` (with the methods' ``PruneSpec``),
``Evaluation`` and ``Output``; a flag whose setting has a dataclass default takes that default.
``cli/prune.py`` does the work; ``cli/demo.py`` builds its jobs as these dataclasses directly.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..methods import INITIAL_METHODS, METHODS, PruneSpec
from ..methods.dsnot.common import ON_REJECT, VARIANTS, DSnoTSettings
from ..methods.owl import BUDGETS, EXACT_CAP, OwlSettings
from ..methods.refiners import default_skip_layer
from ..methods.swaps import SwapSettings
from ..methods.weight_update import MODES as UPDATE_MODES
from ..methods.weight_update import WeightUpdateSettings
from ..pipeline import DTYPES, PipelineSettings
from ..threads import usable_cores
from . import user_help

SKIP_LAYERS = {"mlp": "mlp", "self_attn": "self_attn", "none": None, "no_skip": None}
SUB_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "out_proj", "fc1", "fc2")
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
DEMO_ALIASES = ("smollm2-135m",)
DEFAULT_SEQLEN = 2048
DSNOT_DEFAULTS, SWAP_DEFAULTS, OWL_DEFAULTS = DSnoTSettings(), SwapSettings(), OwlSettings()
UPDATE_DEFAULTS = WeightUpdateSettings()


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
    """The flags of `prune`, in four groups (strings are checked in :func:`validate`, not by argparse)."""
    add_method_arguments(p.add_argument_group("method"))
    add_refiner_arguments(p.add_argument_group("DSnoT and SparseSwaps"))
    add_data_arguments(p.add_argument_group("model and data"))
    add_run_arguments(p.add_argument_group("run and output"))


def add_method_arguments(p) -> None:
    option(p, "prune_method", default="dsnot", metavar="METHOD",
           help="magnitude | wanda | sparsegpt | dsnot | swaps (SparseSwaps) | dense (default dsnot)")
    option(p, "initial_method", default=None, metavar="METHOD",
           help="initial mask of dsnot and swaps: magnitude | wanda | sparsegpt (default wanda)")
    option(p, "sparsity_ratio", type=float, default=None, metavar="P", help="fraction of weights pruned in each row, in [0, 1); needed unless --sparsity-type is N:M")
    option(p, "sparsity_type", default="unstructured", metavar="TYPE", help="unstructured | 2:4 | 4:8 | N:M")
    option(p, "skip_layer", default=None,
           help="DSnoT (or swaps) leaves this group alone: mlp | self_attn | none (default mlp for dsnot, none for "
                "swaps)")
    option(p, "skip_sub_layer", default="none",
           help="DSnoT leaves this sublayer alone, e.g. q_proj, fc1 (default none)")
    option(p, "sparsity_profile", default="uniform", metavar="PROFILE",
           help="uniform | owl: every decoder layer at the requested sparsity, or OWL's per-layer sparsities "
                "(unstructured only)")
    option(p, "weight_update", default=UPDATE_DEFAULTS.mode, metavar="UPDATE",
           help="after each sublayer's final mask: none (kept weights unchanged) | exact (kept weights replaced by "
                "the least-squares optimum on the calibration inputs) (default none)")
    option(p, "weight_update_damp", type=float, default=None, metavar="F",
           help=f"exact update: damping F x mean(diag H), as SparseGPT (default {UPDATE_DEFAULTS.percdamp:g})")
    option(p, "owl_m", type=float, default=None, metavar="M",
           help=f"OWL: a Wanda score is an outlier above M x its layer's mean (default {OWL_DEFAULTS.m:g})")
    option(p, "owl_lambda", type=float, default=None, metavar="LAMBDA",
           help=f"OWL: layer sparsities spread over a band of width 2 x LAMBDA (default {OWL_DEFAULTS.lam:g})")
    option(p, "owl_budget", default=None, metavar="BUDGET",
           help="OWL: released (centred by layer count, as the released code) | exact (parameter-weighted, clipped to "
                f"[0, 0.99]; default {OWL_DEFAULTS.budget})")


def add_refiner_arguments(p) -> None:
    d = DSNOT_DEFAULTS
    option(p, "max_cycle_time", type=int, default=None,
           help=f"DSnoT: cycles per row (default {d.max_cycle_time})")
    option(p, "update_threshold", type=float, default=None,
           help=f"DSnoT: stop when |eps| is below (default {d.update_threshold:g})")
    option(p, "pow_of_var_regrowing", type=float, default=None,
           help=f"DSnoT: power of the variance in the growth order (default {d.pow_of_var_regrowing:g})")
    option(p, "without_same_sign", default=None, metavar="BOOL",
           help="official variant: sign check off (true, default) or on (false)")
    option(p, "dsnot_variant", default=None, metavar="VARIANT",
           help=f"{' | '.join(VARIANTS)} (default {d.variant})")
    option(p, "lookahead", type=int, default=None, metavar="K",
           help=f"exact variant: best swap among the next K x K candidates (default {d.lookahead})")
    option(p, "cycle_fraction", type=float, default=None, metavar="F",
           help="exact variant: cycle budget int(F x row width) instead of --max-cycle-time")
    option(p, "on_reject", default=None, metavar="MODE",
           help=f"exact variant: a row whose swap would not lower its error: stop | skip (default {d.on_reject})")
    option(p, "swap_max_iter", type=int, default=None, metavar="N",
           help=f"swaps: at most N swaps per row (default {SWAP_DEFAULTS.max_swaps})")
    option(p, "swap_tol", type=float, default=None, metavar="T",
           help=f"swaps: a swap must lower the row's error by more than T x the error (default {SWAP_DEFAULTS.tol:g})")
    option(p, "swap_window", type=int, default=None, metavar="K",
           help=f"swaps: K regrowth x K pruning candidates per round; 0 = all pairs (default {SWAP_DEFAULTS.window})")
    option(p, "swap_refresh", type=int, default=None, metavar="P",
           help=f"swaps: swaps per round before the candidates are rebuilt (default {SWAP_DEFAULTS.refresh})")
    option(p, "swap_gram", default=None, metavar="DTYPE",
           help=f"swaps: the calibration Gram matrix from float32 or float64 chunk products, summed in float64 "
                f"(default {SWAP_DEFAULTS.gram})")


def add_data_arguments(p) -> None:
    option(p, "model", required=True, help="HF model directory, or the alias smollm2-135m")
    option(p, "calibration", default=None, metavar="FILE",
           help="calibration text (.txt, .jsonl[.gz], .json.gz; default the bundled corpus)")
    option(p, "calibration_tokens", default=None, metavar="FILE.npy",
           help="calibration token ids, int [S, L] (instead of --calibration)")
    option(p, "nsamples", type=int, default=None,
           help=f"calibration sequences S (default {Inputs.nsamples}; a tokens file brings its own S)")
    option(p, "seqlen", type=int, default=None,
           help=f"tokens per calibration sequence L (default {DEFAULT_SEQLEN}, capped at the model's positions)")
    option(p, "seed", type=int, default=None, help=f"seed of the calibration sampling (default {Inputs.seed})")
    option(p, "eval_dataset", default=None, metavar="FILE",
           help="evaluation text (default the bundled corpus; 'none' skips evaluation)")
    option(p, "eval_seqlen", type=int, default=None, help="perplexity window length (default the calibration L)")
    option(p, "eval_max_windows", type=int, default=None, help="evaluate on the first N windows only")


def add_run_arguments(p) -> None:
    option(p, "backend", default=None, help="numpy | cupy (default $DSNOT_REF_BACKEND, else numpy)")
    option(p, "dtype", default=PipelineSettings.dtype,
           help=f"compute dtype: {' | '.join(DTYPES)} (default {PipelineSettings.dtype})")
    option(p, "chunk_size", type=int, default=PipelineSettings.chunk_size,
           help=f"calibration sequences per forward chunk (default {PipelineSettings.chunk_size})")
    option(p, "workers", type=int, default=None, metavar="W",
           help="chunks run at once, each on a core of its own (default the cores this process may use); "
                "each of them holds its activations in memory")
    option(p, "recon_error", action="store_true",
           help="also measure each sublayer's reconstruction error before and after refinement (slower; "
                "the masks are the same either way)")
    option(p, "recon_error_tokens", default=None, metavar="N|all",
           help="the diagnostic's errors from a seeded sample of N calibration tokens, or all of them "
                f"(default {PipelineSettings.recon_error_tokens}; methods that gather G themselves use theirs)")
    option(p, "run_dir", default=None, metavar="DIR",
           help="activation cache and pruned layers (default under the cache directory, named by the model, "
                "calibration tokens and settings, so rerunning the same command resumes)")
    option(p, "keep_cache", action="store_true", help="keep the run directory afterwards")
    option(p, "save_model", default=None, metavar="DIR",
           help="write the pruned model here (HF directory + masks.safetensors)")
    option(p, "overwrite", action="store_true", help="replace an existing --save-model directory")
    option(p, "results", default=None, metavar="FILE.json",
           help="write settings, diagnostics, sparsity, perplexity, times")
    option(p, "quiet", action="store_true", help="no progress bars")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prune",
        help="prune a model (magnitude, Wanda, SparseGPT, DSnoT, SparseSwaps), evaluate and save it",
        **user_help(
            "Prune a Hugging Face model layer by layer, check its sparsity, evaluate it and save it.",
            ["dsnot-ref prune --model path/to/hf-model --prune-method dsnot --initial-method wanda \\",
             "    --sparsity-ratio 0.6 --save-model out/pruned --results out/pruned.json",
             "dsnot-ref prune --model smollm2-135m --prune-method swaps --sparsity-type 2:4 \\",
             "    --nsamples 32 --seqlen 512 --eval-max-windows 32"],
            "Every flag is checked before any work starts. An interrupted run resumes where it stopped when\n"
            "the same command is run again. Each flag also has the released code's spelling (--sparsity_ratio).",
        ),
    )
    add_prune_arguments(p)
    return one_line_errors(p)


# --- a validated job: four groups of settings, no argparse below this point ---------------------


@dataclass(frozen=True)
class Inputs:
    """The model and its calibration data."""

    model: str                                # as given (path or alias)
    model_dir: Path                           # resolved HF directory (for an alias: where it is or will be)
    fetch_alias: str | None = None            # alias to fetch before loading
    calibration: Path | None = None           # text; None: the bundled corpus
    calibration_tokens: Path | None = None    # int [S, L] token ids, instead of text
    nsamples: int = 128                       # S (a tokens file's own S)
    seqlen: int | None = None                 # L (a tokens file's own L); None: DEFAULT_SEQLEN capped at the model's positions
    seed: int | None = 0                      # of the calibration sampling; None with a tokens file


@dataclass(frozen=True)
class Evaluation:
    eval_dataset: Path | None = None          # None: no evaluation
    eval_seqlen: int | None = None            # perplexity window; None: the calibration L
    eval_max_windows: int | None = None       # None: every window


@dataclass(frozen=True)
class Output:
    save_model: Path | None = None            # HF directory for the pruned model
    overwrite: bool = False                   # replace an existing save_model
    results: Path | None = None               # results JSON
    run_dir: Path | None = None               # None: named by the model, tokens and settings
    keep_cache: bool = False
    quiet: bool = False                       # no progress bars


@dataclass(frozen=True)
class PruneJob:
    """Validated settings of one `prune` run. ``pipeline`` is what the pipeline takes as it is: the
    PruneSpec (method, sparsity, N:M, initial method, DSnoT and SparseSwaps settings), the skipped
    sublayers, chunking, dtype, backend and the OWL profile."""

    inputs: Inputs
    pipeline: PipelineSettings
    evaluation: Evaluation = Evaluation()
    output: Output = Output()

    @property
    def spec(self) -> PruneSpec:
        return self.pipeline.spec

    def settings_record(self) -> dict:
        """The results file's "settings": one flat key per setting, named as its flag (paths as strings)."""
        nm = self.spec.nm
        record = {"sparsity_type": "unstructured" if nm is None else f"{nm[0]}:{nm[1]}",
                  "sparsity_profile": "uniform" if self.pipeline.profile is None else "owl"}

        def add(fields: dict) -> None:
            for name, value in fields.items():
                if isinstance(value, dict):
                    add(value)
                elif name != "profile":
                    record[RECORD_NAMES.get(name, name)] = str(value) if isinstance(value, Path) else value

        add(asdict(self))
        if self.inputs.calibration_tokens is not None:
            record["derived_from_calibration_tokens"] = ["nsamples", "seqlen"]
        return record


# A setting whose flag is named otherwise: field name -> flag name (the results file's key)
RECORD_NAMES = {"method": "prune_method", "sparsity": "sparsity_ratio", "variant": "dsnot_variant",
                "max_swaps": "swap_max_iter", "tol": "swap_tol", "window": "swap_window", "refresh": "swap_refresh",
                "gram": "swap_gram", "mode": "weight_update", "percdamp": "weight_update_damp",
                "m": "owl_m", "lam": "owl_lambda", "budget": "owl_budget"}


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


def parse_sparsity(ratio: float | None, sparsity_type: str, method: str) -> tuple[float, tuple[int, int] | None]:
    """(sparsity, (N, M) or None) from --sparsity-ratio and --sparsity-type."""
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
    return float(ratio), nm


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
    check_flag_bounds(args)
    pipeline = parse_pipeline(args)
    if args.calibration and args.calibration_tokens:
        raise UserError("give --calibration or --calibration-tokens, not both")
    model_dir, alias = resolve_model(args.model)
    inputs = parse_inputs(args, model_dir, alias, pipeline.spec.method)
    eval_dataset = None
    if args.eval_dataset is None or args.eval_dataset.lower() != "none":
        eval_dataset = existing_file(args.eval_dataset, "--eval-dataset") or default_eval_path()
    else:
        given = [flag for flag, value in (("--eval-seqlen", args.eval_seqlen),
                                          ("--eval-max-windows", args.eval_max_windows)) if value is not None]
        if given:
            raise UserError(f"{', '.join(given)} cannot apply with --eval-dataset none")
    if args.overwrite and not args.save_model:
        raise UserError("--overwrite only applies with --save-model")
    if pipeline.spec.method == "dense":
        given = [flag for flag, value in (("--run-dir", args.run_dir), ("--keep-cache", args.keep_cache)) if value]
        if given:
            raise UserError(f"{', '.join(given)} cannot apply to --prune-method dense (it has no run directory)")
    evaluation = Evaluation(eval_dataset=eval_dataset, eval_seqlen=args.eval_seqlen,
                            eval_max_windows=args.eval_max_windows)
    return PruneJob(inputs, pipeline, evaluation, parse_output(args, inputs, evaluation))


def parse_inputs(args, model_dir: Path, alias: str | None, method: str) -> Inputs:
    """The model and calibration data. A tokens file brings its own S and L: --nsamples and
    --seqlen are derived from it (given, they must match it), and --seed, which only samples
    windows from a text, cannot apply; a dense run reads no calibration, so no calibration flag
    applies to it."""
    from .. import validate as checks  # noqa: PLC0415

    calibration = existing_file(args.calibration, "--calibration")
    tokens = existing_file(args.calibration_tokens, "--calibration-tokens")
    if method == "dense":
        given = [flag for flag, value in (("--calibration", calibration), ("--calibration-tokens", tokens),
                                          ("--nsamples", args.nsamples), ("--seed", args.seed)) if value is not None]
        if given:
            raise UserError(f"{', '.join(given)} cannot apply to --prune-method dense (no calibration)")
    nsamples = Inputs.nsamples if args.nsamples is None else args.nsamples
    seed = Inputs.seed if args.seed is None else args.seed
    seqlen = args.seqlen
    if tokens is not None:
        if args.seed is not None:
            raise UserError("--seed cannot apply with --calibration-tokens (it samples windows from a text)")
        shape = checks.npy_file(tokens, "calibration tokens")[0]
        if len(shape) != 2:
            raise UserError(f"calibration tokens {tokens} must have shape [S, L], got {shape}")
        for flag, value, derived in (("--nsamples", args.nsamples, shape[0]), ("--seqlen", args.seqlen, shape[1])):
            if value is not None and value != derived:
                raise UserError(f"{flag} {value} does not match --calibration-tokens {tokens}, "
                                f"which holds {shape[0]} sequences of {shape[1]} tokens")
        nsamples, seqlen, seed = shape[0], shape[1], None
    return Inputs(model=args.model, model_dir=model_dir, fetch_alias=alias, calibration=calibration,
                  calibration_tokens=tokens, nsamples=nsamples, seqlen=seqlen, seed=seed)


def parse_pipeline(args) -> PipelineSettings:
    """The method, its settings and how the pipeline runs it."""
    method = parse_choice(args.prune_method, METHODS, "--prune-method")
    if args.initial_method is not None and method not in ("dsnot", "swaps"):
        raise UserError(f"--initial-method only applies to --prune-method dsnot or swaps, not {method}")
    initial = parse_choice(args.initial_method or "wanda", INITIAL_METHODS, "--initial-method")
    sparsity, nm = parse_sparsity(args.sparsity_ratio, args.sparsity_type, method)
    spec = PruneSpec(method=method, sparsity=sparsity, nm=nm, initial_method=initial,
                     dsnot=parse_dsnot(args, method), swaps=parse_swaps(args, method),
                     weight_update=parse_weight_update(args, method))
    skip_layer = parse_choice(args.skip_layer or default_skip_layer(method) or "none", tuple(SKIP_LAYERS),
                              "--skip-layer")
    skip_sub = parse_choice(args.skip_sub_layer, ("none", "no_skip", *SUB_LAYERS), "--skip-sub-layer")
    return PipelineSettings(
        spec=spec, skip_layer=SKIP_LAYERS[skip_layer],
        skip_sub_layer=None if skip_sub in ("none", "no_skip") else skip_sub,
        chunk_size=args.chunk_size, workers=parse_workers(args.workers),
        dtype=parse_choice(args.dtype, tuple(DTYPES), "--dtype"),
        backend=parse_backend(args.backend), recon_error=args.recon_error,
        recon_error_tokens=parse_recon_error_tokens(args.recon_error_tokens, args.recon_error),
        profile=parse_profile(args, method, nm),
    )


# DSnoT flag -> the DSnoTSettings field it sets; those of EXACT_ONLY act only in the exact variant
DSNOT_FLAGS = {"dsnot_variant": "variant", "max_cycle_time": "max_cycle_time",
               "update_threshold": "update_threshold", "pow_of_var_regrowing": "pow_of_var_regrowing",
               "without_same_sign": "without_same_sign", "lookahead": "lookahead",
               "cycle_fraction": "cycle_fraction", "on_reject": "on_reject"}
EXACT_ONLY = ("lookahead", "cycle_fraction", "on_reject")


def parse_dsnot(args, method: str) -> DSnoTSettings:
    """The DSnoT flags; the exact variant's lookahead, cycle fraction and on-reject among them.

    A flag that cannot apply is refused rather than dropped: DSnoT flags with another method,
    the exact variant's flags with another variant. Flags not given take DSnoTSettings' defaults.
    """
    given = [name for name in DSNOT_FLAGS if getattr(args, name) is not None]
    if given and method != "dsnot":
        names = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UserError(f"{names} only apply to --prune-method dsnot, not {method}")
    if args.cycle_fraction is not None and not 0 <= args.cycle_fraction <= 1:
        raise UserError(f"--cycle-fraction must be in [0, 1], got {args.cycle_fraction}")
    values = {field: getattr(args, name) for name, field in DSNOT_FLAGS.items() if getattr(args, name) is not None}
    if "variant" in values:
        values["variant"] = parse_choice(values["variant"], VARIANTS, "--dsnot-variant")
    if "without_same_sign" in values:
        values["without_same_sign"] = parse_bool(values["without_same_sign"], "--without-same-sign")
    if "on_reject" in values:
        values["on_reject"] = parse_choice(values["on_reject"], ON_REJECT, "--on-reject")
    settings = DSnoTSettings(**values)
    exact_given = [name for name in EXACT_ONLY if name in given]
    if exact_given and settings.variant != "exact":
        names = ", ".join("--" + name.replace("_", "-") for name in exact_given)
        raise UserError(f"{names} only apply to --dsnot-variant exact, not {settings.variant}")
    return settings


def parse_swaps(args, method: str) -> SwapSettings:
    """--swap-max-iter, --swap-tol, --swap-window, --swap-refresh, --swap-gram; they need --prune-method swaps."""
    flags = {"swap_max_iter": "max_swaps", "swap_tol": "tol", "swap_window": "window", "swap_refresh": "refresh",
             "swap_gram": "gram"}
    given = {name: getattr(args, name) for name in flags if getattr(args, name) is not None}
    if given and method != "swaps":
        names = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UserError(f"{names} only apply to --prune-method swaps, not {method}")
    return SwapSettings(**{flags[name]: value for name, value in given.items()})  # UserError if out of range


def parse_weight_update(args, method: str) -> WeightUpdateSettings:
    """--weight-update and --weight-update-damp (which needs --weight-update exact)."""
    mode = parse_choice(args.weight_update, UPDATE_MODES, "--weight-update")
    if mode != "none" and method == "dense":
        raise UserError("--weight-update exact needs a pruning method, not dense")
    if args.weight_update_damp is None:
        return WeightUpdateSettings(mode)
    if mode == "none":
        raise UserError("--weight-update-damp only applies to --weight-update exact")
    return WeightUpdateSettings(mode, args.weight_update_damp)  # UserError if out of range


def parse_profile(args, method: str, nm) -> OwlSettings | None:
    """--sparsity-profile and the OWL flags (which need --sparsity-profile owl); None: uniform."""
    profile = parse_choice(args.sparsity_profile, ("uniform", "owl"), "--sparsity-profile")
    given = [flag for flag, value in (("--owl-m", args.owl_m), ("--owl-lambda", args.owl_lambda),
                                      ("--owl-budget", args.owl_budget)) if value is not None]
    if profile == "uniform":
        if given:
            raise UserError(f"{given[0]} only applies to --sparsity-profile owl")
        return None
    if method == "dense":
        raise UserError("--sparsity-profile owl needs a pruning method, not dense")
    if nm is not None:
        raise UserError("--sparsity-profile owl is for unstructured sparsity; N:M patterns stay uniform")
    if args.owl_budget is not None and args.owl_budget.strip().lower() == "exact" and args.sparsity_ratio > EXACT_CAP:
        raise UserError(f"--owl-budget exact caps every layer at {EXACT_CAP}; "
                        f"--sparsity-ratio {args.sparsity_ratio} is above it")
    return OwlSettings(
        m=OWL_DEFAULTS.m if args.owl_m is None else args.owl_m,
        lam=OWL_DEFAULTS.lam if args.owl_lambda is None else args.owl_lambda,
        budget=OWL_DEFAULTS.budget if args.owl_budget is None else parse_choice(args.owl_budget, BUDGETS,
                                                                                 "--owl-budget"),
    )


def parse_workers(count: int | None) -> int:
    """--workers: a positive count; not given, every core this process may use."""
    check_positive(count, "--workers")
    return usable_cores() if count is None else count


def parse_recon_error_tokens(text: str | None, recon_error: bool) -> int | None:
    """--recon-error-tokens: a positive token count, or "all" (None: every calibration token);
    not given, PipelineSettings' default. Without --recon-error it cannot apply: refused."""
    if text is None:
        return PipelineSettings.recon_error_tokens
    if not recon_error:
        raise UserError("--recon-error-tokens applies only with --recon-error")
    if text == "all":
        return None
    try:
        count = int(text)
    except ValueError:
        raise UserError(f"--recon-error-tokens must be a positive integer or 'all', got {text!r}") from None
    check_positive(count, "--recon-error-tokens")
    return count


def parse_backend(text: str | None) -> str:
    """--backend (default $DSNOT_REF_BACKEND, else numpy); refused now, not after tokenising, if it cannot run."""
    from .. import backend  # noqa: PLC0415

    name = parse_choice(text or backend.backend_name(), backend.BACKENDS, "--backend")
    backend.get_backend(name)
    return name


def parse_output(args, inputs: Inputs, evaluation: Evaluation) -> Output:
    """Where the results go; each location refused now if it cannot be written or would clobber an input."""
    from ..save import check_output_dir  # noqa: PLC0415

    save_model = Path(args.save_model) if args.save_model else None
    if save_model is not None:
        check_output_dir(inputs.model_dir, save_model, args.overwrite)
    results = Path(args.results) if args.results else None
    if results is not None:
        check_results_path(results, inputs.model_dir,
                           (inputs.calibration, inputs.calibration_tokens, evaluation.eval_dataset))
    run_dir = Path(args.run_dir) if args.run_dir else None
    if run_dir is not None:
        check_run_dir(inputs.model_dir, run_dir)
    check_outputs_apart(inputs, evaluation, save_model, results, run_dir)
    return Output(save_model=save_model, overwrite=args.overwrite, results=results, run_dir=run_dir,
                  keep_cache=args.keep_cache, quiet=args.quiet)


def check_outputs_apart(inputs: Inputs, evaluation: Evaluation, save_model, results, run_dir) -> None:
    """The saved model, the results file and the run directory (without --run-dir: every default
    run directory, under the cache's runs/) pairwise apart, and apart from every input."""
    from .. import validate as checks  # noqa: PLC0415
    from ..demo_model import cache_home  # noqa: PLC0415

    run_flag = "--run-dir"
    if run_dir is None:
        run_flag, run_dir = "the default run directories", checks.cache_home_dir(cache_home()) / "runs"
    checks.check_disjoint(
        [("--save-model", save_model), ("--results", results), (run_flag, run_dir)],
        [("--model", inputs.model_dir), ("--calibration", inputs.calibration),
         ("--calibration-tokens", inputs.calibration_tokens), ("--eval-dataset", evaluation.eval_dataset)],
    )


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
    if args.update_threshold is not None and args.update_threshold < 0:
        raise UserError(f"--update-threshold must be >= 0, got {args.update_threshold}")


def check_resources(job: PruneJob, config, seqlen: int, eval_seqlen: int) -> None:
    """Refuse a run whose arrays cannot fit, before any is allocated: the calibration tokens and
    one forward chunk in memory, every file of the run on disk (disk_needs), N:M widths, the
    exact variant's [R, k, k] candidate table."""
    from .. import validate as checks  # noqa: PLC0415
    from ..config import activation_bytes  # noqa: PLC0415
    from ..model import linear_shapes  # noqa: PLC0415

    settings, inputs = job.pipeline, job.inputs
    itemsize = np.dtype(settings.dtype).itemsize
    n_seq = inputs.nsamples  # a tokens file's own S and L (parse_inputs)
    if job.spec.method != "dense":
        chunk = settings.chunk_size
        need = 2 * n_seq * seqlen * 8 + activation_bytes(config, min(chunk, n_seq), seqlen, itemsize)
        checks.check_memory(need, f"--nsamples {n_seq} x --seqlen {seqlen} (chunk {chunk})")
    check_disk(disk_needs(job, config, seqlen))
    check_nm_widths(job, config)
    lookahead = job.spec.dsnot.lookahead
    if job.spec.method == "dsnot" and job.spec.dsnot.variant == "exact":
        table = max(r * min(lookahead, c) ** 2 * 8 * 4 for r, c in linear_shapes(config).values())
        checks.check_memory(table, f"--lookahead {lookahead} (the exact variant's [R, k, k] candidates)")
    if job.evaluation.eval_dataset is not None:
        checks.check_memory(activation_bytes(config, 1, eval_seqlen, itemsize), f"--eval-seqlen {eval_seqlen}")


def disk_needs(job: PruneJob, config, seqlen: int) -> list[tuple[Path, int, str]]:
    """(directory, bytes, what) for every file the run writes: in the run directory the
    activation cache (a layer's inputs and outputs, and OWL's embeddings) and the pruned layers
    with their masks; the saved model (the input's weight files, re-encoded in their own dtypes,
    its side files and the masks). The results file is small."""
    from .. import validate as checks  # noqa: PLC0415
    from ..demo_model import cache_home  # noqa: PLC0415
    from ..model import linear_shapes  # noqa: PLC0415
    from ..save import weight_files  # noqa: PLC0415

    needs = []
    itemsize = np.dtype(job.pipeline.dtype).itemsize
    linear = sum(r * c for r, c in linear_shapes(config).values()) * config.num_layers  # pruned weights
    masks = linear // 8 + 1
    if job.spec.method != "dense":
        files = 2 if job.pipeline.profile is None else 3  # OWL's dense pass also keeps the embeddings
        cache = files * job.inputs.nsamples * seqlen * config.hidden_size * itemsize
        run_dir = job.output.run_dir or checks.cache_home_dir(cache_home()) / "runs"
        needs.append((run_dir, cache + linear * 4 + masks,
                      f"--nsamples {job.inputs.nsamples} x --seqlen {seqlen}: the run directory"))
    if job.output.save_model is not None:
        model_dir = job.inputs.model_dir
        size = sum((model_dir / name).stat().st_size for name in weight_files(model_dir))
        needs.append((job.output.save_model, size + masks + 2**20, "--save-model: the pruned model"))
    return needs


def check_disk(needs: list[tuple[Path, int, str]]) -> None:
    """Refuse when the files bound for one file system exceed its free space (needs that share a
    file system are added up)."""
    import os  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    from .. import validate as checks  # noqa: PLC0415

    by_device: dict[int, list] = {}
    for where, nbytes, what in needs:
        existing = Path(where).resolve()
        while not existing.exists():
            existing = existing.parent
        device = os.stat(existing).st_dev
        by_device.setdefault(device, [existing, 0, []])
        by_device[device][1] += nbytes
        by_device[device][2].append(what)
    for existing, total, whats in by_device.values():
        free = shutil.disk_usage(existing).free
        if total > free:
            raise UserError(f"{' and '.join(whats)} need about {checks.format_bytes(total)} of disk; "
                            f"{existing} has {checks.format_bytes(free)} free")


SPARSEGPT_BLOCKSIZE = 128  # methods.sparsegpt's column block; an N:M group may not straddle two


def check_nm_widths(job: PruneJob, config) -> None:
    """An N:M pattern needs every pruned weight's row width C divisible by M (and SparseGPT's
    column block too, when SparseGPT prunes or makes the initial mask): refused before the first
    layer, naming the sublayer, not found at it."""
    from ..model import linear_shapes  # noqa: PLC0415

    if job.spec.nm is None or job.spec.method == "dense":
        return
    n, m = job.spec.nm
    for name, (_, cols) in linear_shapes(config).items():
        if cols % m:
            raise UserError(f"--sparsity-type {n}:{m} needs every row width to be a multiple of {m}; "
                            f"{name} of {job.inputs.model_dir} has {cols} columns")
    uses_sparsegpt = job.spec.method == "sparsegpt" or (
        job.spec.method in ("dsnot", "swaps") and job.spec.initial_method == "sparsegpt")
    if uses_sparsegpt and SPARSEGPT_BLOCKSIZE % m:
        raise UserError(f"--sparsity-type {n}:{m} with SparseGPT needs M to divide its column block of "
                        f"{SPARSEGPT_BLOCKSIZE}; got M = {m}")


def check_run_dir(model_dir: Path, run_dir: Path) -> None:
    """A run directory is new, empty, or one of ours (to resume); never the model's."""
    from ..cache import check_not_foreign  # noqa: PLC0415
    from ..save import check_writable_parent  # noqa: PLC0415
    from ..validate import apart_from_model  # noqa: PLC0415

    run = apart_from_model(run_dir, "--run-dir", model_dir).resolve()
    check_not_foreign(run_dir)  # it is deleted at the end: never adopt a directory of other files
    check_writable_parent(run / "x")
