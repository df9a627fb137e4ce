"""Chunks on worker threads: results in order, bounded work in flight, the same statistics and
masks as one chunk at a time, and the BLAS given back its threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dsnot_ref import threads
from dsnot_ref import model as model_lib
from dsnot_ref.methods import PruneSpec
from dsnot_ref.pipeline import PipelineSettings, prune_model
from dsnot_ref.released.averages import ReleasedAverages
from dsnot_ref.stats import StatsAccumulator
from dsnot_ref.timing import Timer

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "fixtures"


def test_ordered_map_keeps_order_and_bounds_the_work_in_flight():
    started, yielded, lock = [], [], threading.Lock()

    def work(i):
        with lock:
            started.append(i)
            in_flight = len(started) - len(yielded)
        time.sleep(0.001 * ((7 * i) % 5))  # finish out of order
        return i * i, in_flight

    results = []
    for value, in_flight in threads.ordered_map(work, range(20), workers=3):
        results.append(value)
        yielded.append(value)
        assert in_flight <= 3 + 1
    assert results == [i * i for i in range(20)]
    assert list(threads.ordered_map(lambda i: -i, range(4), workers=1)) == [0, -1, -2, -3]


def test_ordered_map_raises_the_first_failure_in_order():
    def work(i):
        if i in (3, 5):
            raise ValueError(f"chunk {i}")
        return i

    got = []
    with pytest.raises(ValueError, match="chunk 3"):
        for value in threads.ordered_map(work, range(8), workers=2):
            got.append(value)
    assert got == [0, 1, 2]


def test_single_threaded_blas_pins_every_openblas_and_gives_the_threads_back():
    import scipy.linalg  # noqa: F401  (SciPy's wheels load an OpenBLAS of their own)

    libraries = threads.loaded_openblas()
    before = [get_threads() for _, get_threads in libraries]
    with threads.single_threaded_blas() as pinned:
        assert pinned == bool(libraries)
        assert [get_threads() for _, get_threads in libraries] == [1] * len(libraries)
    assert [get_threads() for _, get_threads in libraries] == before
    with pytest.raises(RuntimeError), threads.single_threaded_blas():
        raise RuntimeError("a failing chunk")
    assert [get_threads() for _, get_threads in libraries] == before


@pytest.mark.parametrize("moments", [None, ReleasedAverages])
def test_chunks_reduced_out_of_order_and_added_in_order_equal_one_pass(moments):
    """StatsAccumulator.reduce is a pure function of a chunk; add in chunk order gives the very
    numbers update gives, whichever thread reduced which chunk first."""
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal((3, 16, 8)).astype(np.float32) + 2.0 for _ in range(5)]
    serial = StatsAccumulator(8, with_hessian=True, hessian_products="input", moments=moments)
    for x in chunks:
        serial.update(x)
    split = StatsAccumulator(8, with_hessian=True, hessian_products="input", moments=moments)
    parts = {k: split.reduce(chunks[k]) for k in (4, 1, 3, 0, 2)}  # reduced in another order
    for k in range(5):
        split.add(parts[k])
    a, b = serial.finalize(), split.finalize()
    for field in ("seq_sum", "seq_sq", "var_pooled", "var_within", "hessian"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)


def test_timer_shares_the_wall_time_among_overlapping_steps():
    timer = Timer(("forward", "io"))
    timer.add_shares({"forward": 6.0, "io": 2.0}, wall=4.0)  # 8 s of work in 4 s on two threads
    assert timer.seconds == {"forward": 3.0, "io": 1.0}


@pytest.mark.parametrize("fixture", ["tiny-llama", "tiny-opt"])
@pytest.mark.parametrize("spec", [PruneSpec(method="dsnot", sparsity=0.5),
                                  PruneSpec(method="swaps", sparsity=0.5)], ids=["dsnot", "swaps"])
def test_workers_change_nothing_but_speed(tmp_path, fixture, spec):
    """The same masks and weights with 1 and 3 workers (float64: a different BLAS thread count
    may round a product differently, far below any mask decision here), and every layer's
    timings add up whatever the overlap."""
    model = model_lib.load_model(FIXTURES / fixture)
    tokens = np.random.default_rng(1).integers(0, model.config.vocab_size, size=(7, 12), dtype=np.int64)
    runs = {}
    for workers in (1, 3):
        settings = PipelineSettings(spec=spec, chunk_size=2, dtype="float64", workers=workers, recon_error=True,
                                    skip_layer=None)
        run = prune_model(model, tokens, settings, tmp_path / f"run{workers}", keep_cache=True)
        runs[workers] = (dict(run.masks()), run.weights_store(), run.diagnostics, np.asarray(run.final_hidden()))
    (masks1, store1, diag1, hidden1), (masks3, store3, diag3, hidden3) = runs[1], runs[3]
    assert masks1.keys() == masks3.keys()
    for name, mask in masks1.items():
        np.testing.assert_array_equal(masks3[name], mask, err_msg=name)
        np.testing.assert_allclose(store3.get(name, np.float64), store1.get(name, np.float64), rtol=1e-12, atol=0)
    np.testing.assert_allclose(hidden3, hidden1, rtol=1e-10, atol=1e-12)
    for layer1, layer3 in zip(diag1, diag3):
        for name, sub in layer1["sublayers"].items():
            assert sub["recon_after"] == pytest.approx(layer3["sublayers"][name]["recon_after"], rel=1e-9)
        assert all(v >= 0 for v in layer3["timings"].values())


def test_workers_must_be_positive():
    from dsnot_ref.errors import UserError

    with pytest.raises(UserError, match="workers must be a positive integer"):
        PipelineSettings(spec=PruneSpec(method="wanda", sparsity=0.5), workers=0)
