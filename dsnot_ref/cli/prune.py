"""`dsnot-ref prune`: prune a Hugging Face model layer by layer, evaluate it, save it.

Flags follow the released DSnoT main.py (zyxxmu/DSnoT); each is accepted with dashes or with
underscores (``--sparsity-ratio`` or ``--sparsity_ratio``). Differences from the released code:
``--without-same-sign`` is a real boolean (``true``/``false``; the released ``type=bool`` turns
any non-empty string into True), ``--skip-layer none`` means ``no_skip``, the sparsity of an N:M
pattern may be omitted (it is N/M), and every bad input is refused before any work with one line.

    dsnot-ref prune --model DIR --prune-method dsnot --initial-method wanda \\
        --sparsity-ratio 0.6 --sparsity-type unstructured --save-model OUT --results r.json

Flags and validation: ``cli/prune_args.py``. Order of work: validate everything (flags, files,
output locations, backend), tokenize the calibration and evaluation text, prune
(dsnot_ref.pipeline), check the sparsity of every linear weight, measure perplexity, save, write
the results JSON. Progress bars and per-layer lines go to
stderr; the results to stdout.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import re
import sys
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..model import check_tokens
from ..timing import Timer
# The flags and their validation live in prune_args; this module does the work.
from .prune_args import add_parser  # noqa: F401  (the subcommand protocol: cli/__init__.py calls it)
from .prune_args import (DEFAULT_SEQLEN, Evaluation, Inputs, PruneJob, check_disk, check_resources, disk_needs,
                         validate)


# --- the work -----------------------------------------------------------------------------------


def run(args) -> int:
    job = validate(args)
    outcome = execute(job)
    print_outcome(outcome)
    return 0


def execute(job: PruneJob, calib_tokens: np.ndarray | None = None, eval_tokens: np.ndarray | None = None) -> dict:
    """Run one job end to end and return the results dict (also written to ``job.output.results``).

    ``calib_tokens``/``eval_tokens`` let a caller (the demo) share tokens between runs. Phase
    times (load, calibration, prune, eval, save) come from one Timer, the results' "times";
    the pipeline's own steps (forward, stats, prune, io) are its "pipeline_times".
    """
    from .. import model as model_lib  # noqa: PLC0415

    clock = Timer()
    method = job.spec.method
    with clock("load"):
        model_dir = fetch_model(job.inputs)
        model = model_lib.load_model(model_dir)
        tokens_file = job.inputs.calibration_tokens
        if tokens_file is not None and job.inputs.seqlen > model.config.max_positions:  # L is the file's
            raise UserError(f"calibration tokens {tokens_file} have {job.inputs.seqlen} tokens per sequence, "
                            f"more than the model's {model.config.max_positions} positions")
        seqlen = resolve_seqlen(job.inputs.seqlen, model.config, "--seqlen")
        eval_seqlen = resolve_seqlen(job.evaluation.eval_seqlen or seqlen, model.config, "--eval-seqlen")
        check_resources(job, model.config, seqlen, eval_seqlen)
    with clock("calibration"):
        if calib_tokens is None and method != "dense":
            calib_tokens = load_calibration(job.inputs, model, seqlen)
        if eval_tokens is None and job.evaluation.eval_dataset is not None:
            eval_tokens = load_eval_tokens(job.evaluation, model_dir, eval_seqlen)
        if eval_tokens is not None:  # before any layer is pruned, not after
            check_eval_tokens(eval_tokens, eval_seqlen, model, job)
            check_disk(disk_needs(job, model.config, seqlen) + eval_disk_needs(job, model.config, eval_tokens,
                                                                              eval_seqlen))
    with run_directory(job, model, calib_tokens) as claim:
        run = None
        if claim is not None:
            with clock("prune"):
                run = prune(job, model, calib_tokens, claim.run_dir)
        sparsity, perplexity = check_evaluate_save(job, model, run, eval_tokens, eval_seqlen, clock)
        results = {
            "dsnot_ref_results": 1,
            "settings": settings_used(job, seqlen, eval_seqlen),
            "versions": versions(),
            "calibration": calibration_record(job.inputs, calib_tokens),
            "layers": [] if run is None else layer_rows(run.diagnostics, method in ("dsnot", "swaps")),
            "profile": profile_record(job.pipeline.profile, run.profile if run is not None else None),
            "sparsity": sparsity,
            "perplexity": perplexity,
            "times": clock.total(),
            "pipeline_times": {} if run is None else dict(run.timings),
        }
        if job.output.results is not None:
            from ..io_utils import atomic_write_json  # noqa: PLC0415

            atomic_write_json(job.output.results, results)
    return results


def settings_used(job: PruneJob, seqlen: int, eval_seqlen: int) -> dict:
    """The results file's "settings": the values the run used. Calibration settings are None for
    a dense run (it reads no calibration), the evaluation window None without an evaluation, the
    diagnostic's token sample None when it took every token (or did not run)."""
    record = job.settings_record() | {"seqlen": seqlen, "eval_seqlen": eval_seqlen}
    sample = job.pipeline.recon_error_tokens  # the diagnostic's T' = min(S·L, N); None: every token
    if sample is not None and sample >= job.inputs.nsamples * seqlen:
        record["recon_error_tokens"] = None
    if job.spec.method == "dense" or not job.pipeline.recon_error:
        record["recon_error_tokens"] = None
    if job.spec.method == "dense":
        record.update(nsamples=None, seqlen=None, seed=None)
    if job.evaluation.eval_dataset is None:
        record["eval_seqlen"] = None
    return record


def check_eval_tokens(tokens: np.ndarray, seqlen: int, model, job: PruneJob) -> None:
    """The evaluation text gives at least one window of ``seqlen`` tokens, every id in the
    model's vocabulary (the windows evaluated: at most --eval-max-windows of them)."""
    from .. import model as model_lib  # noqa: PLC0415

    n_windows = len(tokens) // seqlen
    if n_windows == 0:
        raise UserError(f"--eval-dataset {job.evaluation.eval_dataset} has {len(tokens)} tokens, "
                        f"fewer than one window of {seqlen}")
    if job.evaluation.eval_max_windows is not None:
        n_windows = min(n_windows, job.evaluation.eval_max_windows)
    used = np.asarray(tokens[: n_windows * seqlen]).reshape(n_windows, seqlen)
    model_lib.check_tokens(model.config, used, "evaluation tokens", job.evaluation.eval_dataset)


def eval_disk_needs(job: PruneJob, config, tokens: np.ndarray, seqlen: int) -> list[tuple[Path, int, str]]:
    """The evaluation's hidden states [W, L, D] go to a temporary file when large (evaluate.py)."""
    import tempfile  # noqa: PLC0415

    from .. import evaluate  # noqa: PLC0415

    n_windows = len(tokens) // seqlen
    if job.evaluation.eval_max_windows is not None:
        n_windows = min(n_windows, job.evaluation.eval_max_windows)
    nbytes = n_windows * seqlen * config.hidden_size * np.dtype(job.pipeline.dtype).itemsize
    if nbytes <= evaluate.MEMMAP_BYTES:
        return []
    return [(Path(tempfile.gettempdir()), nbytes, f"--eval-dataset: the hidden states of {n_windows} windows "
                                                   "(a temporary file)")]


def check_evaluate_save(job: PruneJob, model, run, eval_tokens, eval_seqlen: int, clock: Timer) -> tuple[dict, dict]:
    """(sparsity check, perplexity) of the pruned model (the dense one when ``run`` is None);
    saves it when asked."""
    from .. import model as model_lib  # noqa: PLC0415

    store, masks = (model.store, {}) if run is None else (run.weights_store(), run.mask_map())
    per_layer = run.profile["layer_sparsities"] if run is not None and run.profile else None
    sparsity = sparsity_check(store, masks, job.spec.sparsity, per_layer)
    perplexity = {}
    if eval_tokens is not None:
        with clock("eval"):
            pruned_model = model_lib.load_model(model.path, store=store)
            perplexity["dense" if run is None else "pruned"] = measure_perplexity(pruned_model, eval_tokens,
                                                                                  eval_seqlen, job)
    if job.output.save_model is not None:
        from ..save import save_pruned_model  # noqa: PLC0415

        with clock("save"):
            save_pruned_model(model.path, job.output.save_model, store, masks, overwrite=job.output.overwrite)
    return sparsity, perplexity


def fetch_model(inputs: Inputs) -> Path:
    if inputs.fetch_alias is None:
        return inputs.model_dir
    from ..demo_model import fetch_demo_model  # noqa: PLC0415

    return Path(fetch_demo_model(inputs.fetch_alias, progress=lambda line: print(line, file=sys.stderr)))


def resolve_seqlen(requested: int | None, config, flag: str) -> int:
    """The requested length, or DEFAULT_SEQLEN capped at the model's positions."""
    if requested is None:
        return min(DEFAULT_SEQLEN, config.max_positions)
    if requested > config.max_positions:
        raise UserError(f"{flag} {requested} exceeds the model's {config.max_positions} positions")
    return requested


def load_calibration(inputs: Inputs, model, seqlen: int) -> np.ndarray:
    """Calibration tokens [S, L]: from --calibration-tokens, else sampled from the text."""
    from .. import data  # noqa: PLC0415

    if inputs.calibration_tokens is not None:
        tokens = data.load_calibration_tokens(inputs.calibration_tokens, model.config.vocab_size,
                                              model.config.max_positions)
    else:
        path = inputs.calibration or Path(data.BUNDLED_CALIBRATION)
        tokenizer = data.load_tokenizer(model.path)
        tokens = data.calibration_windows(tokenizer, path, inputs.nsamples, seqlen, inputs.seed)
    return check_tokens(model.config, tokens, "calibration tokens", inputs.calibration_tokens or inputs.calibration)


def load_eval_tokens(evaluation: Evaluation, model_dir: Path, eval_seqlen: int | None = None) -> np.ndarray:
    """The evaluation text's ids; with --eval-max-windows (and ``eval_seqlen``), only as many as
    those windows use: the text is read no further."""
    from .. import data  # noqa: PLC0415

    limit = None
    if evaluation.eval_max_windows is not None and eval_seqlen is not None:
        limit = evaluation.eval_max_windows * eval_seqlen
    return data.eval_tokens(data.load_tokenizer(model_dir), evaluation.eval_dataset, limit)


def profile_record(settings, profile: dict | None) -> dict:
    """The results file's 'profile': kind, OWL settings (``settings``, None for uniform),
    per-layer outlier ratios and sparsities."""
    if settings is None or profile is None:
        return {"kind": "uniform"}
    return {"kind": "owl", "m": settings.m, "lambda": settings.lam, "budget": settings.budget, **profile}


@contextlib.contextmanager
def run_directory(job: PruneJob, model, calib_tokens: np.ndarray | None):
    """Hold this run's directory (a ``cache.RunClaim``; None for the dense model, which has none)
    from before anything in it is read until the results are written.

    On success it is removed (unless --keep-cache). When an input is refused (``UserError``: a
    rerun would fail the same way) a directory that held nothing but this process's work is
    removed too. Otherwise (an environment error such as a full disk, an interruption, or a
    directory that holds an earlier run's layers) it is kept, less its temporary files, so that
    the same command resumes. A process refused the directory (another one uses it) removes
    nothing: it never got it.
    """
    from .. import cache  # noqa: PLC0415
    from ..io_utils import os_error_text  # noqa: PLC0415

    if job.spec.method == "dense":
        yield None
        return
    out = job.output
    run_dir = out.run_dir or default_run_dir(model, calib_tokens, job.pipeline)
    with cache.run_lock(run_dir) as claim:
        report_existing_run(claim, out.quiet)
        try:
            yield claim
        except cache.RunDirectoryError:
            raise  # the directory itself is refused: its message says what to do with it
        except UserError as exc:
            if claim.fresh and not out.keep_cache:
                claim.remove()
                raise
            raise UserError(f"{exc}; {kept(claim)}") from None
        except OSError as exc:  # disk full, a file-size limit, permissions: fix and rerun
            raise UserError(f"{os_error_text(exc)}; {kept(claim)}") from None
        except BaseException:  # interrupted, or a bug: keep what is finished
            print(f"dsnot-ref: {kept(claim)}", file=sys.stderr)
            raise
        if not out.keep_cache:
            claim.remove()


def kept(claim) -> str:
    """Remove the temporaries of a run that stops early; the line that says its directory stays."""
    from .. import cache  # noqa: PLC0415

    claim.remove_temporaries()
    size = cache.cache_size_bytes(claim.run_dir) / 2**20 if claim.run_dir.is_dir() else 0.0
    return (f"run directory kept: {claim.run_dir} ({claim.layers_done()} layers done, {size:.1f} MiB); "
            "rerun the same command to continue")


def prune(job: PruneJob, model, calib_tokens: np.ndarray, run_dir: Path):
    """Run the pipeline with a layer progress bar and one summary line per layer (stderr)."""
    from .. import pipeline  # noqa: PLC0415

    settings, out = job.pipeline, job.output
    bar = progress_bar(out.quiet, total=model.config.num_layers, desc="layers", unit="layer")
    chunks = progress_bar(out.quiet, total=1, desc="chunks", unit="chunk", position=1)

    def chunk_progress(done: int, total: int, message: str) -> None:
        chunks.total, chunks.n = total, done
        chunks.set_description_str(f"layer {bar.n}: {message}", refresh=False)
        chunks.refresh()

    def progress(event: pipeline.LayerProgress) -> None:
        if event.diagnostics is not None:
            emit(bar, layer_summary(event.diagnostics), out.quiet)
        bar.n = event.done
        bar.refresh()

    try:
        return pipeline.prune_model(model, calib_tokens, settings, run_dir, progress=progress,
                                    keep_cache=out.keep_cache, chunk_progress=chunk_progress)
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


def report_existing_run(claim, quiet: bool) -> None:
    """Say so (unless quiet) when a run directory left by an earlier (killed) run is about to be
    resumed."""
    from .. import cache  # noqa: PLC0415

    if claim.earlier is not None and not quiet:
        size = cache.cache_size_bytes(claim.run_dir) / 2**20
        print(f"dsnot-ref: found a run directory left by an earlier run: {claim.run_dir} ({size:.1f} MiB, "
              f"{claim.earlier.get('layers_done', 0)} of {claim.earlier.get('num_layers', '?')} layers done); "
              "resuming", file=sys.stderr)


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
    adjusted = [d for d in subs if d.get("refined") and "eps_before" in d] or [d for d in subs if "eps_before" in d]
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
    """The fraction pruned of one sublayer (prune_linear's "sparsity")."""
    return float(d["sparsity"])


def layer_rows(diagnostics: list[dict], dsnot_ran: bool) -> list[dict]:
    """Pipeline diagnostics -> one flat row per linear sublayer (the results file's 'layers').

    ``dsnot`` is True for a sublayer DSnoT (or SparseSwaps) adjusted (not skipped by --skip-layer).
    """
    rows = []
    for layer in diagnostics:
        for sub, d in layer["sublayers"].items():
            row = {"name": f"{layer['layer']}.{sub}", "layer": layer["layer"], "sublayer": sub}
            row["sparsity"] = sublayer_sparsity(d)
            row["dsnot"] = bool(dsnot_ran and d.get("refined"))
            row.update({k: v for k, v in d.items() if k != "refined"})
            rows.append(row)
    return rows


def sparsity_check(store, masks: dict[str, np.ndarray], requested: float, requested_per_layer=None) -> dict:
    """The actual fraction of zeros of every pruned linear weight (read back from the weights),
    overall and per decoder layer (all its linear weights together); with a per-layer profile,
    also the sparsity each layer was asked for."""
    per_layer, zeros, total = {}, 0, 0
    by_layer: dict[int, list[int]] = {}  # decoder layer -> [zeros, weights]
    for name in masks:
        w = store.get(name, dtype=np.float32)  # [R, C]
        n_zero = int(np.count_nonzero(w == 0))
        per_layer[name] = n_zero / w.size
        zeros, total = zeros + n_zero, total + w.size
        counts = by_layer.setdefault(decoder_layer_index(name), [0, 0])
        counts[0], counts[1] = counts[0] + n_zero, counts[1] + w.size
    overall = zeros / total if total else 0.0
    check = {"requested": requested, "overall": overall, "per_layer": per_layer,
             "per_decoder_layer": [z / n for _, (z, n) in sorted(by_layer.items())]}
    if requested_per_layer is not None:
        check["requested_per_decoder_layer"] = [float(p) for p in requested_per_layer]
    return check


def decoder_layer_index(name: str) -> int:
    """3 for 'model.layers.3.self_attn.q_proj.weight' (or 'model.decoder.layers.3. ...')."""
    match = re.search(r"\.layers\.(\d+)\.", name)
    if match is None:
        raise ValueError(f"{name} is not a decoder layer weight")
    return int(match.group(1))


def measure_perplexity(model, tokens: np.ndarray, seqlen: int, job: PruneJob) -> dict:
    from .. import evaluate  # noqa: PLC0415
    from ..backend import get_backend  # noqa: PLC0415

    if len(tokens) // seqlen == 0:
        raise UserError(f"--eval-dataset {job.evaluation.eval_dataset} has {len(tokens)} tokens, "
                        f"fewer than one window of {seqlen}")
    bar = progress_bar(job.output.quiet, desc="perplexity", unit="step")

    def progress(done: int, total: int, message: str = "") -> None:  # total: windows × (layers + 1)
        bar.total, bar.n = total, done
        bar.refresh()

    try:
        result = evaluate.perplexity(
            model, tokens, seqlen, dtype=np.dtype(job.pipeline.dtype).type,
            max_windows=job.evaluation.eval_max_windows, progress=progress, xp=get_backend(job.pipeline.backend),
        )
    finally:
        bar.close()
    if job.evaluation.eval_max_windows is not None:
        result["n_tokens_in_text"] = None  # the text is read only as far as the windows need
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in result.items()}


def calibration_record(inputs: Inputs, tokens: np.ndarray | None) -> dict:
    if tokens is None:
        return {}
    from .. import data  # noqa: PLC0415

    source = inputs.calibration_tokens or inputs.calibration or "bundled"
    return {
        "source": str(source),
        "n_samples": int(tokens.shape[0]),
        "seqlen": int(tokens.shape[1]),
        "seed": inputs.seed,
        "tokens_sha256": data.tokens_hash(tokens),
    }


def versions() -> dict:
    from .. import __version__  # noqa: PLC0415

    return {"dsnot_ref": __version__, "numpy": np.__version__, "python": platform.python_version()}


def print_outcome(results: dict) -> None:
    """The results on stdout: perplexities and the time of each phase."""
    from ..report import summary_lines  # noqa: PLC0415

    print("\n".join(summary_lines(results)))
