"""Saving a pruned model as a normal Hugging Face directory, and reading its masks back (I/O).

What ``save_pruned_model`` writes into the output directory:

- ``config.json`` and every tokenizer/generation file of the input, copied byte for byte;
- the weights, as safetensors with the same tensor names, in each tensor's INPUT dtype
  (F32, F16 or BF16), sharded exactly like the input (same file names, same membership, and a
  ``model.safetensors.index.json``) when the input was sharded. Tensors that were not pruned
  are copied byte for byte from the input; pruned linear weights are rounded from our float32
  values to the input dtype (exact for magnitude/Wanda/DSnoT, which never change a kept value);
- ``masks.safetensors``: the pruning mask of every pruned linear weight, so that the exact
  sparsity pattern survives a dtype change (a kept weight that rounds to zero in float16 is
  still a kept weight). Format, one tensor per weight name:

      packed = np.packbits(pruned, axis=-1, bitorder="big")     # [R, C] bool -> [R, ceil(C/8)] uint8

  a 1 bit means pruned (weight set to zero). The header metadata holds ``"shapes"`` (JSON
  object: name -> [R, C], needed to drop the padding bits) and ``"packing"`` (the line above).

The directory is replaced by renames (``io_utils.atomic_directory``): a process killed at any
point leaves the old model or, once the new one was complete, a state the next save (or the
next ``prune --save-model`` check) finishes into the new one. An existing empty directory (a
mount point) is filled in place. The input directory is never written to.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import validate
from .errors import UserError
from .validate import apart_from_model
from .io_utils import atomic_directory, directory_lock, repair_directory
from .weights import (
    INDEX_FILE,
    SINGLE_FILE,
    STORAGE_DTYPES,
    PendingTensor,
    RawTensor,
    TensorEntry,
    encode_tensor,
    pending_copy,
    read_header_and_metadata,
    read_index,
    read_raw,
    write_mask_file,
    weights_source,
    write_raw_safetensors_atomic,
)
from .weights import read_mask_file

MASKS_FILE = "masks.safetensors"
# Everything of an HF directory that is not a weight file and that a loader may want.
COPIED_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
)
# --- the layout of an input directory ------------------------------------------------------


def weight_files(model_dir: Path) -> list[str]:
    """File names of the checkpoint's weights, in order: the shards of the index, else the one
    file; the same source ``weights.weights_source`` loads from, so a model is saved in the
    layout it was read in (a directory with both layouts is read and saved as model.safetensors)."""
    source = weights_source(Path(model_dir))
    if source.name == INDEX_FILE:
        return sorted(set(read_index(source).values()))
    return [source.name]


def check_output_dir(input_dir, output_dir, overwrite: bool) -> None:
    """Refuse, before any work, an output that would clobber the input or cannot be written.

    The output may not be the input directory, inside it, or contain it; an existing non-empty
    output needs ``overwrite``; the nearest existing ancestor must be writable.
    """
    apart_from_model(output_dir, "output directory", input_dir)
    out = Path(output_dir).resolve()
    if out.parent.is_dir():  # finish or undo a save that a killed process left half done
        with directory_lock(out):
            repair_directory(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {output_dir} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"output directory {output_dir} exists and is not empty (use --overwrite)")
    check_writable_parent(out)


def check_writable_parent(path) -> None:
    """UserError unless the nearest existing ancestor of ``path`` is a writable directory."""
    parent = Path(path).resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"no write permission in {parent} (needed for {path})")


# --- masks ---------------------------------------------------------------------------------


def read_saved_masks(model_dir) -> dict[str, np.ndarray] | None:
    """The masks saved with a pruned model (name -> pruned [R, C] bool), or None if it has none."""
    path = Path(model_dir) / MASKS_FILE
    if not path.exists() and not path.is_symlink():
        return None  # anything else there (a FIFO, a directory) is refused by the reader
    return read_mask_file(path)


# --- saving --------------------------------------------------------------------------------


def save_pruned_model(input_dir, output_dir, store, masks: Mapping[str, np.ndarray], *,
                      overwrite: bool = False) -> Path:
    """Write the pruned model as an HF directory beside its masks; return the output path.

    input_dir: the original HF directory (config, tokenizer files, weight files and layout).
    store: the pruned weights (``OverlayStore`` or anything with ``get(name, dtype)``); read
        only for the names in ``masks``, every other tensor is copied from the input's bytes.
    masks: full weight name (e.g. "model.layers.0.self_attn.q_proj.weight") -> pruned [R, C];
        any mapping (``weights.MaskFiles`` reads them from disk when asked).

    Memory: each weight file is written header first (the input's header gives every dtype and
    shape), then one tensor at a time, each read from the input or the store only when its turn
    comes; the peak is one tensor, whatever the size of the shard.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    check_output_dir(input_dir, output_dir, overwrite)
    files = weight_files(input_dir)
    with atomic_directory(output_dir, overwrite=overwrite) as tmp:
        copy_side_files(input_dir, tmp)
        found: set[str] = set()
        for file_name in files:
            entries, metadata = read_header_and_metadata(input_dir / file_name)
            pruned_here = entries.keys() & masks.keys()
            tensors = {
                name: (pending_pruned(name, entries[name], store, masks) if name in pruned_here
                       else pending_copy(entries[name], name))
                for name in sorted(entries)  # the order we write them in
            }
            found |= pruned_here
            metadata = {"format": "pt", **metadata}  # transformers refuses files without a format
            write_raw_safetensors_atomic(tmp / file_name, tensors, metadata)
        missing = sorted(masks.keys() - found)
        if missing:
            raise ValueError(f"pruned tensors not in the input checkpoint: {missing[:3]}")
        if weights_source(input_dir).name == INDEX_FILE:  # same names, files and dtypes: the index holds
            shutil.copy2(input_dir / INDEX_FILE, tmp / INDEX_FILE)
        write_mask_file(tmp / MASKS_FILE, masks)
    return output_dir


def copy_side_files(input_dir: Path, out_dir: Path) -> None:
    """Copy config, tokenizer and generation files that exist in the input (their contents: a
    hub snapshot's links into its blobs become plain files; a link leaving the model is refused)."""
    for name in COPIED_FILES:
        if (input_dir / name).exists() or (input_dir / name).is_symlink():
            shutil.copyfile(validate.model_file(input_dir, name, "model file"), out_dir / name)


def pending_pruned(name: str, original: TensorEntry, store, masks: Mapping[str, np.ndarray]) -> PendingTensor:
    """The pruned weight of ``name``, read from the store and encoded only when written."""
    return PendingTensor(original.dtype, original.shape,
                         lambda f: f.write(pruned_tensor(name, original, store, masks[name]).data))


def pruned_tensor(name: str, original: TensorEntry | RawTensor, store, pruned: np.ndarray) -> RawTensor:
    """The pruned weight of ``name`` in the original's dtype; zeros exactly where ``pruned``."""
    weight = np.asarray(store.get(name, dtype=np.float32), dtype=np.float32)  # [R, C]
    pruned = np.asarray(pruned)
    if weight.shape != original.shape or pruned.shape != original.shape:
        raise ValueError(f"{name}: pruned weight {weight.shape} / mask {pruned.shape} vs input {original.shape}")
    if np.any(weight[pruned] != 0):
        raise ValueError(f"{name}: the pruned weights are not zero where the mask says pruned")
    return encode_tensor(weight, original.dtype)


# --- comparing the masks of two pruned models ------------------------------------------------


def zero_mask(raw: RawTensor) -> np.ndarray:
    """pruned = (weight == 0) of a raw float tensor, read on the bits (works for BF16 too).

    A float is ±0 exactly when every bit but the sign bit is clear.
    """
    size = STORAGE_DTYPES[raw.dtype].itemsize
    if raw.dtype not in ("F64", "F32", "F16", "BF16"):
        raise ValueError(f"not a float tensor: {raw.dtype}")
    bits = np.frombuffer(raw.data, dtype=f"<u{size}").reshape(raw.shape)
    magnitude_bits = np.array((1 << (8 * size - 1)) - 1, dtype=f"<u{size}")
    return (bits & magnitude_bits) == 0


def is_linear_weight(name: str, raw: TensorEntry | RawTensor) -> bool:
    """A prunable linear weight: a 2-D ``.weight`` inside a decoder layer (not embeddings, LM
    head or norms), for both families ("model.layers.i." and "model.decoder.layers.i.")."""
    return ".layers." in name and name.endswith(".weight") and len(raw.shape) == 2


def model_masks(model_dir) -> tuple[dict[str, np.ndarray], str]:
    """(name -> pruned [R, C], source) of a pruned model directory.

    ``masks.safetensors`` when there is one (ours), after checking it against the weights
    (``check_masks_match_weights``); otherwise ``weight == 0`` for every linear weight, which is
    what another implementation's output (e.g. the official code's ``save_pretrained``) gives us.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(f"model directory {model_dir} does not exist")
    saved = read_saved_masks(model_dir)
    if saved is None:
        masks = dict(weight_zero_masks(model_dir))
        if not masks:
            raise UserError(f"no linear layer weights found in {model_dir}")
        return masks, "weight == 0"
    check_masks_match_weights(saved, model_dir)
    return saved, MASKS_FILE


def weight_zero_masks(model_dir: Path):
    """(name, weight == 0 [R, C]) of every linear layer weight, one tensor read at a time."""
    for file_name in weight_files(model_dir):
        entries, _ = read_header_and_metadata(model_dir / file_name)
        for name, entry in entries.items():
            if is_linear_weight(name, entry):
                if entry.dtype not in ("F64", "F32", "F16", "BF16"):
                    raise UserError(f"linear weight {name!r} in {entry.file} has dtype {entry.dtype}, not a float")
                yield name, zero_mask(RawTensor(entry.dtype, entry.shape, read_raw(entry, name)))


def check_masks_match_weights(saved: Mapping[str, np.ndarray], model_dir) -> None:
    """A masks.safetensors vouches for the weights beside it: it covers every linear weight,
    with its shape, and every weight it calls pruned is zero (a kept weight may be zero too,
    rounded to zero in float16). UserError naming the first contradiction."""
    path = Path(model_dir) / MASKS_FILE
    seen = set()
    for name, zeros in weight_zero_masks(Path(model_dir)):
        seen.add(name)
        if name not in saved:
            raise UserError(f"{path} contradicts the weights of {model_dir}: it has no mask for {name!r}")
        if saved[name].shape != zeros.shape:
            raise UserError(f"{path} contradicts the weights of {model_dir}: the mask of {name!r} has shape "
                            f"{list(saved[name].shape)}, the weight {list(zeros.shape)}")
        nonzero_pruned = int(np.count_nonzero(saved[name] & ~zeros))
        if nonzero_pruned:
            raise UserError(f"{path} contradicts the weights of {model_dir}: {nonzero_pruned} weights of "
                            f"{name!r} it calls pruned are not zero")
    extra = sorted(saved.keys() - seen)
    if extra:
        raise UserError(f"{path} contradicts the weights of {model_dir}: it has a mask for {extra[0]!r}, "
                        "not a linear weight of the model")


@dataclass(frozen=True)
class MaskComparison:
    """How two masks of one linear weight agree."""

    name: str
    shape: tuple[int, int]
    identical_fraction: float  # fraction of entries with the same pruned/kept state
    rows_differ: int  # output rows with at least one differing entry
    sparsity_a: float  # fraction pruned in A
    sparsity_b: float
    first_rows: tuple[int, ...] = ()  # the lowest differing rows, at most FIRST_ROWS of them


FIRST_ROWS = 5  # differing rows named per weight by compare-masks


def compare_mask_sets(a: dict[str, np.ndarray], b: dict[str, np.ndarray], label_a: str,
                      label_b: str) -> list[MaskComparison]:
    """Per weight name, the agreement of masks ``a`` and ``b``; UserError if names or shapes differ."""
    only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    if only_a or only_b:
        where = f"only in {label_a}: {only_a[:3]}" if only_a else f"only in {label_b}: {only_b[:3]}"
        raise UserError(f"the two models prune different tensors ({where})")
    out = []
    for name in sorted(a, key=natural_key):
        pa, pb = a[name], b[name]
        if pa.shape != pb.shape:
            raise UserError(f"tensor {name} has shape {list(pa.shape)} in {label_a} but {list(pb.shape)} in {label_b}")
        if pa.ndim != 2 or pa.size == 0:
            raise UserError(f"tensor {name} has a mask of shape {list(pa.shape)}: not a weight matrix [R, C]")
        differ = pa != pb  # [R, C] bool
        rows = np.flatnonzero(differ.any(axis=-1))
        out.append(
            MaskComparison(
                name=name,
                shape=tuple(pa.shape),
                identical_fraction=1.0 - float(differ.mean()),
                rows_differ=int(rows.size),
                sparsity_a=float(pa.mean()),
                sparsity_b=float(pb.mean()),
                first_rows=tuple(int(r) for r in rows[:FIRST_ROWS]),
            )
        )
    return out


def natural_key(name: str) -> list:
    """Sort key that puts layers.2 before layers.10."""
    return [int(part) if part.isdigit() else part for part in name.split(".")]
