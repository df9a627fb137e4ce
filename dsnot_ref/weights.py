"""Safetensors in and out, with no PyTorch: a lazy read-only weight store and an atomic writer.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``), then the
raw little-endian tensor bytes, offsets counted from the end of the header. We parse the header
ourselves rather than use ``safe_open(framework="numpy")`` because NumPy has no bfloat16 (so
that reader cannot return BF16 tensors) and because checking every offset against the file size
lets us report a truncated or corrupt file by name, before any data is read.

What is read from a model directory: one source of tensors (``weights_source``):
``model.safetensors``, else ``model.safetensors.index.json`` and the shards it lists, else the
directory's only ``*.safetensors`` file; saving uses the same source's layout.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import validate
from .errors import UserError
from .io_utils import atomic_path

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
MAX_HEADER_BYTES = validate.MAX_SAFETENSORS_HEADER  # the safetensors library's own limit

# safetensors dtype -> NumPy storage dtype (little-endian). BF16 is stored as its 16-bit pattern.
STORAGE_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
FLOAT_CODES = ("F64", "F32", "F16", "BF16")
# names accepted for the ``dtype`` of save_safetensors_atomic (config.json's torch_dtype or a code)
SAVE_DTYPE_NAMES = {
    "float32": "F32", "float": "F32", "F32": "F32",
    "float16": "F16", "half": "F16", "F16": "F16",
    "bfloat16": "BF16", "BF16": "BF16",
    "float64": "F64", "F64": "F64",
}


# ----------------------------------------------------------------------------- bfloat16 bits

def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 patterns -> float32 (exact: bfloat16 is the top half of a float32)."""
    bits = np.asarray(bits, dtype=np.uint16)
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def float32_to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> uint16 bfloat16 patterns, rounding to nearest, ties to even (as torch does).

    Adding 0x7FFF plus the lowest kept bit before truncating rounds half-way cases toward the
    even pattern; the carry into the exponent handles overflow to inf. NaN stays a quiet NaN
    with its sign.
    """
    a = np.asarray(a, dtype=np.float32)
    bits = a.view(np.uint32)
    lsb = (bits >> np.uint32(16)) & np.uint32(1)
    rounded = ((bits + np.uint32(0x7FFF) + lsb) >> np.uint32(16)).astype(np.uint16)
    quiet_nan = ((bits >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return np.where(np.isnan(a), quiet_nan, rounded)


# ----------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor's bytes are: file, dtype code, shape, absolute byte offset and size."""
    file: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def read_header(path: Path) -> dict[str, TensorEntry]:
    """Parse and validate one safetensors header; UserError naming the file if anything is off."""
    return read_header_and_metadata(path)[0]


def read_header_and_metadata(path: Path) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    """The validated tensor entries of a safetensors file and its ``__metadata__`` ({} if none).

    Refuses (UserError naming the file, never echoing its bytes) a non-regular file and every
    header ``validate.safetensors_tensors`` refuses: at least what the ``safetensors`` library
    refuses, checked before any tensor data is read.
    """
    path = validate.regular_file(path, "safetensors file")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            n = validate.safetensors_header_length(f.read(8), size, path)
            header_bytes = f.read(n)
    except OSError as exc:
        raise UserError(f"cannot read safetensors file {path}: {exc.strerror}") from None
    if len(header_bytes) != n:
        raise UserError(f"truncated safetensors file {path}: the header is incomplete")
    data_start = 8 + n
    tensors = validate.safetensors_tensors(header_bytes, size - data_start, path)
    for name, (code, _, _, _) in tensors.items():
        if code not in STORAGE_DTYPES:
            raise UserError(f"unsupported dtype {code} of {name!r} in {path}")
    entries = {name: TensorEntry(path, code, shape, data_start + begin, end - begin)
               for name, (code, shape, begin, end) in tensors.items()}
    header = json.loads(header_bytes.decode("utf-8"))  # checked above: an object of depth <= 64
    return entries, dict(header.get("__metadata__") or {})


@dataclass(frozen=True)
class RawTensor:
    """One tensor as its stored bytes, for byte-exact copies (NumPy has no bfloat16)."""
    dtype: str                # safetensors code, "F32" | "F16" | "BF16" | "U8" ...
    shape: tuple[int, ...]
    data: bytes               # little-endian, C order


def read_raw(entry: TensorEntry, name: str) -> bytes:
    """The stored bytes of one tensor, unconverted."""
    try:
        with open(entry.file, "rb") as f:
            f.seek(entry.offset)
            data = f.read(entry.nbytes)
    except OSError as exc:
        raise UserError(f"cannot read {name!r} from {entry.file}: {exc.strerror}") from None
    if len(data) != entry.nbytes:
        raise UserError(f"truncated safetensors file {entry.file}: {name!r} is incomplete")
    return data


def read_raw_tensors(path: Path) -> tuple[dict[str, RawTensor], dict[str, str]]:
    """Every tensor of one safetensors file as raw bytes, and the file's metadata."""
    entries, metadata = read_header_and_metadata(Path(path))
    tensors = {name: RawTensor(e.dtype, e.shape, read_raw(e, name)) for name, e in entries.items()}
    return tensors, metadata


def read_tensor(entry: TensorEntry, name: str, dtype=np.float32) -> np.ndarray:
    """Read one tensor's bytes and widen floats to ``dtype``; UserError on NaN/inf or I/O error."""
    storage = STORAGE_DTYPES[entry.dtype]
    count = entry.nbytes // storage.itemsize
    try:
        with open(entry.file, "rb") as f:
            f.seek(entry.offset)
            raw = np.fromfile(f, dtype=storage, count=count)
    except OSError as exc:
        raise UserError(f"cannot read {name!r} from {entry.file}: {exc.strerror}") from None
    if raw.size != count:
        raise UserError(f"truncated safetensors file {entry.file}: {name!r} is incomplete")
    raw = raw.reshape(entry.shape)
    if entry.dtype not in FLOAT_CODES:
        return raw
    values = bf16_bits_to_float32(raw) if entry.dtype == "BF16" else raw
    out = values.astype(dtype, copy=values.dtype != np.dtype(dtype))
    if not np.isfinite(out).all():
        n_bad = int(out.size - np.count_nonzero(np.isfinite(out)))
        raise UserError(f"weight {name!r} in {entry.file} has {n_bad} NaN/inf values")
    return out


def read_rows(entry: TensorEntry, name: str, rows, dtype=np.float32) -> np.ndarray:
    """Rows ``rows`` of a 2-D float tensor, read through a memory map (an embedding lookup need
    not read the whole table).   rows [...] int -> [..., C]"""
    storage = STORAGE_DTYPES[entry.dtype]
    if entry.dtype not in FLOAT_CODES or len(entry.shape) != 2:
        return read_tensor(entry, name, dtype)[rows]
    try:
        table = np.memmap(entry.file, dtype=storage, mode="r", offset=entry.offset, shape=entry.shape)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {name!r} from {entry.file}: {exc}") from None
    raw = np.array(table[rows if isinstance(rows, slice) else np.asarray(rows)])
    values = bf16_bits_to_float32(raw) if entry.dtype == "BF16" else raw
    out = values.astype(dtype)
    if not np.isfinite(out).all():
        raise UserError(f"weight {name!r} in {entry.file} has NaN/inf values")
    return out


class WeightStore:
    """Lazy, read-only view of a checkpoint directory: headers now, one tensor at a time later.

    Accepts ``model.safetensors``, or shards listed by ``model.safetensors.index.json``.
    """

    def __init__(self, model_dir: str | os.PathLike):
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise UserError(f"model directory not found: {self.model_dir}")
        self.source = weights_source(self.model_dir)  # the file named in "missing key" errors
        self._entries = collect_entries(self.model_dir, self.source)

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def entry(self, name: str) -> TensorEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise UserError(f"weight {name!r} not found in {self.source}") from None

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entry(name).shape

    def dtype(self, name: str) -> str:
        return self.entry(name).dtype

    def file_of(self, name: str) -> Path:
        return self.entry(name).file

    def get(self, name: str, dtype=np.float32) -> np.ndarray:
        return read_tensor(self.entry(name), name, dtype)

    def get_rows(self, name: str, rows, dtype=np.float32) -> np.ndarray:
        """``get(name, dtype)[rows]`` without reading the rest of the tensor."""
        return read_rows(self.entry(name), name, rows, dtype)


def weights_source(model_dir: Path) -> Path:
    """The one source of a checkpoint's tensors, for loading and for saving alike.

    In transformers' order: ``model.safetensors``; else the index ``model.safetensors.index.json``
    that lists the shards; else the directory's only ``*.safetensors`` file. A directory holding
    both a ``model.safetensors`` and an index (a download with both layouts) is read from
    ``model.safetensors``, as transformers reads it, and a pruned copy is saved in that layout
    too (``save.weight_files``); the shards are not read. Every file must stay in the model
    directory (``validate.model_file``: a hub snapshot's links into its blobs stay). UserError
    when there is no source.
    """
    single, index = model_dir / SINGLE_FILE, model_dir / INDEX_FILE
    if single.exists() or single.is_symlink():
        return validate.model_file(model_dir, SINGLE_FILE, "safetensors file")
    if index.exists() or index.is_symlink():
        return validate.model_file(model_dir, INDEX_FILE, "safetensors index")
    found = sorted(p.name for p in model_dir.glob("*.safetensors"))
    if len(found) == 1:
        return validate.model_file(model_dir, found[0], "safetensors file")
    hint = " (PyTorch .bin checkpoints are not supported)" if any(model_dir.glob("*.bin")) else ""
    raise UserError(f"no safetensors weights in {model_dir}: expected {SINGLE_FILE} or "
                    f"{INDEX_FILE}{hint}")


def collect_entries(model_dir: Path, source: Path) -> dict[str, TensorEntry]:
    if source.name != INDEX_FILE:
        return read_header(source)
    shard_of = read_index(source)
    shard_paths = {shard: validate.shard_path(shard, model_dir, source) for shard in set(shard_of.values())}
    entries: dict[str, TensorEntry] = {}
    for shard in sorted(shard_paths):
        shard_path = shard_paths[shard]
        if not shard_path.exists():
            raise UserError(f"shard {shard} listed in {source} is missing")
        for name, entry in read_header(shard_path).items():
            if shard_of.get(name) == shard:
                entries[name] = entry
    missing = [name for name in shard_of if name not in entries]
    if missing:
        raise UserError(f"weight {missing[0]!r} listed in {source} is not in its shard "
                        f"{shard_of[missing[0]]}")
    return {name: entries[name] for name in sorted(entries)}


def read_index(path: Path) -> dict[str, str]:
    """The weight_map of a shard index; refuses bad JSON, bad types and shard names that are
    not plain file names inside the index's directory (checked before any shard is opened)."""
    path = Path(path)
    index = validate.read_json_file(path, "safetensors index")
    weight_map = validate.index_weight_map(index, path)
    for shard in set(weight_map.values()):
        validate.shard_path(shard, path.parent, path)
    return weight_map


class OverlayStore:
    """A WeightStore whose tensors in ``overrides`` replace (or add to) the base's.

    ``overrides`` is either a mapping of arrays (kept as given, returned as copies) or a list of
    safetensors files (for example the pruned layer files the pipeline writes), read lazily.
    """

    def __init__(self, base, overrides: Mapping[str, np.ndarray] | list[Path]):
        self.base = base
        self.model_dir = getattr(base, "model_dir", None)
        self.source = getattr(base, "source", None)
        self._arrays: dict[str, np.ndarray] = {}
        self._entries: dict[str, TensorEntry] = {}
        if isinstance(overrides, Mapping):
            self._arrays = dict(overrides)
        else:
            for path in overrides:
                self._entries.update(read_header(Path(path)))

    def _is_override(self, name: str) -> bool:
        return name in self._arrays or name in self._entries

    def names(self) -> list[str]:
        base = self.base.names()
        known = set(base)
        extra = [n for n in list(self._entries) + list(self._arrays) if n not in known]
        return base + sorted(set(extra))

    def __contains__(self, name: str) -> bool:
        return self._is_override(name) or name in self.base

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self._arrays:
            return tuple(self._arrays[name].shape)
        if name in self._entries:
            return self._entries[name].shape
        return self.base.shape(name)

    def dtype(self, name: str) -> str:
        if name in self._arrays:
            return numpy_to_code(self._arrays[name].dtype)
        if name in self._entries:
            return self._entries[name].dtype
        return self.base.dtype(name)

    def file_of(self, name: str) -> Path | None:
        if name in self._arrays:
            return None
        if name in self._entries:
            return self._entries[name].file
        return self.base.file_of(name)

    def get(self, name: str, dtype=np.float32) -> np.ndarray:
        if name in self._arrays:
            a = self._arrays[name]
            return a.astype(dtype) if np.issubdtype(a.dtype, np.floating) else a.copy()
        if name in self._entries:
            return read_tensor(self._entries[name], name, dtype)
        return self.base.get(name, dtype)

    def get_rows(self, name: str, rows, dtype=np.float32) -> np.ndarray:
        if name in self._arrays:
            return self._arrays[name][rows].astype(dtype)
        if name in self._entries:
            return read_rows(self._entries[name], name, rows, dtype)
        if hasattr(self.base, "get_rows"):
            return self.base.get_rows(name, rows, dtype)
        return self.base.get(name, dtype)[rows]


# ----------------------------------------------------------------------------- writing

def numpy_to_code(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    for code, storage in STORAGE_DTYPES.items():
        if code != "BF16" and storage == dtype.newbyteorder("<"):
            return code
    raise UserError(f"cannot store arrays of dtype {dtype} in safetensors")


@dataclass(frozen=True)
class PendingTensor:
    """A tensor whose bytes are made only when the writer reaches it (one tensor in memory).

    ``write(f)`` writes exactly the tensor's stored bytes (little-endian, C order) to ``f``.
    """
    dtype: str                # safetensors code
    shape: tuple[int, ...]
    write: Callable[[BinaryIO], None]


def stored_nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    """Bytes of a stored tensor: product of the shape times the code's item size."""
    return int(np.prod(shape, dtype=np.int64)) * STORAGE_DTYPES[dtype].itemsize


def encode_tensor(a: np.ndarray, float_code: str) -> RawTensor:
    """One array as stored bytes; floats go to ``float_code`` ("F64", "F32", "F16", "BF16",
    rounding to nearest), integer and bool arrays keep their type."""
    code, stored = encode_array(a, float_code)
    return RawTensor(code, tuple(stored.shape), stored.tobytes())


def encode_array(a: np.ndarray, float_code: str) -> tuple[str, np.ndarray]:
    """(code, array of the stored type) of one array; see :func:`encode_tensor`. No copy when
    ``a`` already has the stored type and is contiguous."""
    if float_code not in FLOAT_CODES:
        raise UserError(f"cannot save a tensor as dtype {float_code}; supported: {', '.join(FLOAT_CODES)}")
    a = np.ascontiguousarray(a)
    if np.issubdtype(a.dtype, np.floating):
        if float_code == "BF16":
            return float_code, float32_to_bf16_bits(a.astype(np.float32, copy=False)).astype("<u2", copy=False)
        return float_code, a.astype(STORAGE_DTYPES[float_code], copy=False)
    code = numpy_to_code(a.dtype)
    return code, a.astype(STORAGE_DTYPES[code], copy=False)


def pending_encoded(a: np.ndarray, float_code: str) -> PendingTensor:
    """``encode_tensor(a, float_code)``, encoded only when written (no second copy of ``a``)."""
    a = np.asarray(a)
    code = float_code if np.issubdtype(a.dtype, np.floating) else numpy_to_code(a.dtype)
    if float_code not in FLOAT_CODES:
        raise UserError(f"cannot save a tensor as dtype {float_code}; supported: {', '.join(FLOAT_CODES)}")
    def write(f):
        f.write(encode_array(a, float_code)[1].reshape(-1).view(np.uint8).data)

    return PendingTensor(code, tuple(a.shape), write)


def pending_copy(entry: TensorEntry, name: str, block_bytes: int = 16 * 1024 * 1024) -> PendingTensor:
    """The stored bytes of ``entry``, copied from its file ``block_bytes`` at a time when written."""

    def write(f: BinaryIO) -> None:
        try:
            with open(entry.file, "rb") as src:
                src.seek(entry.offset)
                left = entry.nbytes
                while left > 0:
                    block = src.read(min(block_bytes, left))
                    if not block:
                        raise UserError(f"truncated safetensors file {entry.file}: {name!r} is incomplete")
                    f.write(block)
                    left -= len(block)
        except OSError as exc:
            raise UserError(f"cannot read {name!r} from {entry.file}: {exc.strerror}") from None

    return PendingTensor(entry.dtype, entry.shape, write)


def save_safetensors_atomic(path: str | os.PathLike, tensors: dict[str, np.ndarray],
                            dtype: str = "F32", metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` as one safetensors file, atomically (temporary name, then rename).

    Floating arrays are stored as ``dtype`` ("F32", "F16", "BF16", "F64", or a torch dtype name
    such as "bfloat16"); BF16 rounds to nearest even. Integer and bool arrays keep their type.
    Each array is encoded as it is written, so at most one encoded copy exists at a time.
    """
    if dtype not in SAVE_DTYPE_NAMES:
        raise UserError(f"cannot save weights as dtype {dtype!r}; choose one of "
                        f"{', '.join(sorted(set(SAVE_DTYPE_NAMES.values())))}")
    float_code = SAVE_DTYPE_NAMES[dtype]
    pending = {name: pending_encoded(array, float_code) for name, array in tensors.items()}
    write_raw_safetensors_atomic(path, pending, metadata)


def safetensors_header(tensors: Mapping[str, RawTensor | PendingTensor],
                       metadata: Mapping[str, str] | None = None) -> bytes:
    """The header JSON, padded with spaces to a multiple of 8 bytes, for tensors written in the
    mapping's order; only dtypes and shapes are needed. ValueError when a RawTensor's bytes do
    not match its dtype and shape (a bug, not a user error)."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, t in tensors.items():
        expected = stored_nbytes(t.dtype, t.shape)
        if isinstance(t, RawTensor) and len(t.data) != expected:
            raise ValueError(f"{name}: {len(t.data)} bytes for {t.dtype}{list(t.shape)}")
        header[name] = {"dtype": t.dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + expected]}
        offset += expected
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return header_bytes + b" " * (-len(header_bytes) % 8)  # data start aligned to 8 bytes, as the spec allows


def write_raw_safetensors_atomic(path: str | os.PathLike, tensors: Mapping[str, RawTensor | PendingTensor],
                                 metadata: Mapping[str, str] | None = None) -> None:
    """Write tensors, in the mapping's order, as one safetensors file, atomically.

    The header goes first (every size follows from dtype and shape), then each tensor's bytes in
    turn: a ``PendingTensor`` is made only when its turn comes, so a file of pending tensors is
    written holding one tensor at a time. ValueError when a tensor's bytes do not match its
    dtype and shape (a bug, not a user error); the temporary file is then removed.
    """
    header_bytes = safetensors_header(tensors, metadata)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for name, t in tensors.items():
            if isinstance(t, RawTensor):
                f.write(t.data)
                continue
            start = f.tell()
            t.write(f)
            if f.tell() - start != stored_nbytes(t.dtype, t.shape):
                raise ValueError(f"{name}: wrote {f.tell() - start} bytes for {t.dtype}{list(t.shape)}")


# ----------------------------------------------------------------------------- pruning masks
# One uint8 tensor per weight name, np.packbits(pruned, axis=-1, bitorder="big") (bit 1 =
# pruned, rows padded to whole bytes), and the unpacked shapes as JSON in the header metadata.
# The run directory's per-layer masks and a saved model's masks.safetensors use this format.

MASKS_FORMAT = "dsnot_ref-masks"
MASK_PACKING = 'np.packbits(pruned, axis=-1, bitorder="big"); bit 1 = pruned'


def write_mask_file(path: str | os.PathLike, masks: Mapping[str, np.ndarray]) -> None:
    """name -> pruned [R, C] bool, packed to [R, ceil(C/8)] uint8, written atomically in name order."""
    tensors, shapes = {}, {}
    for name in sorted(masks):
        pruned = np.asarray(masks[name], dtype=np.bool_)  # [R, C]
        packed = np.packbits(pruned, axis=-1, bitorder="big")  # [R, ceil(C/8)] uint8
        tensors[name] = RawTensor("U8", tuple(packed.shape), packed.tobytes())
        shapes[name] = list(pruned.shape)
    metadata = {"format": MASKS_FORMAT, "packing": MASK_PACKING, "shapes": json.dumps(shapes, sort_keys=True)}
    write_raw_safetensors_atomic(path, tensors, metadata)


def read_mask_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Inverse of :func:`write_mask_file`: name -> pruned [R, C] bool; UserError naming the file."""
    path = Path(path)
    tensors, metadata = read_raw_tensors(path)
    if "shapes" not in metadata:
        raise UserError(f"masks file {path} has no valid 'shapes' metadata; not a dsnot_ref masks file")
    shapes = validate.parse_json(metadata["shapes"], path, "masks file (its 'shapes' metadata)")
    if not isinstance(shapes, dict):
        raise UserError(f"masks file {path}: 'shapes' metadata is not an object of shapes")
    masks = {}
    for name, raw in tensors.items():
        shape = shapes.get(name)
        if not isinstance(shape, list) or not shape or not all(validate.is_u64(d) for d in shape):
            raise UserError(f"masks file {path}: the 'shapes' metadata of {name!r} is not a shape")
        shape = tuple(shape)
        if raw.dtype != "U8" or raw.shape != (*shape[:-1], -(-shape[-1] // 8)):
            raise UserError(f"masks file {path}: tensor {name!r} is not a packed mask")
        packed = np.frombuffer(raw.data, dtype=np.uint8).reshape(raw.shape)
        bits = np.unpackbits(packed, axis=-1, count=shape[-1], bitorder="big")  # drop the padding
        masks[name] = bits.astype(np.bool_).reshape(shape)
    return masks


class MaskFiles(Mapping):
    """name -> pruned [R, C] bool over several mask files (the format above), read from disk
    when asked: only the names are kept, and the last file read (one layer's masks)."""

    def __init__(self, paths):
        self._file_of: dict[str, Path] = {}
        for path in paths:
            self._file_of.update(dict.fromkeys(read_header(Path(path)), Path(path)))
        self._last: tuple[Path | None, dict[str, np.ndarray]] = (None, {})

    def __getitem__(self, name: str) -> np.ndarray:
        path = self._file_of[name]
        if self._last[0] != path:
            self._last = (path, read_mask_file(path))
        return self._last[1][name]

    def __iter__(self):
        return iter(self._file_of)

    def __len__(self) -> int:
        return len(self._file_of)
