"""Golden fixtures: small DSnoT and SparseSwaps problems with their expected masks and traces.

A golden file is one ``.npz`` holding one case: the inputs of a refiner (``methods.refiners``) (weight,
statistics, initial mask, settings; for the exact variant and SparseSwaps also G = Σ x xᵀ) and,
optionally, its outputs (final mask, ε trace, active flags, swaps; exact variant also the E_r
trace; SparseSwaps: no ε trace, the E_r trace instead). The format is described in
``data/golden/FORMAT.md`` (version 3; versions 1 and 2 are still read). Another implementation
(a GPU kernel, a port) reads the inputs, writes its own outputs in the same format, and
``golden_check.compare_outputs`` / ``dsnot-ref golden check`` say whether it agrees with ours.

Reading and writing are the I/O edge (UserError naming file and key); ``run_case`` is pure.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import validate
from .backend import to_device, to_numpy
from .errors import UserError
from .io_utils import atomic_path
from .methods.contract import LayerProblem
from .methods.dsnot.common import DSnoTSettings, arithmetic_dtype
from .methods.refiners import make_refiner
from .methods.scores import initial_mask, magnitude_score, wanda_score
from .methods.swaps import SwapSettings

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)   # 1: no gram, no exact-variant settings, no error_trace; 2: no swaps
GOLDEN_DIR = Path(__file__).resolve().parents[1] / "data" / "golden"

INPUT_ARRAYS = ("weight", "seq_sum", "seq_sq", "var", "initial_score", "pruned0")
OPTIONAL_INPUT_ARRAYS = ("gram",)                      # required when variant is "exact" or "swaps"
SETTING_KEYS = ("variant", "max_cycle_time", "update_threshold", "pow_of_var_regrowing",
                "without_same_sign", "nm", "lookahead", "cycle_fraction", "on_reject")
SWAP_SETTING_KEYS = ("swap_max_iter", "swap_tol", "swap_window", "swap_refresh")  # variant "swaps" only
META_KEYS = ("format_version", "case", "description", "initial_method", "sparsity")
OUTPUT_KEYS = ("pruned", "eps_trace", "active_trace", "swaps", "cycles")  # no eps_trace for "swaps"
OPTIONAL_OUTPUT_KEYS = ("error_trace",)                # exact variant; required for "swaps"
SWAPS = "swaps"                 # the file's variant for the SparseSwaps refiner (methods/swaps.py)
GRAM_VARIANTS = ("exact", SWAPS)


@dataclass(frozen=True)
class GoldenCase:
    name: str
    weight: np.ndarray           # [R, C] float64
    seq_sum: np.ndarray          # [C] float64, (1/S) Σ_s Σ_t x
    seq_sq: np.ndarray           # [C] float64, (1/S) Σ_s Σ_t x²
    var: np.ndarray              # [C] float64, the variance this variant uses
    initial_score: np.ndarray    # [R, C] float64, score of the initial pruner
    pruned0: np.ndarray          # [R, C] bool, initial mask (True = pruned)
    settings: DSnoTSettings
    nm: tuple[int, int] | None
    sparsity: float
    initial_method: str
    description: str = ""
    gram: np.ndarray | None = None   # [C, C] float64, G = Σ_tokens x xᵀ (exact, swaps; not / S)
    swap_settings: SwapSettings | None = None  # SparseSwaps cases; then ``settings`` is unused

    @property
    def variant(self) -> str:
        """The file's ``variant``: the name of the case's refiner (methods/refiners.py), a DSnoT
        variant or "swaps"."""
        return SWAPS if self.swap_settings is not None else self.settings.variant

    @property
    def refiner_settings(self):
        """The settings the case's refiner is made with."""
        return self.swap_settings if self.swap_settings is not None else self.settings


@dataclass(frozen=True)
class GoldenOutputs:
    pruned: np.ndarray           # [R, C] bool, final mask
    eps_trace: np.ndarray | None  # [cycles+1, R] float64; None for SparseSwaps (no ε)
    active_trace: np.ndarray     # [cycles+1, R] bool
    swaps: np.ndarray            # [n, 4] int64 (row, grown column, pruned column, cycle or step)
    cycles: int                  # cycles run; SparseSwaps: the last step at which a row swapped
    error_trace: np.ndarray | None = None  # [cycles+1, R] float64, E_r = d_rᵀ G d_r (exact, swaps)


# --------------------------------------------------------------------------- running

def run_case(case: GoldenCase, xp=np) -> GoldenOutputs:
    """Our outputs for a case: its refiner from the registry (methods/refiners.py, the code
    ``prune_linear`` runs), with a trace, computed with array module ``xp`` (NumPy, or CuPy:
    inputs moved to the device, outputs brought back as NumPy arrays)."""
    if case.variant in GRAM_VARIANTS and case.gram is None:
        raise UserError(f"golden case {case.name!r}: variant {case.variant!r} needs 'gram'")
    weight, pruned0, seq_sum, seq_sq, var, initial_score, gram = (
        None if a is None else to_device(a, xp)
        for a in (case.weight, case.pruned0, case.seq_sum, case.seq_sq, case.var, case.initial_score, case.gram))
    problem = LayerProblem(weight, pruned0, seq_sum, seq_sq, var, gram, case.nm, initial_score)
    res = make_refiner(case.variant, case.refiner_settings).refine(problem, trace=True)
    return GoldenOutputs(pruned=to_numpy(res.pruned), eps_trace=res.trace.eps, active_trace=res.trace.active,
                         swaps=res.trace.swaps, cycles=res.cycles, error_trace=res.trace.error)


# --------------------------------------------------------------------------- files

def _scalar(value, dtype):
    return np.array(value, dtype=dtype)


def case_arrays(case: GoldenCase, outputs: GoldenOutputs | None = None) -> dict[str, np.ndarray]:
    """The arrays of a golden file (see data/golden/FORMAT.md)."""
    arrays = {
        "format_version": _scalar(FORMAT_VERSION, np.int64),
        "case": np.array(case.name), "description": np.array(case.description),
        "initial_method": np.array(case.initial_method), "sparsity": _scalar(case.sparsity, np.float64),
        "weight": case.weight.astype(np.float64), "seq_sum": case.seq_sum.astype(np.float64),
        "seq_sq": case.seq_sq.astype(np.float64), "var": case.var.astype(np.float64),
        "initial_score": case.initial_score.astype(np.float64), "pruned0": case.pruned0.astype(np.bool_),
        "variant": np.array(case.variant),
        "nm": np.array(case.nm if case.nm is not None else (0, 0), dtype=np.int64),
        **(swap_setting_arrays(case.swap_settings) if case.variant == SWAPS else dsnot_setting_arrays(case.settings)),
    }
    if case.gram is not None:
        arrays["gram"] = case.gram.astype(np.float64)
    if outputs is not None:
        arrays.update({
            "pruned": outputs.pruned.astype(np.bool_),
            "active_trace": outputs.active_trace.astype(np.bool_), "swaps": outputs.swaps.astype(np.int64),
            "cycles": _scalar(outputs.cycles, np.int64),
        })
        if outputs.eps_trace is not None:
            arrays["eps_trace"] = outputs.eps_trace.astype(np.float64)
        if outputs.error_trace is not None:
            arrays["error_trace"] = outputs.error_trace.astype(np.float64)
    return arrays


def dsnot_setting_arrays(s: DSnoTSettings) -> dict[str, np.ndarray]:
    return {
        "max_cycle_time": _scalar(s.max_cycle_time, np.int64),
        "update_threshold": _scalar(s.update_threshold, np.float64),
        "pow_of_var_regrowing": _scalar(s.pow_of_var_regrowing, np.float64),
        "without_same_sign": _scalar(s.without_same_sign, np.bool_),
        "lookahead": _scalar(s.lookahead, np.int64),
        "cycle_fraction": _scalar(np.nan if s.cycle_fraction is None else s.cycle_fraction, np.float64),
        "on_reject": np.array(s.on_reject),
    }


def swap_setting_arrays(s: SwapSettings) -> dict[str, np.ndarray]:
    """The search's settings under the CLI's names (--swap-max-iter …); block_rows and threads
    do not change the result and are not stored."""
    return {"swap_max_iter": _scalar(s.max_swaps, np.int64), "swap_tol": _scalar(s.tol, np.float64),
            "swap_window": _scalar(s.window, np.int64), "swap_refresh": _scalar(s.refresh, np.int64)}


def write_case(path, case: GoldenCase, outputs: GoldenOutputs | None = None) -> None:
    """Write a golden file atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **case_arrays(case, outputs))


def _load(path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise UserError(f"golden file {path} does not exist")
    # declared shapes and sizes, before any array is read; any memory order (t.T.numpy() writes
    # Fortran order), made C-contiguous here
    validate.npz_members(path, "golden file", fortran_ok=True)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k], order="C") for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{path} is not a readable .npz golden file ({exc})") from None


def _get(arrays, key, path, shape=None, kind=None):
    if key not in arrays:
        raise UserError(f"golden file {path} has no array {key!r}")
    a = arrays[key]
    if kind is not None and a.dtype.kind not in kind:
        raise UserError(f"golden file {path}: {key!r} has dtype {a.dtype}, expected kind {kind!r}")
    if shape is not None and a.shape != tuple(shape):
        raise UserError(f"golden file {path}: {key!r} has shape {a.shape}, expected {tuple(shape)}")
    return a


def read_case(path) -> tuple[GoldenCase, GoldenOutputs | None]:
    """Read a golden file: its case, and its outputs when it has them."""
    z = _load(path)
    version = int(_get(z, "format_version", path, (), "iu"))
    if version not in READABLE_VERSIONS:
        raise UserError(f"golden file {path} has format_version {version}, expected one of "
                        f"{', '.join(map(str, READABLE_VERSIONS))}")
    w = _get(z, "weight", path, kind="fi")
    if w.ndim != 2:
        raise UserError(f"golden file {path}: 'weight' must be [R, C], got shape {w.shape}")
    n_rows, n_cols = w.shape
    vec = {k: _get(z, k, path, (n_cols,), "fi").astype(np.float64) for k in ("seq_sum", "seq_sq", "var")}
    nm = tuple(int(v) for v in _get(z, "nm", path, (2,), "iu"))
    variant = str(_get(z, "variant", path, (), "U"))
    if variant == SWAPS and version < 3:
        raise UserError(f"golden file {path}: variant 'swaps' needs format_version 3, got {version}")
    settings = DSnoTSettings() if variant == SWAPS else _read_settings(z, path)   # unused by "swaps"
    swap_settings = _read_swap_settings(z, path) if variant == SWAPS else None
    gram = _read_gram(z, path, n_cols, variant)
    case = GoldenCase(
        name=str(_get(z, "case", path, (), "U")),
        weight=w.astype(np.float64), **vec,
        initial_score=_get(z, "initial_score", path, (n_rows, n_cols), "fi").astype(np.float64),
        pruned0=_get(z, "pruned0", path, (n_rows, n_cols), "b"),
        settings=settings, nm=None if nm == (0, 0) else nm,
        sparsity=float(_get(z, "sparsity", path, (), "fi")),
        initial_method=str(_get(z, "initial_method", path, (), "U")),
        description=str(z["description"]) if "description" in z else "",
        gram=gram, swap_settings=swap_settings,
    )
    if "pruned" not in z:
        return case, None
    outputs = _read_outputs(z, path, n_rows, n_cols, variant)
    check_swaps_replay(case, outputs, path)
    return case, outputs


def required_outputs(variant: str) -> tuple[str, ...]:
    """The arrays an implementation must write for a case of this variant (FORMAT.md, "Output contract")."""
    if variant == SWAPS:
        return ("pruned", "cycles", "swaps", "active_trace", "error_trace")
    return ("pruned", "cycles", "swaps", "active_trace", "eps_trace")


def _read_outputs(z, path, n_rows: int, n_cols: int, variant: str) -> GoldenOutputs:
    """The outputs of a golden file, every missing one named at once."""
    missing = [k for k in required_outputs(variant) if k not in z]
    if missing:
        raise UserError(f"golden file {path} lacks the output{'s' if len(missing) > 1 else ''} "
                        f"{', '.join(missing)} (a {variant!r} case needs {', '.join(required_outputs(variant))})")
    cycles = int(_get(z, "cycles", path, (), "iu"))
    if cycles < 0:
        raise UserError(f"golden file {path}: 'cycles' is {cycles}; it counts the cycles run (>= 0), "
                        f"and the traces have cycles + 1 rows")
    trace_shape = (cycles + 1, n_rows)
    if variant == SWAPS:   # no ε; the E_r trace is required
        eps_trace, error = None, _get(z, "error_trace", path, trace_shape, "f")
    else:
        eps_trace = _get(z, "eps_trace", path, trace_shape, "f").astype(np.float64)
        error = _get(z, "error_trace", path, trace_shape, "f") if "error_trace" in z else None
    return GoldenOutputs(
        pruned=_get(z, "pruned", path, (n_rows, n_cols), "b"),
        eps_trace=eps_trace,
        active_trace=_get(z, "active_trace", path, trace_shape, "b"),
        swaps=swap_log(_get(z, "swaps", path, kind="iu"), path),
        cycles=cycles,
        error_trace=None if error is None else error.astype(np.float64),
    )


def read_outputs_file(path, references: dict) -> tuple[GoldenCase, GoldenOutputs | None]:
    """A file to check: a whole golden file (inputs and outputs), or outputs only with the
    ``case`` name, whose inputs are then the reference case's. ``references``: name -> GoldenCase."""
    z = _load(path)
    name = str(_get(z, "case", path, (), "U"))
    if name not in references:
        raise UserError(f"case {name!r} of {path} is not among the reference cases "
                        f"({len(references)} cases: {', '.join(sorted(references)[:6])}...)")
    if "weight" in z:
        return read_case(path)
    ref = references[name]
    if "pruned" not in z:
        raise UserError(f"golden file {path} has neither inputs nor outputs to check")
    outputs = _read_outputs(z, path, *ref.weight.shape, ref.variant)
    check_swaps_replay(ref, outputs, path)
    return ref, outputs


def check_swaps_replay(case: GoldenCase, outputs: GoldenOutputs, path) -> None:
    """A file's outputs must agree with each other: its swap list, applied to the initial mask
    in order (each swap regrows a pruned weight and prunes a kept one of the same row, at a
    cycle in 1..cycles), gives its final mask. A checker compares the masks and the swap lists;
    a file whose swap list says something else than its mask is refused, naming the first swap
    or the first row that disagrees. The official variant is checked for the range only: the
    released code's c == 0 quirk prunes a weight twice or un-prunes one in a stopped row
    (docs/dsnot.md §7; ``hard_u75_official_cap16`` does), so its swaps need not replay to its mask."""
    mask = case.pruned0.copy()  # [R, C] True = pruned
    n_rows, n_cols = mask.shape
    for i, (row, grown, pruned, cycle) in enumerate(outputs.swaps.tolist()):
        if not (0 <= row < n_rows and 0 <= grown < n_cols and 0 <= pruned < n_cols and 1 <= cycle <= outputs.cycles):
            raise UserError(f"golden file {path}: swap {i} {[row, grown, pruned, cycle]} is outside the "
                            f"[{n_rows}, {n_cols}] weight or cycles 1..{outputs.cycles}")
    if case.variant == "official":
        return
    for i, (row, grown, pruned, cycle) in enumerate(outputs.swaps.tolist()):
        if not mask[row, grown] or mask[row, pruned]:
            raise UserError(f"golden file {path}: swap {i} {[row, grown, pruned, cycle]} regrows a kept weight "
                            "or prunes a pruned one (its swaps contradict its masks)")
        mask[row, grown], mask[row, pruned] = False, True
    differ = np.nonzero((mask != outputs.pruned).any(axis=1))[0]
    if differ.size:
        raise UserError(f"golden file {path}: its swaps applied to pruned0 do not give its 'pruned' mask "
                        f"(row {int(differ[0])} differs); the outputs contradict each other")


def swap_log(swaps: np.ndarray, path) -> np.ndarray:
    """The file's ``swaps`` as [n, 4] int64 (row, grown, pruned, cycle); any other size is refused."""
    if swaps.ndim not in (1, 2) or swaps.size % 4 or (swaps.ndim == 2 and swaps.shape[1] != 4):
        raise UserError(f"golden file {path}: 'swaps' has shape {list(swaps.shape)}, not [n, 4] "
                        "(row, grown column, pruned column, cycle)")
    return swaps.astype(np.int64).reshape(-1, 4)


def _optional(arrays, key, path, default, kind, convert):
    """A 0-d setting that version-1 files lack: its value, or ``default`` when absent."""
    return convert(_get(arrays, key, path, (), kind)) if key in arrays else default


def _read_settings(z, path) -> DSnoTSettings:
    """DSnoTSettings from a golden file; the exact variant's settings default when absent."""
    fraction = _optional(z, "cycle_fraction", path, None, "f", float)
    try:
        return DSnoTSettings(
            variant=str(_get(z, "variant", path, (), "U")),
            max_cycle_time=int(_get(z, "max_cycle_time", path, (), "iu")),
            update_threshold=float(_get(z, "update_threshold", path, (), "fi")),
            pow_of_var_regrowing=float(_get(z, "pow_of_var_regrowing", path, (), "fi")),
            without_same_sign=bool(_get(z, "without_same_sign", path, (), "b")),
            lookahead=_optional(z, "lookahead", path, 1, "iu", int),
            cycle_fraction=None if fraction is None or np.isnan(fraction) else fraction,  # NaN = None
            on_reject=_optional(z, "on_reject", path, "stop", "U", str),
        )
    except UserError as exc:
        raise UserError(f"golden file {path}: {exc}") from None


def _read_swap_settings(z, path) -> SwapSettings:
    """SwapSettings from a "swaps" file (every key required)."""
    try:
        return SwapSettings(max_swaps=int(_get(z, "swap_max_iter", path, (), "iu")),
                            tol=float(_get(z, "swap_tol", path, (), "fi")),
                            window=int(_get(z, "swap_window", path, (), "iu")),
                            refresh=int(_get(z, "swap_refresh", path, (), "iu")))
    except UserError as exc:
        raise UserError(f"golden file {path}: {exc}") from None


def _read_gram(z, path, n_cols: int, variant: str):
    """G [C, C] float64 when the file has it; required for the exact variant and "swaps"."""
    if "gram" not in z:
        if variant in GRAM_VARIANTS:
            raise UserError(f"golden file {path}: variant {variant!r} needs the array 'gram' [C, C]")
        return None
    gram = _get(z, "gram", path, (n_cols, n_cols), "f").astype(np.float64)
    if not np.all(np.isfinite(gram)):
        raise UserError(f"golden file {path}: 'gram' has NaN or inf entries")
    return gram


# --------------------------------------------------------------------------- the standard cases

def synthetic_activations(seed: int, n_rows: int, n_cols: int, n_seq: int = 4, seq_len: int = 32):
    """A small random layer and its calibration inputs: -> (x [S, L, C], weight [R, C]), float64.

    Activations have per-channel means and scales (some channels dead: x = 0), like LLM
    hidden states.
    """
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal(n_cols) * 0.3
    scale = np.exp(rng.standard_normal(n_cols) * 0.5)
    x = mean + scale * rng.standard_normal((n_seq, seq_len, n_cols))             # [S, L, C]
    x[:, :, rng.random(n_cols) < 0.02] = 0.0                                     # dead channels
    w = rng.standard_normal((n_rows, n_cols)) * 0.05
    return x, w


def layer_statistics(x):
    """Input statistics from their definitions: x [S, L, C] -> (seq_sum, seq_sq, var_pooled,
    var_within), each [C] float64 (docs/design.md LinearStats)."""
    seq_sum = x.sum(axis=1).mean(axis=0)                                         # [C]
    seq_sq = (x**2).sum(axis=1).mean(axis=0)
    var_pooled = x.reshape(-1, x.shape[-1]).var(axis=0)
    var_within = x.var(axis=1).mean(axis=0)
    return seq_sum, seq_sq, var_pooled, var_within


def gram_matrix(x):
    """G = Σ_tokens x xᵀ: x [S, L, C] -> [C, C] float64 (= hessian · S / 2, not divided by S)."""
    tokens = x.reshape(-1, x.shape[-1])                                          # [T, C]
    return tokens.T @ tokens                                                     # [C, T] @ [T, C]


def synthetic_layer(seed: int, n_rows: int, n_cols: int, n_seq: int = 4, seq_len: int = 32):
    """A small random layer and its input statistics computed from their definitions.

    -> (weight [R, C], seq_sum, seq_sq, var_pooled, var_within), float64.
    """
    x, w = synthetic_activations(seed, n_rows, n_cols, n_seq, seq_len)
    return (w, *layer_statistics(x))


# name, seed, method, sparsity, nm, variant, other DSnoTSettings fields (SwapSettings for "swaps")
STANDARD_CASES = (
    ("wanda_u50_reference", 1, "wanda", 0.5, None, "reference", {}),
    ("wanda_u70_reference", 2, "wanda", 0.7, None, "reference", {}),
    ("magnitude_u50_reference", 3, "magnitude", 0.5, None, "reference", {}),
    ("wanda_2of4_reference", 4, "wanda", 0.5, (2, 4), "reference", {}),
    ("wanda_u50_official", 1, "wanda", 0.5, None, "official", {}),
    ("wanda_u70_official", 12, "wanda", 0.7, None, "official", {}),  # seed 2 had a near-threshold decision
    ("magnitude_u50_official", 3, "magnitude", 0.5, None, "official", {}),
    ("wanda_2of4_official", 4, "wanda", 0.5, (2, 4), "official", {}),
    ("wanda_u60_exact", 5, "wanda", 0.6, None, "exact", {}),
    ("wanda_2of4_exact", 6, "wanda", 0.5, (2, 4), "exact", {}),
    ("magnitude_u60_exact_k2_skip", 7, "magnitude", 0.6, None, "exact",
     {"lookahead": 2, "on_reject": "skip"}),
    ("wanda_u60_swaps", 8, "wanda", 0.6, None, SWAPS, {}),
    ("wanda_2of4_swaps", 9, "wanda", 0.5, (2, 4), SWAPS, {}),
    ("magnitude_u70_swaps_all_pairs", 10, "magnitude", 0.7, None, SWAPS, {"window": 0, "refresh": 1}),
)


def describe_case(method: str, sparsity: float, nm, settings, seed: int, options: dict | None = None,
                  layer: str = "synthetic layer") -> str:
    """The human description stored in a standard case (``settings``: DSnoTSettings or SwapSettings;
    ``options``: the settings that differ from the defaults)."""
    pattern = f"{nm[0]}:{nm[1]}" if nm else f"{sparsity:.0%} unstructured"
    if isinstance(settings, SwapSettings):
        search = ("all pairs" if settings.window == 0 else f"window {settings.window}, refresh {settings.refresh}")
        search = "every pair within a group" if nm else search
        return (f"{method} initial mask, {pattern}, SparseSwaps ({search}, at most {settings.max_swaps} "
                f"swaps per row, tol {settings.tol:g}), {layer} seed {seed}")
    options = "default settings" if not options else \
        ", ".join(f"{k} {v!r}" for k, v in options.items()) + ", otherwise defaults"
    return f"{method} initial mask, {pattern}, {settings.variant} DSnoT, {options}, {layer} seed {seed}"


def standard_cases(n_rows: int = 8, n_cols: int = 384) -> list[GoldenCase]:
    """The committed fixture set, built deterministically from fixed seeds: the random layers of
    ``STANDARD_CASES`` and the exact-arithmetic layers of ``HARD_CASES``."""
    out = []
    for name, seed, method, sparsity, nm, variant, options in STANDARD_CASES:
        x, w = synthetic_activations(seed, n_rows, n_cols)
        out.append(build_case(name, seed, x, w, method, sparsity, nm, variant, options))
    for name, seed, method, sparsity, nm, variant, options in HARD_CASES:
        x, w = quantised_activations(seed, HARD_COLS), quantised_weight(seed, HARD_ROWS, HARD_COLS)
        out.append(build_case(name, seed, x, w, method, sparsity, nm, variant, options,
                              layer="exact-arithmetic layer"))
    return out


def build_case(name: str, seed: int, x, w, method: str, sparsity: float, nm, variant: str,
               options: dict, layer: str = "synthetic layer") -> GoldenCase:
    """A golden case from calibration inputs x [S, L, C] and a weight [R, C] (float64)."""
    seq_sum, seq_sq, var_pooled, var_within = layer_statistics(x)
    dtype = np.float64 if variant == SWAPS else arithmetic_dtype(variant)
    if variant == "official":       # float32 inputs, as the released code holds them
        w, seq_sum, seq_sq, var_within = (a.astype(dtype).astype(np.float64)
                                          for a in (w, seq_sum, seq_sq, var_within))
    score = magnitude_score(w, dtype) if method == "magnitude" else wanda_score(w, seq_sq, dtype)
    score = score.astype(np.float64)
    swap_settings = SwapSettings(**options) if variant == SWAPS else None
    settings = DSnoTSettings() if variant == SWAPS else DSnoTSettings(variant=variant, **options)
    return GoldenCase(
        name=name, weight=w, seq_sum=seq_sum, seq_sq=seq_sq,
        var=var_within if variant == "official" else var_pooled,
        initial_score=score, pruned0=initial_mask(score, sparsity, nm),
        settings=settings, nm=nm, sparsity=sparsity, initial_method=method,
        description=describe_case(method, sparsity, nm, swap_settings or settings, seed, options, layer),
        gram=gram_matrix(x) if variant in GRAM_VARIANTS else None,
        swap_settings=swap_settings,
    )


# --------------------------------------------------------------------------- hard cases

def quantised_activations(seed: int, n_cols: int, n_seq: int = 4, seq_len: int = 8, *,
                          repeat: bool = True, special: bool = True):
    """Calibration inputs on which every DSnoT quantity is exact: x [S, L, C] float64.

    x holds small integers, S·L is a power of two, so seq_sum, seq_sq, both variances, G, c,
    ε and ΔE are exact in float32 and float64 in every summation order: the case's decisions
    cannot depend on rounding. With ``repeat`` channels are drawn from a few prototypes (equal
    statistics, so equal weights tie exactly); with ``special`` some are dead (x = 0), constant
    (x = k ≠ 0: variance 0, the variance floor decides) or zero-mean (seq_sum = 0: c = 0, never
    a candidate; the official variant's c == 0 entries).
    """
    rng = np.random.default_rng(seed)
    n_proto = max(2, n_cols // 4) if repeat else n_cols
    offset = rng.integers(-1, 4, size=n_proto)                                   # mostly positive means
    proto = offset + rng.integers(-3, 4, size=(n_seq, seq_len, n_proto))         # [S, L, P]
    channels = rng.integers(0, n_proto, size=n_cols) if repeat else np.arange(n_cols)
    x = proto[:, :, channels].astype(np.float64)                                 # [S, L, C]
    if not special:
        return x
    kind = rng.choice(4, size=n_cols, p=[0.82, 0.06, 0.06, 0.06])
    x[:, :, kind == 1] = 0.0                                                     # dead
    x[:, :, kind == 2] = rng.choice([-2.0, 1.0, 3.0], size=int(np.sum(kind == 2)))  # constant
    zero_mean = np.flatnonzero(kind == 3)
    x[:, :, zero_mean] = np.where(np.arange(seq_len)[None, :, None] % 2 == 0, 1.0, -1.0) \
        * rng.integers(1, 3, size=zero_mean.size)                                # ±k alternating
    return x


def quantised_weight(seed: int, n_rows: int, n_cols: int):
    """W [R, C] float64, multiples of 1/8 in [−1, 1] (ties, zeros), leaning positive in even
    rows and negative in odd ones, so that a row's contributions are mostly of one sign: ε₀ is
    large against one swap (long runs) and the list of the other sign is short (it runs out)."""
    rng = np.random.default_rng(seed + 1_000_003)
    lean = np.where(np.arange(n_rows) % 2 == 0, 1.0, -1.0)[:, None]               # [R, 1]
    return lean * rng.integers(-3, 9, size=(n_rows, n_cols)).astype(np.float64) / 8.0


HARD_ROWS, HARD_COLS = 8, 64
# Exact-arithmetic layers (quantised_activations) with settings chosen so that each rule of
# data/golden/FORMAT.md ("Coverage by rule") decides some output; same columns as STANDARD_CASES.
HARD_CASES = (
    ("hard_u50_reference_cap3", 2, "magnitude", 0.5, None, "reference",
     {"max_cycle_time": 3, "update_threshold": 13.3}),
    ("hard_u75_reference_cap3", 1, "wanda", 0.75, None, "reference", {"max_cycle_time": 3}),
    ("hard_2of4_reference_cap8", 3, "magnitude", 0.5, (2, 4), "reference", {"max_cycle_time": 8}),
    ("hard_u75_official_sign_cap3", 1, "wanda", 0.75, None, "official",
     {"max_cycle_time": 3, "update_threshold": 3.3, "without_same_sign": False}),
    ("hard_u75_official_cap16", 1, "wanda", 0.75, None, "official",
     {"max_cycle_time": 16, "update_threshold": 13.3}),
    ("hard_2of4_official_cap8", 1, "wanda", 0.5, (2, 4), "official",
     {"max_cycle_time": 8, "update_threshold": 3.3}),
    ("hard_u75_exact_k2_skip", 2, "wanda", 0.75, None, "exact", {"lookahead": 2, "on_reject": "skip"}),
    ("hard_2of4_exact_skip_cap3", 1, "magnitude", 0.5, (2, 4), "exact",
     {"max_cycle_time": 3, "on_reject": "skip"}),
    ("hard_u75_swaps", 2, "wanda", 0.75, None, SWAPS, {"max_swaps": 3, "window": 4, "refresh": 2, "tol": 0.03}),
)


def case_activations(name: str):
    """The calibration inputs x [S, L, C] a committed case's statistics (and G) were built from."""
    for cases, make in ((STANDARD_CASES, lambda seed: synthetic_activations(seed, 8, 384)[0]),
                        (HARD_CASES, lambda seed: quantised_activations(seed, HARD_COLS))):
        for entry in cases:
            if entry[0] == name:
                return make(entry[1])
    raise KeyError(name)
