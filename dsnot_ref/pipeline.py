"""Layer-by-layer calibration and pruning (docs/dsnot.md §5): the one orchestrator.

    tokens [S, L] --embed--> acts/layer_000.npy [S, L, D]
    for each decoder layer i:
        load only layer i's weights (onto the backend's device)
        run it over the S sequences, B = chunk_size at a time, gathering the input statistics
            of every linear sublayer in the same pass (q/k/v share one input, gate/up another)
        prune every linear sublayer (methods.prune_linear)
        run the pruned layer over the chunks again -> acts/layer_{i+1}.npy
        write its pruned weights, masks and diagnostics; mark the layer done in the manifest

Each pass over the chunks runs W = ``workers`` chunks at once, each on a thread of its own with
the BLAS on one thread (dsnot_ref/threads.py), and merges what they return in chunk order, so
the statistics are summed exactly as in a plain loop over the chunks.

Resident memory is one layer's weights, W + 1 chunks of activations and the statistics (plus the
Hessians when asked for), whatever the depth of the model and the number of sequences S: the
activations live on disk (dsnot_ref.cache). Cost of the methods that need the Hessian
(SparseGPT, DSnoT's exact variant, SparseSwaps): a C×C float64 Hessian per distinct sublayer
input, e.g. for LLaMA 3·D² + F² doubles per layer (7B: ~0.97 GB for down_proj's F = 11008
alone) and a C×C matrix product per token chunk, in float64 or float32 as the refiner's
``StatsNeeds.gram`` says (stats.py and docs/swaps.md say why float32 is accurate enough where it
is used). The pipeline asks ``methods.statistics_needed(spec)`` what to gather; it decides
nothing per method.

The reconstruction-error diagnostic (``recon_error``) is an observer (dsnot_ref/diagnostics.py):
it watches the statistics pass through the same capture hook and each pruned sublayer through
an after-pruning call, keeps its own token sample (T' = min(S·L, ``recon_error_tokens``)) and
adds ``recon_before`` / ``recon_after`` to the diagnostics; its seconds are the timings'
"diagnostics". Off, none of it runs.

Skipping DSnoT (``skip_layer``, ``skip_sub_layer``, as the released code's flags): every linear
sublayer belongs to one group, ``"self_attn"`` (names starting with ``self_attn.``) or
``"mlp"`` (everything else: LLaMA's ``mlp.gate_proj/up_proj/down_proj`` and OPT's ``fc1``/``fc2``,
as the released lib/prune_opt.py treats them). ``skip_layer`` names a group (None or "no_skip":
none); ``skip_sub_layer`` names a sublayer by its last name component ("q_proj", "fc1"). A
skipped sublayer keeps its initial mask (``apply_refiner=False``).

Layerwise sparsity (``profile``: OWL, docs/owl.md): before layer 0, ``layer_profile.owl_profile``
makes one dense pass over the same calibration windows, streamed the same way, and gives every
layer its own sparsity; layer i is pruned with a copy of ``spec`` that carries it.

Resuming: the run directory's manifest records the inputs and the number of finished layers.
Calling ``prune_model`` again with the same model, tokens and settings after a crash continues
at the first unfinished layer; since every layer reads its inputs from disk in both cases, the
result is bit-for-bit the same as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import cache, layer_profile
from . import model as model_lib
from .backend import array_module, get_backend, to_device, to_numpy
from .data import tokens_hash
from .diagnostics import ReconObserver
from .errors import UserError
from .io_utils import atomic_write_json
from .methods import PruneSpec, prune_linear, statistics_needed
from .methods.owl import OwlSettings
from .stats import StatsAccumulator
from .threads import chunk_workers, ordered_map, usable_cores
from .timing import Timer
from .validate import apart_from_model
from .weights import MaskFiles, OverlayStore, read_mask_file, save_safetensors_atomic, write_mask_file

DTYPES = {"float32": np.float32, "float64": np.float64}
SAFETENSORS_CODES = {"float32": "F32", "float64": "F64"}
SKIP_GROUPS = ("self_attn", "mlp")
# Linear sublayers that read the same tensor: statistics are gathered once, for the first.
SHARED_INPUTS = ({"q_proj", "k_proj", "v_proj"}, {"gate_proj", "up_proj"})
TIMING_KEYS = ("forward", "stats", "prune", "io", "diagnostics")



@dataclass(frozen=True)
class LayerProgress:
    """What ``prune_model`` reports after embedding the calibration tokens and after each layer."""

    done: int                       # decoder layers finished
    total: int                      # decoder layers in the model
    layer: int | None = None        # the layer just finished; None: the tokens were just embedded
    diagnostics: dict | None = None  # that layer's JSON-ready diagnostics (as written to the run dir)


Progress = Callable[[LayerProgress], None]
# (steps done, steps in all, what is running: "statistics" / "outputs" of a layer's two passes
# over the chunks, or OWL's dense pass, one step per layer)
ChunkProgress = Callable[[int, int, str], None]


def _no_chunk_progress(done: int, total: int, message: str) -> None:
    pass


@dataclass(frozen=True)
class PipelineSettings:
    spec: PruneSpec
    skip_layer: str | None = "mlp"  # "mlp" | "self_attn" | None ("no_skip" means None)
    skip_sub_layer: str | None = None  # last name component, e.g. "q_proj", "fc1"
    chunk_size: int = 4  # B: sequences per forward chunk
    workers: int = field(default_factory=usable_cores)  # W: chunks run at once (threads.py)
    dtype: str = "float32"  # compute and activation-cache dtype
    backend: str = "numpy"  # "numpy" | "cupy"
    recon_error: bool = False  # run the reconstruction-error observer (diagnostics.py; --recon-error)
    recon_error_tokens: int | None = 2048  # the observer's token sample T'; None: every token
    profile: OwlSettings | None = None  # None: every layer at spec.sparsity; else OWL (docs/owl.md)

    def __post_init__(self):
        if self.profile is not None and self.spec.nm is not None:
            raise UserError("the OWL sparsity profile is for unstructured sparsity; N:M stays uniform")
        if self.skip_layer not in (None, "no_skip", *SKIP_GROUPS):
            raise UserError(f"skip_layer must be one of no_skip, {', '.join(SKIP_GROUPS)}; got {self.skip_layer!r}")
        if not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise UserError(f"chunk size must be a positive integer, got {self.chunk_size!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise UserError(f"workers must be a positive integer, got {self.workers!r}")
        if self.recon_error_tokens is not None and (
                not isinstance(self.recon_error_tokens, int) or self.recon_error_tokens < 1):
            raise UserError(f"recon error tokens must be a positive integer, got {self.recon_error_tokens!r}")
        if self.dtype not in DTYPES:
            raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")


@dataclass
class PruneRun:
    """What a pruning run produced, on disk in ``run_dir``.

    ``diagnostics[i]``: layer i's JSON (per sublayer: prune_linear's diagnostics and whether
    DSnoT ran; and the layer's timings). ``timings``: seconds spent by this call
    (layers finished by an earlier, interrupted call are not counted).
    """

    model: object
    run_dir: Path
    diagnostics: list[dict]
    layer_files: list[Path]
    mask_files: list[Path]
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIMING_KEYS, 0.0))
    keep_cache: bool = False
    profile: dict | None = None  # OWL: outlier_ratios, layer_params, layer_sparsities, seconds

    def weights_store(self) -> OverlayStore:
        """The pruned model: the input checkpoint overlaid with the pruned layer files (lazy)."""
        return OverlayStore(self.model.store, list(self.layer_files))

    def masks(self) -> Iterator[tuple[str, np.ndarray]]:
        """(full tensor name, pruned [R, C] bool) for every pruned weight, one layer at a time."""
        for path in self.mask_files:
            yield from read_mask_file(path).items()

    def mask_map(self) -> MaskFiles:
        """Full tensor name -> pruned [R, C] bool, read from the layer files when asked."""
        return MaskFiles(self.mask_files)

    def final_hidden(self) -> np.ndarray:
        """Hidden states after the last decoder layer, [S, L, D] (read-only map; needs keep_cache)."""
        path = cache.activation_path(self.run_dir, len(self.layer_files))
        if not path.exists():
            raise UserError(f"final hidden states are not in {self.run_dir}; rerun with keep_cache")
        return cache.open_activations(path)

    def close(self) -> None:
        """Remove the run directory, unless ``keep_cache``. Call once the result is saved."""
        if not self.keep_cache:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> PruneRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- checks at the edge ---------------------------------------------------------------------


def settings_record(settings: PipelineSettings) -> dict:
    """The settings as the manifest stores them ("no_skip" and None are the same choice)."""
    record = dataclasses.asdict(settings)
    if record["skip_layer"] == "no_skip":
        record["skip_layer"] = None
    if record["skip_sub_layer"] == "no_skip":
        record["skip_sub_layer"] = None
    return record


# --- which sublayers share an input, which skip DSnoT ------------------------------------------


def input_leaders(names: list[str]) -> dict[str, str]:
    """Sublayer name -> the sublayer whose captured input it shares (itself if none).

    q/k/v projections of one attention (and gate/up of one MLP) read the same tensor; the first
    of each set in forward order is the leader whose statistics the others reuse.
    """
    leaders: dict[str, str] = {}
    first_of: dict[tuple[str, int], str] = {}
    for name in names:
        parent, _, last = name.rpartition(".")
        group = next((k for k, members in enumerate(SHARED_INPUTS) if last in members), None)
        if group is None:
            leaders[name] = name
        else:
            leaders[name] = first_of.setdefault((parent, group), name)
    return leaders


def skip_group(name: str) -> str:
    """"self_attn" or "mlp": the released code's grouping of a layer-relative sublayer name."""
    return "self_attn" if name.startswith("self_attn.") else "mlp"


def applies_refiner(name: str, settings: PipelineSettings) -> bool:
    """Whether sublayer ``name`` is refined after its initial mask (the skip rules above)."""
    if settings.skip_layer not in (None, "no_skip") and skip_group(name) == settings.skip_layer:
        return False
    return settings.skip_sub_layer in (None, "no_skip") or name.rpartition(".")[2] != settings.skip_sub_layer


# --- one layer ------------------------------------------------------------------------------


def chunk_starts(n_seq: int, chunk_size: int) -> range:
    return range(0, n_seq, chunk_size)


def read_inputs(in_path: Path, start: int, settings: PipelineSettings, xp):
    """Sequences ``start .. start + chunk_size`` of a layer's inputs, on the device: [B, L, D]."""
    chunk = cache.read_chunk(in_path, start, start + settings.chunk_size)
    return to_device(chunk.astype(DTYPES[settings.dtype], copy=False), xp)


class ChunkRecorder:
    """One chunk's ``capture`` callback for ``block_forward``, on the chunk's thread.

    Keeps what each watcher's ``reduce(name, x_in, chunk)`` makes of every distinct sublayer
    input, to be merged in chunk order on the pipeline's thread (``merge``), and the seconds each
    watcher took. Sublayers that share an input (``input_leaders``) are given to the watchers
    once, under the leader; the others are checked to have received the leader's very tensor.
    """

    def __init__(self, watchers: list, leaders: dict[str, str], chunk: int):
        self.watchers = watchers
        self.leaders = leaders
        self.chunk = chunk
        self.kept: list[tuple[int, str, object]] = []  # (watcher, leader, its part)
        self.seconds = [0.0] * len(watchers)
        self.leader_inputs: dict[str, object] = {}  # leader -> its input, until the chunk ends

    def __call__(self, name: str, x_in) -> None:  # x_in [B, L, C]
        leader = self.leaders[name]
        if leader != name:
            shared = self.leader_inputs[leader]
            if not (x_in is shared or bool(array_module(x_in).array_equal(x_in, shared))):
                raise RuntimeError(f"{name} was assumed to read the same input as {leader}")
            return
        self.leader_inputs[name] = x_in
        for k, watcher in enumerate(self.watchers):
            start = time.perf_counter()
            part = watcher.reduce(name, x_in, self.chunk)
            if part is not None:
                self.kept.append((k, name, part))
            self.seconds[k] += time.perf_counter() - start

    def end(self) -> None:
        """The chunk's forward pass is over: let go of its inputs."""
        self.leader_inputs.clear()

    def merge(self) -> None:
        """Hand every kept part to its watcher; the seconds it takes count as the watcher's."""
        for k, name, part in self.kept:
            start = time.perf_counter()
            self.watchers[k].merge(name, part)
            self.seconds[k] += time.perf_counter() - start
        self.kept.clear()


class StatsCapture:
    """The statistics' watcher of the capture: each distinct sublayer input goes to its
    accumulator, ``reduce`` on the chunk's thread and ``merge`` in chunk order (the two halves of
    ``stats.StatsAccumulator.update``)."""

    def __init__(self, names: list[str], n_cols: dict[str, int], with_hessian: bool,
                 hessian_products: str = "float64", moments: type | None = None):
        self.leaders = input_leaders(names)
        self.accumulators = {
            name: StatsAccumulator(n_cols[name], with_hessian=with_hessian, hessian_products=hessian_products,
                                   moments=moments)
            for name in names
            if self.leaders[name] == name
        }

    def reduce(self, name: str, x_in, chunk: int):  # x_in [B, L, C] of a leader
        return self.accumulators[name].reduce(x_in)

    def merge(self, name: str, part) -> None:
        self.accumulators[name].add(part)

    def finalize(self) -> dict:
        """name -> LinearStats for every sublayer (shared ones get the leader's object)."""
        by_leader = {leader: acc.finalize() for leader, acc in self.accumulators.items()}
        return {name: by_leader[leader] for name, leader in self.leaders.items()}


def over_chunks(work: Callable, merge: Callable, starts: range, settings: PipelineSettings, timer: Timer) -> None:
    """One pass over a layer's chunks: ``work(start)`` for every chunk, W = ``settings.workers``
    at a time on threads of their own (one at a time on a GPU), then ``merge(k, start, result)``
    on this thread in chunk order.

    ``work`` returns (result, {step: seconds}) and ``merge`` returns {step: seconds}; since the
    chunks overlap in time, the steps share the pass's wall time in proportion to those seconds
    (so a layer's timings add up to its wall time, whatever W).
    """
    spent = Timer()  # the steps' own seconds, summed over the threads
    wanted = 1 if settings.backend == "cupy" else min(settings.workers, len(starts))
    with chunk_workers(wanted) as workers:
        for k, (start, (result, seconds)) in enumerate(zip(starts, ordered_map(work, starts, workers))):
            spent.add(seconds)
            spent.add(merge(k, start, result))
    timer.add_shares(spent.seconds, spent.elapsed())


def gather_stats(config, layer: dict, in_path: Path, settings: PipelineSettings, xp, timer: Timer,
                 tick: ChunkProgress = _no_chunk_progress, observer: ReconObserver | None = None) -> dict:
    """Run the dense layer over every chunk; name -> LinearStats for every linear sublayer.
    ``observer`` (the diagnostic) watches every distinct sublayer input beside the statistics."""
    names = model_lib.linear_names(config)
    n_cols = {name: layer[f"{name}.weight"].shape[1] for name in names}  # C of each [R, C]
    needs = statistics_needed(settings.spec)  # what the method reads, G included when it reads one
    stats_capture = StatsCapture(names, n_cols, with_hessian=needs.gram is not None,
                                 hessian_products=needs.gram or "float64", moments=needs.moments)
    watchers = [stats_capture] if observer is None else [stats_capture, observer]
    steps = ["stats", "diagnostics"][: len(watchers)]  # whose seconds each watcher's are
    (n_seq, _, _), _ = cache.activation_info(in_path)
    starts = chunk_starts(n_seq, settings.chunk_size)

    def work(start: int):  # on a worker thread
        began = time.perf_counter()
        x = read_inputs(in_path, start, settings, xp)  # [B, L, D]
        read = time.perf_counter()
        recorder = ChunkRecorder(watchers, stats_capture.leaders, start // settings.chunk_size)
        model_lib.block_forward(config, layer, x, capture=recorder, output=False)  # inputs only
        recorder.end()
        forward = time.perf_counter() - read - sum(recorder.seconds)
        return recorder, {"io": read - began, "forward": forward}

    def merge(k: int, start: int, recorder: ChunkRecorder) -> dict:
        recorder.merge()
        tick(k + 1, 2 * len(starts), "statistics")
        return dict(zip(steps, recorder.seconds))

    over_chunks(work, merge, starts, settings, timer)
    return stats_capture.finalize()


def make_observer(config, layer: dict, in_path: Path, settings: PipelineSettings) -> ReconObserver | None:
    """The reconstruction-error observer of one layer, or None when the diagnostic is off."""
    if not settings.recon_error:
        return None
    names = model_lib.linear_names(config)
    (n_seq, seq_len, _), _ = cache.activation_info(in_path)
    return ReconObserver(input_leaders(names), {name: layer[f"{name}.weight"].shape[1] for name in names},
                         n_seq * seq_len, settings.recon_error_tokens,
                         method_gram=statistics_needed(settings.spec).gram is not None,
                         mask_error=settings.spec.weight_update.mode != "none")


def prune_sublayers(layer: dict, names: list[str], stats: dict, settings: PipelineSettings,
                    observer: ReconObserver | None = None) -> tuple[dict, dict, dict]:
    """Prune every linear sublayer of one layer; ``observer`` (the diagnostic) is told of each.

    Returns (new weights {"name.weight": [R, C]}, masks {"name.weight": pruned [R, C]},
    diagnostics {name: dict}).
    """
    weights, masks, diagnostics = {}, {}, {}
    for name in names:
        apply = applies_refiner(name, settings)
        weight = layer[f"{name}.weight"]
        result = prune_linear(weight, stats[name], settings.spec, apply_refiner=apply)
        weights[f"{name}.weight"] = result.weight
        masks[f"{name}.weight"] = result.pruned
        diagnostics[name] = {**jsonable(result.diagnostics), "refined": apply}
        if observer is not None:
            diagnostics[name].update(observer.after_pruning(name, weight, result, stats[name]))
    return weights, masks, diagnostics


def jsonable(obj):
    """NumPy/CuPy scalars and small arrays -> plain Python, for JSON."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "shape"):  # NumPy scalar or array, CuPy array
        return to_numpy(obj).tolist()
    return obj


def write_next_inputs(config, layer: dict, in_path: Path, out_path: Path, settings: PipelineSettings, xp,
                      timer: Timer, tick: ChunkProgress = _no_chunk_progress) -> None:
    """Run the (pruned) layer over every chunk of its inputs and write its outputs to disk."""
    shape, _ = cache.activation_info(in_path)
    starts = chunk_starts(shape[0], settings.chunk_size)

    def work(start: int):  # on a worker thread
        began = time.perf_counter()
        x = read_inputs(in_path, start, settings, xp)  # [B, L, D]
        read = time.perf_counter()
        y = to_numpy(model_lib.block_forward(config, layer, x))  # [B, L, D] -> [B, L, D]
        return y, {"io": read - began, "forward": time.perf_counter() - read}

    with cache.ActivationWriter(out_path, shape, DTYPES[settings.dtype]) as writer:
        def merge(k: int, start: int, y) -> dict:
            began = time.perf_counter()
            writer.write(start, y)
            tick(len(starts) + k + 1, 2 * len(starts), "outputs")
            return {"io": time.perf_counter() - began}

        over_chunks(work, merge, starts, settings, timer)


def write_embeddings(model, tokens: np.ndarray, out_path: Path, settings: PipelineSettings, xp, timer: Timer) -> None:
    """Layer-0 inputs: the embedded calibration tokens, [S, L] -> [S, L, D] on disk."""
    n_seq, seq_len = tokens.shape
    dtype = DTYPES[settings.dtype]
    with timer("io"):
        globals_ = model_lib.load_globals(model, dtype, xp)  # embeddings (+ head): read once
    with cache.ActivationWriter(out_path, (n_seq, seq_len, model.config.hidden_size), dtype) as writer:
        for start in chunk_starts(n_seq, settings.chunk_size):
            with timer("forward"):
                chunk = to_device(tokens[start : start + settings.chunk_size], xp)  # [B, L]
                x = to_numpy(model_lib.embed_with(model.config, globals_, chunk))  # [B, L, D]
            with timer("io"):
                writer.write(start, x)


def prune_one_layer(model, i: int, settings: PipelineSettings, run_dir: Path, xp,
                    tick: ChunkProgress = _no_chunk_progress) -> dict:
    """Calibrate, prune and write layer i; returns its diagnostics (also written to disk)."""
    config = model.config
    timer = Timer(TIMING_KEYS)
    dtype = DTYPES[settings.dtype]
    names = model_lib.linear_names(config)
    prefix = model_lib.layer_prefix(config, i)
    in_path = cache.activation_path(run_dir, i)

    with timer("io"):
        layer = model_lib.load_layer(model, i, dtype=dtype, xp=xp)
    observer = make_observer(config, layer, in_path, settings)
    stats = gather_stats(config, layer, in_path, settings, xp, timer, tick, observer)
    watched = 0.0 if observer is None else observer.seconds
    with timer("prune"):
        new_weights, masks, sub_diagnostics = prune_sublayers(layer, names, stats, settings, observer)
    if observer is not None:  # its seconds after pruning are the diagnostic's, not the pruning's
        timer.seconds["diagnostics"] += observer.seconds - watched
        timer.seconds["prune"] -= observer.seconds - watched
    del stats, observer
    write_next_inputs(config, {**layer, **new_weights}, in_path, cache.activation_path(run_dir, i + 1), settings, xp,
                      timer, tick)
    with timer("io"):
        save_safetensors_atomic(
            cache.layer_weights_path(run_dir, i),
            {prefix + k: to_numpy(w).astype(dtype, copy=False) for k, w in new_weights.items()},
            dtype=SAFETENSORS_CODES[settings.dtype],
        )
        write_mask_file(cache.layer_masks_path(run_dir, i), {prefix + k: to_numpy(m) for k, m in masks.items()})
    diagnostics = {"layer": i, "sublayers": sub_diagnostics, "timings": dict(timer.seconds)}
    atomic_write_json(cache.layer_diagnostics_path(run_dir, i), diagnostics)
    return diagnostics


# --- the whole model ------------------------------------------------------------------------


def prune_model(
    model,
    calib_tokens,
    settings: PipelineSettings,
    run_dir,
    progress: Progress | None = None,
    *,
    keep_cache: bool = False,
    chunk_progress: ChunkProgress | None = None,
) -> PruneRun:
    """Prune every decoder layer of ``model`` on ``calib_tokens [S, L]``; resumable.

    ``run_dir`` holds the activations, the pruned layers and the manifest. A run directory left
    by an interrupted call with the same model, tokens and settings is continued; one made from
    anything else is refused (UserError). The activation files are deleted at the end unless
    ``keep_cache``; ``PruneRun.close()`` removes the rest once the result is saved.
    ``progress(LayerProgress)`` is called after the embedding and after each layer;
    ``chunk_progress(done, total, message)`` after each chunk of a layer's two passes over the
    calibration data (statistics, then the pruned layer's outputs).
    """
    run_dir = Path(run_dir)
    config = model.config
    tokens = model_lib.check_tokens(config, calib_tokens, "calibration tokens", model.path)
    apart_from_model(run_dir, "run directory", model.path)
    xp = get_backend(settings.backend)
    with cache.run_lock(run_dir):
        run = run_layers(model, tokens, settings, run_dir, xp, progress, chunk_progress or _no_chunk_progress)
        if not keep_cache:
            shutil.rmtree(run_dir / "acts", ignore_errors=True)
    run.keep_cache = keep_cache
    return run


def run_layers(model, tokens: np.ndarray, settings: PipelineSettings, run_dir: Path, xp, progress,
               tick: ChunkProgress = _no_chunk_progress) -> PruneRun:
    """Open (or resume) the run in ``run_dir`` and process every unfinished layer."""
    config = model.config
    n_layers = config.num_layers
    manifest = cache.open_run(
        run_dir, cache.model_identity(model.path), tokens_hash(tokens), settings_record(settings), n_layers
    )
    timer = Timer(TIMING_KEYS)  # this call's seconds: the embedding and each layer's own timer
    done = manifest["layers_done"]
    if done == 0 and not cache.activation_path(run_dir, 0).exists():
        write_embeddings(model, tokens, cache.activation_path(run_dir, 0), settings, xp, timer)
        if progress:
            progress(LayerProgress(done=0, total=n_layers))
    for j in range(done):  # left behind when a run was killed just after marking layer j done
        cache.activation_path(run_dir, j).unlink(missing_ok=True)
    if done < n_layers and not cache.activation_path(run_dir, done).exists():
        raise UserError(f"run directory {run_dir} lacks the inputs of layer {done}; delete it and rerun")
    profile = None
    if settings.profile is not None:
        profile = layer_profile.owl_profile(model, run_dir, settings.spec.sparsity, settings.profile,
                                            settings.chunk_size, DTYPES[settings.dtype], xp, tick)
    for i in range(done, n_layers):
        diagnostics = prune_one_layer(model, i, layer_settings(settings, profile, i), run_dir, xp, tick)
        manifest = cache.mark_layers_done(run_dir, manifest, i + 1)
        cache.activation_path(run_dir, i).unlink(missing_ok=True)  # no longer needed
        timer.add(diagnostics["timings"])
        if progress:
            progress(LayerProgress(done=i + 1, total=n_layers, layer=i, diagnostics=diagnostics))
    return PruneRun(
        model=model,
        run_dir=run_dir,
        diagnostics=[read_json(cache.layer_diagnostics_path(run_dir, i)) for i in range(n_layers)],
        layer_files=[cache.layer_weights_path(run_dir, i) for i in range(n_layers)],
        mask_files=[cache.layer_masks_path(run_dir, i) for i in range(n_layers)],
        timings=timer.seconds,
        profile=profile,
    )


def layer_settings(settings: PipelineSettings, profile: dict | None, i: int) -> PipelineSettings:
    """The settings of layer i: its own sparsity under a profile (one PruneSpec per layer)."""
    if profile is None:
        return settings
    spec = dataclasses.replace(settings.spec, sparsity=profile["layer_sparsities"][i])
    return dataclasses.replace(settings, spec=spec)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
