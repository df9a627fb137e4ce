"""`dsnot-ref eval`: perplexity of a Hugging Face model directory on a text corpus (spec §6)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io_utils import atomic_write_json
from ..timing import Timer
from . import user_help

DTYPES = {"float32": np.float32, "float64": np.float64}
MAX_SEQLEN = 2**20
DEFAULT_SEQLEN = 2048  # the paper's window, when the model has that many positions
MAX_WINDOWS = 2**31


def add_parser(subparsers):
    p = subparsers.add_parser(
        "eval",
        help="perplexity of a model on a text corpus",
        **user_help(
            "Measure a model's perplexity on a text corpus, by the DSnoT paper's protocol.",
            ["dsnot-ref eval --model smollm2-135m --seqlen 512 --max-windows 16 --results dense.json"],
            "The text is joined with blank lines, tokenised once and cut into non-overlapping windows of\n"
            "--seqlen tokens; the perplexity is exp of the mean next-token cross-entropy over the windows.",
        ),
    )
    p.add_argument("--model", required=True,
                   help="Hugging Face model directory (safetensors), or a demo model name such as smollm2-135m")
    p.add_argument("--dataset", default=None,
                   help="text corpus (.txt, .jsonl, .jsonl.gz, WikiText raw); default: the bundled eval corpus")
    p.add_argument("--seqlen", type=int, default=None,
                   help="tokens per window (default 2048, capped at the model's max positions; a larger value "
                        "given is refused)")
    p.add_argument("--max-windows", type=int, default=None, help="evaluate at most N windows")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="compute dtype (default float32)")
    p.add_argument("--backend", choices=("numpy", "cupy"), default=None,
                   help="array backend (default $DSNOT_REF_BACKEND, else numpy)")
    p.add_argument("--results", default=None, help="also write the result as JSON to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def resolve_model_dir(name: str, quiet: bool) -> Path:
    """A directory as given, or a demo model name fetched (and converted) into the cache."""
    path = Path(name)
    if path.is_dir():
        return path
    from ..demo_model import DEMO_MODELS, fetch_demo_model  # noqa: PLC0415 - only for aliases

    if name in DEMO_MODELS:
        say = (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr))
        return fetch_demo_model(name, progress=say)
    raise UserError(f"model directory not found: {path} (demo models: {', '.join(sorted(DEMO_MODELS))})")


def progress_bar(quiet: bool):
    """A progress(done, total, message) callback drawing a tqdm bar on stderr, and its closer."""
    if quiet:
        return None, lambda: None
    from tqdm import tqdm  # noqa: PLC0415

    bar = tqdm(total=0, unit="win", file=sys.stderr, dynamic_ncols=True, desc="eval")

    def progress(done, total, message):
        bar.total = total
        bar.set_description(message, refresh=False)
        bar.update(done - bar.n)

    return progress, bar.close


def check_hidden_state_disk(config, n_tokens: int, seqlen: int, max_windows: int | None, dtype) -> None:
    """Hidden states [W, L, D] larger than evaluate.MEMMAP_BYTES go to a temporary file: refuse
    before the first layer when its directory has not the room."""
    import tempfile  # noqa: PLC0415

    from .. import evaluate  # noqa: PLC0415
    from .prune_args import check_disk  # noqa: PLC0415

    n_windows = n_tokens // seqlen if max_windows is None else min(n_tokens // seqlen, max_windows)
    nbytes = n_windows * seqlen * config.hidden_size * np.dtype(dtype).itemsize
    if nbytes > evaluate.MEMMAP_BYTES:
        check_disk([(Path(tempfile.gettempdir()), nbytes,
                     f"the hidden states of {n_windows} windows (a temporary file)")])


def run(args) -> int:
    from .. import validate  # noqa: PLC0415
    from ..backend import get_backend  # noqa: PLC0415
    from ..config import activation_bytes  # noqa: PLC0415
    from ..data import BUNDLED_EVAL, eval_tokens, load_tokenizer  # noqa: PLC0415
    from ..evaluate import perplexity  # noqa: PLC0415
    from ..model import load_model  # noqa: PLC0415

    clock = Timer()
    if args.seqlen is not None and not 2 <= args.seqlen <= MAX_SEQLEN:
        raise UserError(f"--seqlen must be in [2, {MAX_SEQLEN}], got {args.seqlen}")
    if args.max_windows is not None and not 1 <= args.max_windows <= MAX_WINDOWS:
        raise UserError(f"--max-windows must be in [1, {MAX_WINDOWS}], got {args.max_windows}")
    model_dir = resolve_model_dir(args.model, args.quiet)
    dataset = Path(args.dataset) if args.dataset else Path(BUNDLED_EVAL)
    if not dataset.exists():
        raise UserError(f"dataset not found: {dataset}")
    validate.regular_file(dataset, "dataset")
    if args.results:  # refused before the work, never into the model or onto the corpus
        validate.output_file(args.results, "--results", [model_dir, dataset])
    model = load_model(model_dir)
    if args.seqlen is not None and args.seqlen > model.config.max_positions:
        raise UserError(f"--seqlen {args.seqlen} exceeds the {model.config.max_positions} positions of {model_dir}")
    seqlen = args.seqlen or min(DEFAULT_SEQLEN, model.config.max_positions)
    validate.check_memory(activation_bytes(model.config, 1, seqlen, np.dtype(DTYPES[args.dtype]).itemsize),
                          f"eval --seqlen {seqlen} on {model_dir}")
    # with --max-windows, the text is read only as far as those windows need
    limit = None if args.max_windows is None else seqlen * args.max_windows
    tokens = eval_tokens(load_tokenizer(model_dir), dataset, limit)
    check_hidden_state_disk(model.config, len(tokens), seqlen, args.max_windows, DTYPES[args.dtype])
    xp = get_backend(args.backend)
    progress, close = progress_bar(args.quiet)
    try:
        result = perplexity(model, tokens, seqlen, dtype=DTYPES[args.dtype],
                            max_windows=args.max_windows, progress=progress, xp=xp)
    finally:
        close()
    if args.results:
        atomic_write_json(args.results, {
            "perplexity": result["perplexity"],
            "mean_nll": result["mean_nll"],
            "n_windows": result["n_windows"],
            "n_tokens": result["n_tokens"],
            "n_tokens_in_text": result["n_tokens_in_text"] if limit is None else None,  # not all read
            "settings": {"model": str(model_dir), "architecture": model.config.architecture,
                         "dataset": str(dataset), "seqlen": seqlen,
                         "seqlen_requested": args.seqlen, "max_windows": args.max_windows,
                         "dtype": args.dtype, "backend": xp.__name__},
            "eval_seconds": result["seconds"],
            "wall_seconds": clock.elapsed(),
        })
    # printed after the results file is written, so a closed stdout cannot lose it
    print(f"perplexity {result['perplexity']:.4f}  ({result['n_windows']} windows of {seqlen} "
          f"tokens, {model_dir}, {dataset.name})")
    return 0
