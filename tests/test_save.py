"""Saving a pruned model (dsnot_ref/save.py): layout, dtypes, byte-exact copies, masks, refusals.

The masks here are made in the test itself (half of each row by |w|, np.argsort), independent of
dsnot_ref.methods, so that only the saving code is under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dsnot_ref import save
from dsnot_ref.errors import UserError
from dsnot_ref.weights import (
    MaskFiles,
    OverlayStore,
    PendingTensor,
    RawTensor,
    WeightStore,
    encode_tensor,
    read_raw_tensors,
    save_safetensors_atomic,
    write_mask_file,
    write_raw_safetensors_atomic,
)

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"


def half_magnitude_masks(store: WeightStore) -> dict[str, np.ndarray]:
    """pruned [R, C]: the C//2 smallest |w| of each row, for every 2-D weight inside a layer."""
    masks = {}
    for name in store.names():
        if ".layers." in name and name.endswith(".weight") and len(store.shape(name)) == 2:
            w = store.get(name)
            order = np.argsort(np.abs(w), axis=1, kind="stable")[:, : w.shape[1] // 2]
            pruned = np.zeros(w.shape, dtype=np.bool_)
            np.put_along_axis(pruned, order, True, axis=1)
            masks[name] = pruned
    return masks


def pruned_overlay(src: Path):
    base = WeightStore(src)
    masks = half_magnitude_masks(base)
    overrides = {n: np.where(m, np.float32(0), base.get(n)) for n, m in masks.items()}
    return base, OverlayStore(base, overrides), masks


@pytest.mark.parametrize("fixture", ["tiny-llama", "tiny-opt", "llama-bf16", "llama-f16-sharded"])
def test_save_round_trip(tmp_path, fixture):
    src = FIXTURES / fixture
    base, store, masks = pruned_overlay(src)
    out = save.save_pruned_model(src, tmp_path / "pruned", store, masks)

    # Same weight files (same shard membership and index), side files copied byte for byte.
    in_files = sorted(p.name for p in src.glob("*.safetensors"))
    out_files = sorted(p.name for p in out.glob("*.safetensors") if p.name != save.MASKS_FILE)
    assert out_files == in_files
    for name in ("config.json", "tokenizer.json", save.INDEX_FILE):
        if (src / name).exists():
            assert (out / name).read_bytes() == (src / name).read_bytes(), name

    saved = WeightStore(out)
    assert sorted(saved.names()) == sorted(base.names())
    for name in base.names():
        assert saved.dtype(name) == base.dtype(name), name
        assert saved.file_of(name).name == base.file_of(name).name, name
        expected = np.where(masks[name], 0, base.get(name)) if name in masks else base.get(name)
        np.testing.assert_array_equal(saved.get(name), expected, err_msg=name)

    # Unpruned tensors are byte-identical to the input's.
    for file_name in in_files:
        raw_in, _ = read_raw_tensors(src / file_name)
        raw_out, meta_out = read_raw_tensors(out / file_name)
        assert meta_out.get("format") == "pt"
        for name, t in raw_in.items():
            if name not in masks:
                assert raw_out[name] == t, name

    loaded = save.read_saved_masks(out)
    assert loaded.keys() == masks.keys()
    for name in masks:
        np.testing.assert_array_equal(loaded[name], masks[name])
    # The saved zeros are exactly the mask (no kept weight was zero in these fixtures).
    zeros, source = save.model_masks(out)
    assert source == save.MASKS_FILE


def test_mask_survives_rounding_to_zero(tmp_path):
    """A kept weight that underflows to 0 in float16 is still 'kept' in masks.safetensors."""
    src = FIXTURES / "llama-f16-sharded"
    base, _, masks = pruned_overlay(src)
    name = sorted(masks)[0]
    w = np.where(masks[name], np.float32(0), base.get(name))
    kept = np.argwhere(~masks[name])[0]
    w[tuple(kept)] = np.float32(1e-12)  # kept, but below float16's smallest subnormal
    store = OverlayStore(base, {name: w})
    out = save.save_pruned_model(src, tmp_path / "out", store, {name: masks[name]})
    assert WeightStore(out).get(name)[tuple(kept)] == 0.0
    assert not save.read_saved_masks(out)[name][tuple(kept)]


def test_bf16_values_round_to_nearest(tmp_path):
    """A float32 value that is not a bfloat16 is saved rounded to the nearest bfloat16."""
    src = FIXTURES / "llama-bf16"
    base, _, masks = pruned_overlay(src)
    name = sorted(masks)[0]
    w = np.where(masks[name], np.float32(0), base.get(name))
    kept = tuple(np.argwhere(~masks[name])[0])
    w[kept] = np.float32(1.0 + 2.0**-8 + 2.0**-12)  # just above the midpoint of 1 and 1+2^-7
    out = save.save_pruned_model(src, tmp_path / "out", OverlayStore(base, {name: w}), {name: masks[name]})
    assert WeightStore(out).get(name)[kept] == np.float32(1.0 + 2.0**-7)


def test_refuses_existing_and_input_dirs(tmp_path):
    src = FIXTURES / "tiny-llama"
    _, store, masks = pruned_overlay(src)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        save.save_pruned_model(src, busy, store, masks)
    assert sorted(p.name for p in busy.iterdir()) == ["keep.txt"]
    save.save_pruned_model(src, busy, store, masks, overwrite=True)
    assert not (busy / "keep.txt").exists() and (busy / "model.safetensors").exists()

    with pytest.raises(UserError, match="input model directory"):
        save.check_output_dir(src, src, overwrite=True)
    with pytest.raises(UserError, match="input model directory"):
        save.check_output_dir(src, src / "sub", overwrite=True)
    with pytest.raises(UserError, match="overlaps the input model directory .*contains it"):
        save.check_output_dir(src, src.parent, overwrite=True)


def test_failure_leaves_nothing(tmp_path):
    src = FIXTURES / "tiny-llama"
    _, store, masks = pruned_overlay(src)
    masks = dict(masks, **{"model.layers.9.mlp.up_proj.weight": np.zeros((2, 2), dtype=np.bool_)})
    with pytest.raises(ValueError, match="not in the input"):
        save.save_pruned_model(src, tmp_path / "out", store, masks)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype,code", [(np.float32, "F32"), (np.float16, "F16")])
def test_zero_mask_bits(dtype, code):
    a = np.array([[0.0, -0.0, 1e-4, -3.0, np.inf, np.nan]], dtype=dtype)
    raw = RawTensor(code, a.shape, a.tobytes())
    np.testing.assert_array_equal(save.zero_mask(raw), [[True, True, False, False, False, False]])


def test_zero_mask_bf16():
    bits = np.array([[0x0000, 0x8000, 0x0001, 0x3F80]], dtype="<u2")  # +0, -0, subnormal, 1.0
    raw = RawTensor("BF16", bits.shape, bits.tobytes())
    np.testing.assert_array_equal(save.zero_mask(raw), [[True, True, False, False]])


@pytest.mark.parametrize("fixture", ["tiny-llama", "tiny-opt", "llama-bf16", "llama-f16-sharded"])
def test_saved_model_logits_equal_overlay_forward(tmp_path, fixture):
    """Our loader on the saved directory gives the logits of our forward on the pruned store."""
    from dsnot_ref.model import forward, load_model

    src = FIXTURES / fixture
    _, store, masks = pruned_overlay(src)
    out = save.save_pruned_model(src, tmp_path / "pruned", store, masks)
    tokens = np.load(src / "logits.npz")["tokens"]  # [B, L]
    expected = forward(load_model(src, store=store), tokens)
    np.testing.assert_array_equal(forward(load_model(out), tokens), expected)


@pytest.mark.parametrize("fixture", ["tiny-llama", "tiny-opt", "llama-bf16", "llama-f16-sharded"])
def test_transformers_loads_saved_model(tmp_path, fixture):
    """Optional: Hugging Face transformers loads the saved directory; logits agree with ours."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from dsnot_ref.model import forward, load_model

    src = FIXTURES / fixture
    _, store, masks = pruned_overlay(src)
    out = save.save_pruned_model(src, tmp_path / "pruned", store, masks)
    tokens = np.load(src / "logits.npz")["tokens"]
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    hf.eval()
    with torch.no_grad():
        theirs = hf(torch.from_numpy(tokens)).logits.numpy()
    ours = forward(load_model(out), tokens)
    np.testing.assert_allclose(theirs, ours, atol=1e-4, rtol=0)
    # And transformers sees exactly our zeros.
    q = dict(hf.named_parameters())[sorted(masks)[0]].detach().numpy()
    np.testing.assert_array_equal(q == 0, masks[sorted(masks)[0]])


@pytest.mark.parametrize("fixture", ["tiny-llama", "tiny-opt", "llama-bf16", "llama-f16-sharded"])
def test_streamed_files_equal_whole_shard_write(tmp_path, fixture):
    """The streamed weight files are byte for byte the files written from whole shards in memory
    (every tensor read, the pruned ones encoded, then written in name order)."""
    src = FIXTURES / fixture
    base, store, masks = pruned_overlay(src)
    out = save.save_pruned_model(src, tmp_path / "pruned", store, masks)
    for path in sorted(src.glob("*.safetensors")):
        raw, metadata = read_raw_tensors(path)
        for name in raw.keys() & masks.keys():
            raw[name] = encode_tensor(np.where(masks[name], np.float32(0), base.get(name)), raw[name].dtype)
        expected = tmp_path / "expected" / path.name
        write_raw_safetensors_atomic(expected, {n: raw[n] for n in sorted(raw)}, {"format": "pt", **metadata})
        assert (out / path.name).read_bytes() == expected.read_bytes(), path.name


def test_library_file_equals_ours(tmp_path):
    """Independent writer: the safetensors library writes the same bytes for one dtype's tensors."""
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    src = FIXTURES / "tiny-llama"
    base, store, masks = pruned_overlay(src)
    out = save.save_pruned_model(src, tmp_path / "pruned", store, masks)
    tensors = {n: np.where(masks[n], np.float32(0), base.get(n)) if n in masks else base.get(n) for n in base.names()}
    _, metadata = read_raw_tensors(src / "model.safetensors")
    safetensors_numpy.save_file(tensors, str(tmp_path / "lib.safetensors"), metadata={"format": "pt", **metadata})
    assert (out / "model.safetensors").read_bytes() == (tmp_path / "lib.safetensors").read_bytes()


def test_saving_holds_one_tensor_not_the_shard(tmp_path):
    """Peak Python/NumPy allocation while saving a 16 MiB single-file checkpoint (16 weights of
    1 MiB, 8 pruned) stays a few tensors, not the shard (tracemalloc sees NumPy's buffers)."""
    import tracemalloc

    src = tmp_path / "model"
    src.mkdir()
    rng = np.random.default_rng(0)
    names = [f"model.layers.{i}.mlp.up_proj.weight" for i in range(16)]
    save_safetensors_atomic(src / "model.safetensors", {n: rng.standard_normal((512, 512), dtype=np.float32) for n in names})
    pruned_files = []
    for i, name in enumerate(names[:8]):  # the pruned weights live on disk, as in a run directory
        w = WeightStore(src).get(name)
        pruned = np.abs(w) < np.median(np.abs(w))
        save_safetensors_atomic(tmp_path / f"layer{i}.safetensors", {name: np.where(pruned, np.float32(0), w)})
        write_mask_file(tmp_path / f"masks{i}.safetensors", {name: pruned})
        pruned_files.append(tmp_path / f"layer{i}.safetensors")
    store = OverlayStore(WeightStore(src), pruned_files)
    masks = MaskFiles([tmp_path / f"masks{i}.safetensors" for i in range(8)])
    tracemalloc.start()
    try:
        save.save_pruned_model(src, tmp_path / "out", store, masks)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB while saving a 16 MiB shard"
    saved = WeightStore(tmp_path / "out")
    for name in names:
        np.testing.assert_array_equal(saved.get(name), store.get(name), err_msg=name)


def test_pending_tensor_of_the_wrong_size_leaves_no_file(tmp_path):
    """A PendingTensor that writes fewer bytes than its dtype and shape say is a bug: ValueError,
    and neither the file nor its temporary remains."""
    short = PendingTensor("F32", (2, 2), lambda f: f.write(b"\0" * 12))
    with pytest.raises(ValueError, match="wrote 12 bytes"):
        write_raw_safetensors_atomic(tmp_path / "x.safetensors", {"w": short})
    assert list(tmp_path.iterdir()) == []
