"""CuPy gives NumPy's results: golden fixtures, prune_linear, and a whole prune + perplexity.

Runs only where CuPy imports and a GPU is visible (``pytest -m gpu tests/test_cupy.py``);
everywhere else the module is skipped. The comparisons are between the two backends of this
package on the same inputs; the golden files add the committed NumPy outputs as a third
witness. Masks, swaps and cycle counts must be identical; ε traces may differ by summation
order on the device (a few ulps), so they are compared to 1e-10 of their scale.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

cupy = pytest.importorskip("cupy")

from dsnot_ref import model as model_lib  # noqa: E402 - after the skip on purpose
from dsnot_ref.backend import to_device, to_numpy  # noqa: E402
from dsnot_ref.evaluate import perplexity  # noqa: E402
from dsnot_ref.methods import DSnoTSettings, PruneSpec, prune_linear  # noqa: E402
from dsnot_ref.golden import GOLDEN_DIR, read_case, run_case  # noqa: E402
from dsnot_ref.golden_check import compare_outputs  # noqa: E402
from dsnot_ref.pipeline import PipelineSettings, prune_model  # noqa: E402
from dsnot_ref.stats import StatsAccumulator  # noqa: E402


def visible_gpus() -> int:
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception:  # no driver, no device
        return 0


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(visible_gpus() == 0, reason="no GPU visible")]

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "fixtures"
GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.npz"))


# ----------------------------------------------------------------------------- golden fixtures

@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_golden_fixture_same_on_cupy(path):
    case, committed = read_case(path)
    on_gpu = run_case(case, xp=cupy)
    on_cpu = run_case(case, xp=np)
    for theirs in (on_cpu, committed):
        result = compare_outputs(on_gpu, theirs, rtol=1e-10)
        assert result.identical, result.describe()
    np.testing.assert_array_equal(on_gpu.active_trace, on_cpu.active_trace)


# ----------------------------------------------------------------------------- prune_linear

def random_layer(seed: int, n_rows: int = 96, n_cols: int = 512, dtype=np.float32):
    """A random weight and the statistics of random activations with per-channel means."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 32, n_cols)) * np.exp(rng.standard_normal(n_cols) * 0.5) \
        + rng.standard_normal(n_cols) * 0.3                                        # [S, L, C]
    acc = StatsAccumulator(n_cols, with_hessian=True)
    acc.update(x)
    w = (rng.standard_normal((n_rows, n_cols)) * 0.05).astype(dtype)
    return w, acc.finalize()


def stats_on_device(stats):
    """The same LinearStats with every array on the GPU."""
    moved = {f.name: to_device(getattr(stats, f.name), cupy) for f in fields(stats)
             if isinstance(getattr(stats, f.name), np.ndarray)}
    return replace(stats, **moved)


SPECS = {
    "magnitude": PruneSpec("magnitude", 0.6),
    "wanda": PruneSpec("wanda", 0.6),
    "wanda-2:4": PruneSpec("wanda", 0.5, nm=(2, 4)),
    "sparsegpt": PruneSpec("sparsegpt", 0.6),
    "dsnot-reference": PruneSpec("dsnot", 0.6, dsnot=DSnoTSettings(variant="reference")),
    "dsnot-official": PruneSpec("dsnot", 0.6, dsnot=DSnoTSettings(variant="official")),
    "dsnot-exact": PruneSpec("dsnot", 0.6, dsnot=DSnoTSettings(variant="exact")),
    "dsnot-reference-2:4": PruneSpec("dsnot", 0.5, nm=(2, 4), dsnot=DSnoTSettings(variant="reference")),
    "dsnot-official-2:4": PruneSpec("dsnot", 0.5, nm=(2, 4), dsnot=DSnoTSettings(variant="official")),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("seed", [0, 1])
def test_prune_linear_same_masks_on_cupy(name, dtype, seed):
    w, stats = random_layer(seed, dtype=dtype)
    spec = SPECS[name]
    cpu = prune_linear(w, stats, spec)
    gpu = prune_linear(to_device(w, cupy), stats_on_device(stats), spec)
    assert isinstance(gpu.pruned, cupy.ndarray) and gpu.weight.dtype == w.dtype
    np.testing.assert_array_equal(to_numpy(gpu.pruned), cpu.pruned)
    if spec.method != "sparsegpt":        # only SparseGPT changes kept values
        np.testing.assert_array_equal(to_numpy(gpu.weight), cpu.weight)
    else:
        np.testing.assert_allclose(to_numpy(gpu.weight), cpu.weight, rtol=1e-4, atol=1e-6)
    for key in ("swaps", "cycles", "sparsity"):
        assert gpu.diagnostics.get(key) == cpu.diagnostics.get(key), key
    if spec.method == "dsnot":
        assert cpu.diagnostics["swaps"] > 0          # the comparison exercised DSnoT


# ----------------------------------------------------------------------------- whole model

@pytest.mark.parametrize("spec", [PruneSpec("wanda", 0.5), PruneSpec("dsnot", 0.5)], ids=["wanda", "dsnot"])
def test_prune_and_perplexity_same_on_cupy(spec, tmp_path):
    tiny = model_lib.load_model(FIXTURES / "tiny-llama")
    rng = np.random.default_rng(0)
    calib = rng.integers(0, tiny.config.vocab_size, size=(8, 32), dtype=np.int64)     # [S, L]
    text = rng.integers(0, tiny.config.vocab_size, size=4 * 64 + 1, dtype=np.int64)
    results = {}
    for backend, xp in (("numpy", np), ("cupy", cupy)):
        # float64 so that statistics agree to ~1e-15 and no mask decision sits on rounding
        settings = PipelineSettings(spec=spec, chunk_size=4, dtype="float64", backend=backend)
        with prune_model(tiny, calib, settings, tmp_path / backend) as run:
            masks = dict(run.masks())
            pruned_model = model_lib.load_model(tiny.path, store=run.weights_store())
            ppl = perplexity(pruned_model, text, 64, xp=xp)["perplexity"]
        results[backend] = masks, ppl
    (cpu_masks, cpu_ppl), (gpu_masks, gpu_ppl) = results["numpy"], results["cupy"]
    assert cpu_masks.keys() == gpu_masks.keys() and cpu_masks
    for name in cpu_masks:
        np.testing.assert_array_equal(gpu_masks[name], cpu_masks[name], err_msg=name)
    assert gpu_ppl == pytest.approx(cpu_ppl, rel=1e-4)
