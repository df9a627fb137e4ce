"""Safetensors without PyTorch: our header parser against the safetensors library, bfloat16
conversions against their definitions, the atomic writer, overlays, and every corrupt input."""

import json
import math
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file

from dsnot_ref.errors import UserError
from dsnot_ref.weights import (
    OverlayStore,
    RawTensor,
    WeightStore,
    bf16_bits_to_float32,
    encode_tensor,
    float32_to_bf16_bits,
    read_header_and_metadata,
    read_mask_file,
    read_raw_tensors,
    save_safetensors_atomic,
    write_mask_file,
    write_raw_safetensors_atomic,
)

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"


def library_tensors(path: Path) -> dict[str, np.ndarray]:
    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


# --------------------------------------------------------------------------- reading

def test_store_matches_safetensors_library_f32():
    store = WeightStore(FIXTURES / "tiny-llama")
    expected = library_tensors(FIXTURES / "tiny-llama" / "model.safetensors")
    assert sorted(store.names()) == sorted(expected)
    for name, value in expected.items():
        assert store.shape(name) == value.shape and store.dtype(name) == "F32"
        got = store.get(name)
        assert got.dtype == np.float32 and np.array_equal(got, value)
        assert store.get(name, np.float64).dtype == np.float64
        assert store.file_of(name) == FIXTURES / "tiny-llama" / "model.safetensors"


def test_sharded_f16_store_matches_library_per_shard():
    model_dir = FIXTURES / "llama-f16-sharded"
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())["weight_map"]
    store = WeightStore(model_dir)
    assert sorted(store.names()) == sorted(index)
    assert len(set(index.values())) > 1
    for name, shard in index.items():
        value = library_tensors(model_dir / shard)[name]
        assert store.file_of(name) == model_dir / shard and store.dtype(name) == "F16"
        assert np.array_equal(store.get(name), value.astype(np.float32))


def bf16_by_definition(bits: int) -> float:
    """Value of a bfloat16 pattern from its fields: sign, 8-bit exponent, 7-bit fraction."""
    sign = -1.0 if bits >> 15 else 1.0
    exponent, fraction = (bits >> 7) & 0xFF, bits & 0x7F
    if exponent == 0xFF:
        return sign * math.inf if fraction == 0 else math.nan
    if exponent == 0:
        return sign * fraction / 128 * 2.0 ** -126
    return sign * (1 + fraction / 128) * 2.0 ** (exponent - 127)


def test_bf16_widening_matches_definition_for_every_pattern():
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    with np.errstate(invalid="ignore"):  # signalling-NaN patterns
        got = bf16_bits_to_float32(bits).astype(np.float64)
    expected = np.array([bf16_by_definition(int(b)) for b in bits])
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan], expected[~nan])
    # narrowing an exactly representable value gives its pattern back
    assert np.array_equal(float32_to_bf16_bits(bf16_bits_to_float32(bits[~nan]))[...], bits[~nan])


def nearest_bf16_oracle(x: np.float32) -> int:
    """Round-to-nearest-even by comparing the two neighbouring bf16 values in float64."""
    bits = int(np.array([x], dtype=np.float32).view(np.uint32)[0])
    lo = bits >> 16
    hi = lo + 1
    v_lo, v_hi = bf16_by_definition(lo), bf16_by_definition(hi & 0xFFFF)
    if math.isinf(v_hi):  # beyond the largest finite bf16, the "next value" is 2^128 for rounding
        v_hi = math.copysign(2.0 ** 128, v_lo)
    d_lo, d_hi = abs(float(x) - v_lo), abs(float(x) - v_hi)
    if d_lo < d_hi or (d_lo == d_hi and lo % 2 == 0):
        return lo
    return hi & 0xFFFF


def test_bf16_rounding_is_round_to_nearest_even():
    rng = np.random.default_rng(0)
    random_bits = rng.integers(0, 2**32, size=3000, dtype=np.uint64).astype(np.uint32)
    values = random_bits.view(np.float32)
    values = values[np.isfinite(values)]
    ties = (np.arange(0, 64, dtype=np.uint32) << 16 | 0x3F808000).view(np.float32)  # exact half-way
    specials = np.array([0.0, -0.0, 1.0, -1.0, 3.4028235e38, -3.4028235e38, 1e-45, 1.00390625,
                         1.01171875], dtype=np.float32)
    for x in np.concatenate([values, ties, specials]):
        assert int(float32_to_bf16_bits(np.array([x]))[0]) == nearest_bf16_oracle(x), x
    inf_nan = float32_to_bf16_bits(np.array([np.inf, -np.inf, np.nan], dtype=np.float32))
    assert bf16_bits_to_float32(inf_nan[:2]).tolist() == [np.inf, -np.inf]
    assert np.isnan(bf16_bits_to_float32(inf_nan[2:]))[0]


def test_bf16_fixture_loads_as_its_rounded_float32_values():
    store = WeightStore(FIXTURES / "llama-bf16")
    name = "model.layers.0.self_attn.q_proj.weight"
    assert store.dtype(name) == "BF16"
    w = store.get(name)
    # every value is exactly a bfloat16: its low 16 bits are zero
    assert not np.any(w.view(np.uint32) & 0xFFFF)
    assert np.abs(w).max() > 0


# --------------------------------------------------------------------------- writing

@pytest.mark.parametrize("code, np_dtype", [("F32", np.float32), ("F16", np.float16), ("float64", np.float64)])
def test_writer_is_read_back_by_the_library(tmp_path, code, np_dtype):
    rng = np.random.default_rng(1)
    tensors = {"a.weight": rng.standard_normal((5, 3)).astype(np.float32),
               "b.bias": rng.standard_normal(7).astype(np.float32),
               "mask": rng.random((4, 4)) < 0.5,
               "ids": np.arange(6, dtype=np.int64).reshape(2, 3)}
    path = tmp_path / "out.safetensors"
    save_safetensors_atomic(path, tensors, code, metadata={"format": "pt", "note": 3})
    back = library_tensors(path)
    for name, value in tensors.items():
        expected = value.astype(np_dtype) if value.dtype == np.float32 else value
        assert back[name].dtype == expected.dtype and np.array_equal(back[name], expected)
    with safe_open(str(path), framework="numpy") as f:
        assert f.metadata() == {"format": "pt", "note": "3"}
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]  # no temporary left


def test_bf16_writer_round_trip(tmp_path):
    x = np.random.default_rng(2).standard_normal((6, 8)).astype(np.float32)
    path = tmp_path / "model.safetensors"
    save_safetensors_atomic(path, {"w": x}, "bfloat16")
    (tmp_path / "config.json").write_text("{}")
    store = WeightStore(tmp_path)
    assert store.dtype("w") == "BF16"
    assert np.array_equal(store.get("w"), bf16_bits_to_float32(float32_to_bf16_bits(x)))
    assert np.abs(store.get("w") - x).max() <= np.abs(x).max() * 2.0**-8


def test_writer_refuses_unknown_dtype(tmp_path):
    with pytest.raises(UserError, match="int4"):
        save_safetensors_atomic(tmp_path / "x.safetensors", {"w": np.zeros(2, np.float32)}, "int4")


def test_raw_tensors_are_the_library_bytes():
    """read_raw_tensors gives each tensor's stored bytes (compared with the library's arrays)."""
    path = FIXTURES / "llama-f16-sharded" / "model-00001-of-00004.safetensors"
    raw, metadata = read_raw_tensors(path)
    expected = library_tensors(path)
    assert sorted(raw) == sorted(expected)
    for name, value in expected.items():
        assert raw[name].dtype == "F16" and raw[name].shape == value.shape
        assert raw[name].data == value.astype("<f2").tobytes(), name
    with safe_open(str(path), framework="numpy") as f:
        assert metadata == (f.metadata() or {})


def test_raw_writer_round_trip_keeps_order_bytes_and_metadata(tmp_path):
    """Already-encoded tensors (BF16 included) are written as given and read back unchanged."""
    bf16 = np.array([[0x3F80, 0x8000, 0x7FC0]], dtype="<u2")
    tensors = {"z.w": RawTensor("BF16", (1, 3), bf16.tobytes()),
               "a.w": encode_tensor(np.arange(4, dtype=np.float32).reshape(2, 2), "F16")}
    path = tmp_path / "raw.safetensors"
    write_raw_safetensors_atomic(path, tensors, {"format": "pt"})
    back, metadata = read_raw_tensors(path)
    assert list(back) == ["z.w", "a.w"] and back == tensors and metadata == {"format": "pt"}
    entries, _ = read_header_and_metadata(path)
    assert entries["z.w"].offset < entries["a.w"].offset  # the mapping's order, not sorted
    with safe_open(str(path), framework="numpy") as f:  # its NumPy reader has no bfloat16
        assert np.array_equal(f.get_tensor("a.w"), np.arange(4, dtype=np.float16).reshape(2, 2))
    assert [p.name for p in tmp_path.iterdir()] == ["raw.safetensors"]


def test_raw_writer_refuses_wrong_byte_count(tmp_path):
    with pytest.raises(ValueError, match="6 bytes for F32"):
        write_raw_safetensors_atomic(tmp_path / "x.safetensors", {"w": RawTensor("F32", (2,), b"\0" * 6)})
    assert list(tmp_path.iterdir()) == []


def test_encode_tensor_refuses_non_float_target():
    with pytest.raises(UserError, match="I8"):
        encode_tensor(np.zeros(2, np.float32), "I8")


# --------------------------------------------------------------------------- overlays

def test_overlay_arrays_and_files_override_base(tmp_path):
    base = WeightStore(FIXTURES / "tiny-llama")
    name = "model.layers.1.mlp.up_proj.weight"
    zeros = np.zeros(base.shape(name), dtype=np.float32)
    overlay = OverlayStore(base, {name: zeros})
    assert np.array_equal(overlay.get(name), zeros) and overlay.file_of(name) is None
    other = "model.norm.weight"
    assert np.array_equal(overlay.get(other), base.get(other))
    assert overlay.names() == base.names()
    got = overlay.get(name)
    got += 1  # a copy: the overlay's array is not changed
    assert not overlay.get(name).any()

    path = tmp_path / "layer1.safetensors"
    save_safetensors_atomic(path, {name: zeros + 2}, "F32")
    from_files = OverlayStore(base, [path])
    assert np.array_equal(from_files.get(name, np.float64), np.full(zeros.shape, 2.0))
    assert from_files.file_of(name) == path and from_files.dtype(name) == "F32"
    emb = "model.embed_tokens.weight"
    rows = np.array([[3, 0], [255, 3]])
    assert np.array_equal(from_files.get_rows(emb, rows), base.get(emb)[rows])
    assert np.array_equal(base.get_rows(emb, slice(2, 5)), base.get(emb)[2:5])


# --------------------------------------------------------------------------- bad inputs

def copy_fixture(tmp_path: Path, name: str = "tiny-llama") -> Path:
    dest = tmp_path / name
    shutil.copytree(FIXTURES / name, dest)
    return dest


def assert_one_line_naming(exc_info, path):
    message = str(exc_info.value)
    assert "\n" not in message and str(path) in message, message


def test_missing_directory_and_no_safetensors(tmp_path):
    with pytest.raises(UserError, match="not found") as info:
        WeightStore(tmp_path / "nope")
    assert_one_line_naming(info, tmp_path / "nope")
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="no safetensors weights.*bin") as info:
        WeightStore(tmp_path)
    assert_one_line_naming(info, tmp_path)


@pytest.mark.parametrize("keep_bytes", [0, 5, 8, 100, -4])
def test_truncated_file_is_reported_at_open(tmp_path, keep_bytes):
    model_dir = copy_fixture(tmp_path)
    path = model_dir / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:keep_bytes] if keep_bytes >= 0 else data[:keep_bytes])
    with pytest.raises(UserError, match="truncated|corrupt") as info:
        WeightStore(model_dir)
    assert_one_line_naming(info, path)


def test_corrupt_headers(tmp_path):
    model_dir = copy_fixture(tmp_path)
    path = model_dir / "model.safetensors"
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    garbage = data[:8] + b"\xff" * n + data[8 + n:]
    path.write_bytes(garbage)
    with pytest.raises(UserError, match="not valid JSON") as info:
        WeightStore(model_dir)
    assert_one_line_naming(info, path)

    header = json.loads(data[8: 8 + n])
    key = "model.norm.weight"
    begin, end = header[key]["data_offsets"]
    header[key]["data_offsets"] = [begin, end + 4]  # size no longer matches the shape
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data[8 + n:])
    with pytest.raises(UserError, match=key) as info:
        WeightStore(model_dir)
    assert_one_line_naming(info, path)


def test_nan_weight_is_reported_when_read(tmp_path):
    model_dir = copy_fixture(tmp_path)
    path = model_dir / "model.safetensors"
    tensors = library_tensors(path)
    name = "model.layers.1.self_attn.k_proj.weight"
    tensors[name][3, 5] = np.nan
    tensors["model.norm.weight"][0] = np.inf
    save_file(tensors, str(path))
    store = WeightStore(model_dir)  # headers are fine
    store.get("model.layers.0.self_attn.k_proj.weight")
    for bad in (name, "model.norm.weight"):
        with pytest.raises(UserError, match="NaN/inf") as info:
            store.get(bad)
        assert bad in str(info.value)
        assert_one_line_naming(info, path)


def test_index_naming_a_missing_shard_or_key(tmp_path):
    model_dir = copy_fixture(tmp_path, "llama-f16-sharded")
    index_path = model_dir / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    shard = sorted(set(index["weight_map"].values()))[-1]
    (model_dir / shard).unlink()
    with pytest.raises(UserError, match="missing") as info:
        WeightStore(model_dir)
    assert shard in str(info.value)
    assert_one_line_naming(info, index_path)

    model_dir = copy_fixture(tmp_path / "b", "llama-f16-sharded")
    index["weight_map"]["model.extra.weight"] = sorted(set(index["weight_map"].values()))[0]
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match="model.extra.weight"):
        WeightStore(model_dir)

    (model_dir / "model.safetensors.index.json").write_text("{]")
    with pytest.raises(UserError, match="invalid safetensors index"):
        WeightStore(model_dir)


def test_unknown_key_names_the_store_source():
    store = WeightStore(FIXTURES / "tiny-llama")
    with pytest.raises(UserError, match="lm_head.weight") as info:
        store.get("lm_head.weight")
    assert_one_line_naming(info, FIXTURES / "tiny-llama" / "model.safetensors")


# --------------------------------------------------------------------------- pruning masks

def test_masks_file_roundtrip(tmp_path):
    rng = np.random.default_rng(3)
    masks = {"a.weight": rng.random((3, 13)) < 0.5, "b.weight": rng.random((5, 8)) < 0.3}
    write_mask_file(tmp_path / "m.safetensors", masks)
    back = read_mask_file(tmp_path / "m.safetensors")
    assert back.keys() == masks.keys()
    for k in masks:
        np.testing.assert_array_equal(back[k], masks[k])


@given(rows=st.integers(1, 5), cols=st.integers(1, 37), seed=st.integers(0, 2**32 - 1))
def test_masks_are_packed_bits_read_back_exactly(rows, cols, seed):
    """Each row is stored as ceil(C/8) bytes, first column in the top bit (checked against
    np.packbits on the library's own reading of the file), and read back exactly."""
    pruned = np.random.default_rng(seed).random((rows, cols)) < 0.5
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "masks.safetensors"
        write_mask_file(path, {"w": pruned})
        with safe_open(str(path), framework="numpy") as f:
            packed = f.get_tensor("w")
            assert json.loads(f.metadata()["shapes"]) == {"w": [rows, cols]}
        assert packed.dtype == np.uint8 and packed.shape == (rows, (cols + 7) // 8)
        assert np.array_equal(packed, np.packbits(pruned, axis=-1, bitorder="big"))
        np.testing.assert_array_equal(read_mask_file(path)["w"], pruned)


def test_masks_written_by_the_library_are_read(tmp_path):
    """The format is plain safetensors: a file the safetensors library writes reads back."""
    pruned = np.random.default_rng(4).random((4, 11)) < 0.5
    packed = np.packbits(pruned, axis=-1, bitorder="big")
    save_file({"x.weight": packed}, str(tmp_path / "m.safetensors"),
              metadata={"shapes": json.dumps({"x.weight": [4, 11]})})
    np.testing.assert_array_equal(read_mask_file(tmp_path / "m.safetensors")["x.weight"], pruned)


def test_masks_file_errors_name_the_file(tmp_path):
    weights_only = tmp_path / "weights.safetensors"
    save_safetensors_atomic(weights_only, {"w": np.zeros((2, 3), np.float32)})
    with pytest.raises(UserError, match="weights.safetensors has no valid 'shapes'"):
        read_mask_file(weights_only)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"w": np.zeros((2, 1), np.uint8)}, str(wrong), metadata={"shapes": json.dumps({"w": [2, 9]})})
    with pytest.raises(UserError, match="wrong.safetensors: tensor 'w' is not a packed mask"):
        read_mask_file(wrong)
