"""`dsnot-ref compare-masks`: identical masks exit 0, different masks exit 1, incomparable 2.

The "other implementation" is simulated by a directory without masks.safetensors (only the
weights, as the official code's save_pretrained writes), whose mask is then weight == 0.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dsnot_ref import save
from dsnot_ref.cli import main
from dsnot_ref.weights import OverlayStore, WeightStore

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"


def pruned_copy(src: Path, out: Path, masks: dict[str, np.ndarray]) -> Path:
    base = WeightStore(src)
    store = OverlayStore(base, {n: np.where(m, np.float32(0), base.get(n)) for n, m in masks.items()})
    return save.save_pruned_model(src, out, store, masks)


def magnitude_masks(src: Path, p: float) -> dict[str, np.ndarray]:
    base = WeightStore(src)
    masks = {}
    for name in base.names():
        if ".layers." in name and name.endswith(".weight") and len(base.shape(name)) == 2:
            w = base.get(name)
            k = int(w.shape[1] * p)
            pruned = np.zeros(w.shape, dtype=bool)
            np.put_along_axis(pruned, np.argsort(np.abs(w), axis=1, kind="stable")[:, :k], True, axis=1)
            masks[name] = pruned
    return masks


def run_cli(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def pair(tmp_path):
    src = FIXTURES / "tiny-llama"
    masks = magnitude_masks(src, 0.5)
    ours = pruned_copy(src, tmp_path / "ours", masks)
    theirs = tmp_path / "theirs"
    shutil.copytree(ours, theirs)
    (theirs / save.MASKS_FILE).unlink()  # an implementation that writes weights only
    return src, masks, ours, theirs


def test_identical_masks_exit_0(pair, capsys):
    _, masks, ours, theirs = pair
    rc, out, _ = run_cli(["compare-masks", ours, theirs], capsys)
    assert rc == 0
    assert "mask from weight == 0" in out and "mask from masks.safetensors" in out
    assert f"{len(masks)}/{len(masks)} weights have identical masks" in out


def test_different_masks_exit_1(pair, tmp_path, capsys):
    src, masks, ours, _ = pair
    changed = dict(masks)
    name = "model.layers.1.self_attn.k_proj.weight"
    flipped = changed[name].copy()
    # Swap one pruned and one kept entry in rows 0 and 3: same sparsity, 2 rows differ.
    for r in (0, 3):
        p, k = np.flatnonzero(flipped[r])[0], np.flatnonzero(~flipped[r])[0]
        flipped[r, p], flipped[r, k] = False, True
    changed[name] = flipped
    other = pruned_copy(src, tmp_path / "other", changed)
    rc, out, _ = run_cli(["compare-masks", ours, other], capsys)
    assert rc == 1
    line = next(row for row in out.splitlines() if row.startswith(name))
    cols = line.split()
    r, c = flipped.shape
    assert float(cols[2]) == pytest.approx(1 - 4 / (r * c), abs=1e-6)
    assert int(cols[3]) == 2
    assert cols[4] == cols[5] == "0.5000"
    assert cols[6] == "0,3"                                      # the differing rows, named


def test_comparison_numbers():
    a = {"w": np.array([[True, False, False], [True, True, False]])}
    b = {"w": np.array([[True, False, True], [True, True, False]])}
    (c,) = save.compare_mask_sets(a, b, "A", "B")
    assert c.identical_fraction == pytest.approx(5 / 6)
    assert c.rows_differ == 1 and c.first_rows == (0,)
    assert (c.sparsity_a, c.sparsity_b) == (pytest.approx(3 / 6), pytest.approx(4 / 6))


def test_mismatched_models_exit_2(pair, capsys):
    _, _, ours, _ = pair
    rc, _, err = run_cli(["compare-masks", ours, FIXTURES / "tiny-opt"], capsys)
    assert rc == 2 and "prune different tensors" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run_cli(["compare-masks", ours, FIXTURES / "llama-untied"], capsys)
    assert rc == 2 and "has shape" in err and len(err.strip().splitlines()) == 1


def tampered_masks(model: Path, edit) -> None:
    """Rewrite model/masks.safetensors after ``edit(masks)`` (the weights stay as saved)."""
    from dsnot_ref.weights import write_mask_file

    masks = save.read_saved_masks(model)
    edit(masks)
    write_mask_file(model / save.MASKS_FILE, masks)


@pytest.mark.parametrize("edit, match", [
    # a mask that calls kept (non-zero) weights pruned: it vouches for weights that are not there
    (lambda m: m.__setitem__(sorted(m)[0], ~m[sorted(m)[0]]), "it calls pruned are not zero"),
    (lambda m: m.pop(sorted(m)[0]), "has no mask for"),
    (lambda m: m.__setitem__("model.layers.9.mlp.extra.weight", np.zeros((2, 8), bool)), "not a linear weight"),
    (lambda m: m.__setitem__(sorted(m)[0], m[sorted(m)[0]][:, :8]), "has shape"),
])
def test_masks_file_contradicting_its_weights_is_refused(pair, capsys, edit, match):
    _, _, ours, theirs = pair
    tampered_masks(ours, edit)
    rc, out, err = run_cli(["compare-masks", ours, theirs], capsys)
    assert rc == 2, (out, err)
    assert match in err and err.count("\n") == 1 and save.MASKS_FILE in err


def test_masks_file_with_kept_zeros_is_accepted(pair, capsys):
    """A kept weight that is zero (rounded to zero in float16, or zero in the input) does not
    contradict the mask: the masks file stays the record, and it differs from weight == 0."""
    _, masks, ours, theirs = pair
    name = sorted(masks)[0]
    kept_zero = {name: ~masks[name]}
    store = WeightStore(ours)
    rows, cols = np.nonzero(kept_zero[name])
    weight = store.get(name)
    weight[rows[0], cols[0]] = 0.0
    out = save.save_pruned_model(FIXTURES / "tiny-llama", ours.parent / "kept-zero",
                                 OverlayStore(WeightStore(FIXTURES / "tiny-llama"),
                                              {n: (weight if n == name else store.get(n)) for n in masks}), masks)
    rc, text, err = run_cli(["compare-masks", out, ours], capsys)
    assert rc == 0, err
