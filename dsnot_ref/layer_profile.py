"""Per-layer sparsity profiles: OWL's outlier ratios from a dense pass (docs/owl.md).

OWL's sparsities must be known before layer 0 is pruned, and they are defined on the dense
model: the outlier ratio of layer ℓ uses the Wanda scores |W|·‖x‖ with x the inputs the
*unpruned* model gives that layer. The pruning pass cannot provide them (from layer 1 on it sees
the outputs of pruned layers), so a run with the OWL profile first makes one dense pass over the
calibration windows, streamed like the pruning pass:

    acts/layer_000.npy (the embedded calibration tokens, shared with the pruning pass)
    for each decoder layer ℓ:
        one forward over the chunks -> Σ x² of every sublayer input, and the dense outputs,
            written to owl_acts/layer_{ℓ+1}.npy (the previous file is then deleted)
        D_ℓ = outlier_ratio(wanda scores of the layer's sublayers, M)
    -> owl.json: outlier ratios, the layer sizes, the layer sparsities, the pass's seconds

Resident memory is one layer's weights, one chunk and one layer's Wanda scores; disk holds two
[S, L, D] files at a time. One forward per chunk (the released code runs each layer twice).
The result is stored in the run directory, so a resumed run does not repeat the pass.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from . import cache, validate
from . import model as model_lib
from .backend import array_module, to_device, to_numpy
from .errors import UserError
from .io_utils import atomic_write_json
from .methods.owl import OwlSettings, layer_sparsities, outlier_ratio
from .methods.scores import wanda_score

PROFILE_NAME = "owl.json"
ACTS_DIR = "owl_acts"


class SquaredNorms:
    """The ``capture`` callback of ``block_forward``: Σ_s Σ_t x² per input column of every sublayer.

    q/k/v (and gate/up) receive the same tensor object; its sum is computed once.
    """

    def __init__(self):
        self.sums: dict[str, object] = {}  # name -> [C] float64
        self.n_seq = 0
        self._last = (None, None)  # (input object, its [C] sum) of the latest call

    def __call__(self, name: str, x_in) -> None:  # x_in [B, L, C]
        if self._last[0] is not x_in:
            xp = array_module(x_in)
            x64 = x_in.astype(xp.float64)
            self._last = (x_in, xp.square(x64, out=x64).sum(axis=(0, 1)))  # [B, L, C] -> [C]
        total = self.sums.get(name)
        self.sums[name] = self._last[1] if total is None else total + self._last[1]

    def end_chunk(self, n_seq: int) -> None:
        self.n_seq += n_seq
        self._last = (None, None)

    def seq_sq(self) -> dict[str, object]:
        """name -> (1/S) Σ_s Σ_t x² [C] (the pipeline's ``LinearStats.seq_sq``)."""
        return {name: total / self.n_seq for name, total in self.sums.items()}


def dense_layer_pass(config, layer: dict, in_path: Path, out_path: Path, chunk_size: int, dtype, xp) -> dict:
    """Run the dense layer over every chunk of its inputs; write its outputs; name -> seq_sq [C]."""
    shape, _ = cache.activation_info(in_path)
    norms = SquaredNorms()
    with cache.ActivationWriter(out_path, shape, dtype) as writer:
        for start in range(0, shape[0], chunk_size):
            chunk = cache.read_chunk(in_path, start, start + chunk_size)
            x = to_device(chunk.astype(dtype, copy=False), xp)  # [B, L, D]
            y = model_lib.block_forward(config, layer, x, capture=norms)  # [B, L, D] -> [B, L, D]
            writer.write(start, to_numpy(y))
            norms.end_chunk(x.shape[0])
    return norms.seq_sq()


def layer_outlier_ratio(config, layer: dict, seq_sq: dict, m: float) -> float:
    """D_ℓ of one layer from its weights and its dense input norms (methods.owl.outlier_ratio)."""
    names = model_lib.linear_names(config)
    return outlier_ratio([wanda_score(layer[f"{name}.weight"], seq_sq[name]) for name in names], m)


def layer_sizes(config) -> list[int]:
    """n_ℓ: linear weights per decoder layer (all layers alike), [L]."""
    per_layer = sum(r * c for r, c in model_lib.linear_shapes(config).values())
    return [per_layer] * config.num_layers


def outlier_ratios(model, run_dir: Path, m: float, chunk_size: int, dtype, xp, tick=None) -> list[float]:
    """D_ℓ of every layer, from a dense pass starting at acts/layer_000.npy (left in place)."""
    config = model.config
    acts = Path(run_dir) / ACTS_DIR
    shutil.rmtree(acts, ignore_errors=True)  # a pass killed halfway starts again
    ratios, in_path = [], cache.activation_path(run_dir, 0)
    for i in range(config.num_layers):
        layer = model_lib.load_layer(model, i, dtype=dtype, xp=xp)
        out_path = acts / f"layer_{i + 1:03d}.npy"
        seq_sq = dense_layer_pass(config, layer, in_path, out_path, chunk_size, dtype, xp)
        ratios.append(layer_outlier_ratio(config, layer, seq_sq, m))
        if in_path.parent == acts:
            in_path.unlink()
        in_path = out_path
        if tick is not None:
            tick(i + 1, config.num_layers, "OWL outlier ratios (dense pass)")
    shutil.rmtree(acts, ignore_errors=True)
    return ratios


def owl_profile(model, run_dir: Path, sparsity: float, settings: OwlSettings, chunk_size: int, dtype, xp,
                tick=None) -> dict:
    """The OWL profile of this run: read from ``owl.json`` if a previous call wrote it, else measured.

    Returns {"outlier_ratios": [L], "layer_params": [L], "layer_sparsities": [L], "seconds"}.
    """
    path = Path(run_dir) / PROFILE_NAME
    if path.exists():  # its record was checked when the run directory was reopened
        return check_profile(validate.read_json_file(path, "OWL profile"), model.config.num_layers, path)
    if not cache.activation_path(run_dir, 0).exists():
        raise UserError(f"run directory {run_dir} lacks the embedded calibration tokens the OWL pass needs; "
                        "delete it and rerun")
    start = time.perf_counter()
    ratios = outlier_ratios(model, run_dir, settings.m, chunk_size, dtype, xp, tick)
    sizes = layer_sizes(model.config)
    sparsities = layer_sparsities(ratios, sparsity, settings, sizes)
    profile = {
        "outlier_ratios": [float(r) for r in ratios],
        "layer_params": sizes,
        "layer_sparsities": [float(p) for p in np.asarray(sparsities)],
        "seconds": time.perf_counter() - start,
    }
    atomic_write_json(path, profile)
    cache.record_files(run_dir, [path])
    return profile


def check_profile(profile, num_layers: int, path: Path) -> dict:
    """A profile read back from owl.json: one finite ratio, size and sparsity in [0, 1) per layer."""
    def numbers(key: str) -> bool:
        values = profile.get(key)
        return (isinstance(values, list) and len(values) == num_layers
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values))

    if not isinstance(profile, dict) or not all(numbers(k) for k in ("outlier_ratios", "layer_params",
                                                                      "layer_sparsities")):
        raise cache.RunDirectoryError(f"OWL profile {path} does not hold {num_layers} numbers per layer; delete the run directory")
    if not all(0 <= p < 1 for p in profile["layer_sparsities"]):
        raise cache.RunDirectoryError(f"OWL profile {path} has a layer sparsity outside [0, 1); delete the run directory")
    return profile
