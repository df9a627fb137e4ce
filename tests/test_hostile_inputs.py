"""Hostile and careless inputs: every one is refused with exit status 2 and one line naming the
file (or flag) and the problem, no traceback, nothing created or changed, in bounded time and
memory.

Each case builds its own sandbox directory (a copy of a tiny fixture model, a small corpus, the
crafted file), hashes it, runs one `dsnot-ref` command line as its own process under an
address-space limit and a timeout (tests/hostile_runner.py forks one child per case from an
interpreter that imported the CLI once, which keeps ~130 processes fast), and hashes it again.
A few cases also run as plain ``python -m dsnot_ref`` subprocesses. Below them: hypothesis
fuzzing of the safetensors header, config and shard-index validators, including a differential
check against the ``safetensors`` library.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import resource
import shutil
import stat
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "data" / "fixtures"
GOLDEN = ROOT / "data" / "golden" / "wanda_u50_reference.npz"
RUNNER = Path(__file__).resolve().parent / "hostile_runner.py"
LIMIT_AS = 3 * 2**30          # address space of each command
TIMEOUT = 60.0                # seconds per command (the slowest case takes a few)
DEEP = "[" * 100_000 + "]" * 100_000
ERROR_LINE = re.compile(r"^dsnot-ref(?: [\w-]+)?: error: ")


# --- building sandboxes ------------------------------------------------------------------------


def model(d: Path, fixture: str = "tiny-llama") -> Path:
    shutil.copytree(FIXTURES / fixture, d / "m")
    (d / "m" / "logits.npz").unlink()
    return d / "m"


def corpus(d: Path) -> None:
    text = " ".join(f"word{i % 37} and more text number {i}." for i in range(300))
    (d / "calib.txt").write_text(text)
    (d / "eval.txt").write_text(text)


def st_split(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def st_write(path: Path, header, data: bytes, declared: int | None = None) -> None:
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob) if declared is None else declared) + blob + data)


def st_edit(edit, fixture: str = "tiny-llama"):
    """A setup that copies the model and rewrites its safetensors header with ``edit(header)``."""

    def setup(d: Path) -> None:
        m = model(d, fixture)
        corpus(d)
        path = m / "model.safetensors"
        header, data = st_split(path)
        result = edit(header)
        st_write(path, header if result is None else result, data)

    return setup


def entry(header: dict, suffix: str) -> dict:
    return header[next(k for k in header if k.endswith(suffix))]


def config_edit(edit, fixture: str = "tiny-llama"):
    def setup(d: Path) -> None:
        m = model(d, fixture)
        corpus(d)
        raw = json.loads((m / "config.json").read_text())
        result = edit(raw)
        text = result if isinstance(result, (str, bytes)) else json.dumps(raw)
        (m / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())

    return setup


def index_edit(edit):
    def setup(d: Path) -> None:
        m = model(d, "llama-f16-sharded")
        corpus(d)
        path = m / "model.safetensors.index.json"
        index = json.loads(path.read_text())
        result = edit(index, d, m)
        path.write_text(result if isinstance(result, str) else json.dumps(index))

    return setup


def first_shard(index: dict) -> str:
    return sorted(set(index["weight_map"].values()))[0]


def point_all(index: dict, shard: str) -> None:
    old = first_shard(index)
    index["weight_map"] = {k: (shard if v == old else v) for k, v in index["weight_map"].items()}


def outside_shard(index: dict, d: Path, m: Path, name: str) -> None:
    """Move the first shard out of the model directory and name it by ``name`` in the index."""
    old = first_shard(index)
    (d / "elsewhere").mkdir()
    shutil.move(m / old, d / "elsewhere" / "model.safetensors")
    point_all(index, name.format(d=d))


def fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    os.mkfifo(path)


def npy_header_only(path_or_buffer, shape, descr="<i8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def golden_with(d: Path, **replace) -> Path:
    """A copy of a committed golden file with some arrays replaced (raw .npy bytes or arrays)."""
    out = d / "case.npz"
    with np.load(GOLDEN, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    with zipfile.ZipFile(out, "w") as zf:
        for key, value in {**arrays, **replace}.items():
            if value is None:
                continue
            if isinstance(value, bytes):
                zf.writestr(f"{key}.npy", value)
            else:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(value), allow_pickle=True)
                zf.writestr(f"{key}.npy", buf.getvalue())
    return out


def zip_with(path: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(name, data)


def results_file(d: Path, edit) -> None:
    results = {"settings": {"model": "m", "prune_method": "wanda", "sparsity_ratio": 0.5},
               "layers": [{"name": "0.q_proj", "sparsity": 0.5, "swaps": 3, "eps_before": 1.0}],
               "sparsity": {"requested": 0.5, "overall": 0.5, "per_layer": {"a": 0.5}},
               "perplexity": {"pruned": {"perplexity": 10.0, "n_windows": 1, "seqlen": 16}},
               "times": {"load": 0.1}}
    result = edit(results)
    text = result if isinstance(result, (str, bytes)) else json.dumps(results)
    (d / "r.json").write_bytes(text if isinstance(text, bytes) else text.encode())


def masks_model(d: Path, metadata: dict) -> None:
    """A pruned-looking model directory whose masks.safetensors has the given metadata."""
    m = model(d)
    packed = np.zeros((4, 1), np.uint8)
    header = {"__metadata__": metadata, "model.layers.0.mlp.down_proj.weight":
              {"dtype": "U8", "shape": [4, 1], "data_offsets": [0, 4]}}
    st_write(m / "masks.safetensors", header, packed.tobytes())


# --- the cases -------------------------------------------------------------------------------

M, D = "{d}/m", "{d}"
EVAL = ["eval", "--model", M, "--dataset", "{d}/eval.txt", "--seqlen", "16", "--max-windows", "1", "--quiet"]
PRUNE = ["prune", "--model", M, "--prune-method", "wanda", "--sparsity-ratio", "0.5", "--nsamples", "2",
         "--seqlen", "16", "--calibration", "{d}/calib.txt", "--eval-dataset", "none", "--quiet"]
PRUNE_OUT = [*PRUNE, "--save-model", "{d}/out", "--results", "{d}/r.json", "--run-dir", "{d}/run"]


@dataclass
class Case:
    id: str
    setup: object                      # callable(d: Path) -> None
    argv: list[str]
    expect: tuple[str, ...]            # substrings of the error line (the problem)
    names: str                         # the file or flag the line must name
    forbid: tuple[str, ...] = ()       # substrings that must not appear (e.g. echoed bytes)
    env: dict = field(default_factory=dict)


def both(*fns):
    def setup(d: Path) -> None:
        for fn in fns:
            fn(d)
    return setup


def plain(d: Path) -> None:
    model(d)
    corpus(d)


CASES: list[Case] = []


def case(id, setup, argv, expect, names, **kw):
    CASES.append(Case(id, setup, argv, (expect,) if isinstance(expect, str) else tuple(expect), names, **kw))


# safetensors headers: at least what the safetensors library refuses
ST = "model.safetensors"
case("st-overlap", st_edit(lambda h: entry(h, "0.post_attention_layernorm.weight").update(
    data_offsets=entry(h, "0.input_layernorm.weight")["data_offsets"])), PRUNE_OUT, "overlaps", ST)
case("st-gap", st_edit(lambda h: h.pop("model.layers.0.input_layernorm.weight") and None), EVAL, "gap", ST)
case("st-trailing-bytes", lambda d: (plain(d), open(d / "m" / ST, "ab").write(b"\0" * 16)), EVAL, "cover", ST)
case("st-count-overflow", st_edit(lambda h: entry(h, "model.norm.weight").update(shape=[2**32, 2**32, 16])),
     EVAL, "overflows", ST)
case("st-count-wraps-int64", st_edit(lambda h: entry(h, "model.norm.weight").update(shape=[2**32, 2**31])),
     EVAL, "overflows", ST)
case("st-bytes-overflow", st_edit(lambda h: entry(h, "model.norm.weight").update(shape=[2**31, 2**31, 4])),
     EVAL, "overflows", ST)
case("st-shape-negative", st_edit(lambda h: entry(h, "model.norm.weight").update(shape=[-64])), EVAL, "shape", ST)
case("st-shape-float", st_edit(lambda h: entry(h, "model.norm.weight").update(shape=[64.0])), EVAL, "shape", ST)
case("st-shape-bool", st_edit(lambda h: entry(h, "model.norm.weight").update(shape=[True])),
     EVAL, "shape", ST)
case("st-shape-string", st_edit(lambda h: entry(h, "model.norm.weight").update(shape="64")), EVAL, "shape", ST)
case("st-dtype-list", st_edit(lambda h: entry(h, "model.norm.weight").update(dtype=["F32"])), EVAL, "dtype", ST)
case("st-dtype-int", st_edit(lambda h: entry(h, "model.norm.weight").update(dtype=4)), EVAL, "dtype", ST)
case("st-dtype-unknown", st_edit(lambda h: entry(h, "model.norm.weight").update(dtype="F128")), EVAL, "dtype", ST)
case("st-dtype-fp8", st_edit(lambda h: entry(h, "model.norm.weight").update(
    dtype="F8_E4M3", shape=[256])), EVAL, "unsupported dtype", ST)
case("st-offsets-three", st_edit(lambda h: entry(h, "model.norm.weight").update(data_offsets=[0, 1, 2])),
     EVAL, "data_offsets", ST)
case("st-offsets-negative", st_edit(lambda h: entry(h, "model.norm.weight").update(data_offsets=[-256, 0])),
     EVAL, "data_offsets", ST)
case("st-offsets-reversed", st_edit(lambda h: entry(h, "model.norm.weight").update(
    data_offsets=entry(h, "model.norm.weight")["data_offsets"][::-1])), EVAL, "bytes for shape", ST)
case("st-offsets-size-mismatch", st_edit(lambda h: entry(h, "model.norm.weight")["data_offsets"].__setitem__(
    1, entry(h, "model.norm.weight")["data_offsets"][1] + 4)), EVAL, "model.norm.weight", ST)
case("st-offsets-huge", st_edit(lambda h: entry(h, "model.norm.weight").update(data_offsets=[0, 2**70])),
     EVAL, "data_offsets", ST)
case("st-offsets-strings", st_edit(lambda h: entry(h, "model.norm.weight").update(data_offsets=["0", "256"])),
     EVAL, "data_offsets", ST)
case("st-entry-missing-dtype", st_edit(lambda h: entry(h, "model.norm.weight").pop("dtype") and None), EVAL, "bad header entry", ST)
case("st-entry-string", st_edit(lambda h: h.update({"model.norm.weight": "F32"})), EVAL, "bad header entry", ST)
case("st-metadata-int", st_edit(lambda h: h.update(__metadata__={"format": 1})), EVAL, "__metadata__", ST)
case("st-metadata-list", st_edit(lambda h: h.update(__metadata__=["pt"])), EVAL, "__metadata__", ST)
case("st-duplicate-name", st_edit(lambda h: json.dumps(h)[:-1].encode() + b', "model.norm.weight": '
                                  + json.dumps(h["model.norm.weight"]).encode() + b"}"), EVAL, "twice", ST)
case("st-header-array", st_edit(lambda h: b"[1, 2, 3]"), EVAL, "not valid JSON", ST)
case("st-header-leading-space", st_edit(lambda h: b" " + json.dumps(h).encode()), EVAL, "start", ST)
case("st-header-not-utf8", st_edit(lambda h: b"{\xff\xfe}"), EVAL, "UTF-8", ST)
case("st-header-not-json", st_edit(lambda h: b"{not json at all}"), EVAL, "not valid JSON", ST)
case("st-header-nan", st_edit(lambda h: json.dumps(h).replace("[64]", "[NaN]", 1).encode()), EVAL, "not valid JSON", ST)
case("st-header-deep", st_edit(lambda h: ('{"a": ' + DEEP + "}").encode()), EVAL, "deeper", ST)
case("st-header-length-huge", lambda d: (plain(d), st_write(d / "m" / ST, b"{}", b"", declared=2**64 - 1)),
     EVAL, "limit", ST, forbid=(str(2**64 - 1),))
case("st-header-length-over-100mb", lambda d: (plain(d), st_write(d / "m" / ST, b"{}", b"", declared=100_000_001)),
     EVAL, "limit", ST)
case("st-header-length-past-end", lambda d: (plain(d), st_write(d / "m" / ST, b"{}", b"", declared=4096)),
     EVAL, "does not fit", ST)
case("st-text-file", lambda d: (plain(d), (d / "m" / ST).write_text("Hello, world! " * 10)), EVAL,
     "limit", ST, forbid=(str(int.from_bytes(b"Hello, w", "little")),))
case("st-seven-bytes", lambda d: (plain(d), (d / "m" / ST).write_bytes(b"\1" * 7)), EVAL, "truncated", ST)
case("st-empty", lambda d: (plain(d), (d / "m" / ST).write_bytes(b"")), EVAL, "truncated", ST)
case("st-fifo", lambda d: (plain(d), fifo(d / "m" / ST)), EVAL, "named pipe", ST)
case("st-directory", lambda d: (plain(d), (d / "m" / ST).unlink(), (d / "m" / ST).mkdir()), EVAL, "directory", ST)
case("st-char-device", lambda d: (plain(d), (d / "m" / ST).unlink(), (d / "m" / ST).symlink_to("/dev/zero")),
     EVAL, "character device", ST)
case("st-truncated-data", lambda d: (plain(d), (d / "m" / ST).write_bytes((d / "m" / ST).read_bytes()[:-100])),
     EVAL, "cover", ST)
case("st-overlap-save", st_edit(lambda h: entry(h, "model.norm.weight").update(
    data_offsets=entry(h, "0.input_layernorm.weight")["data_offsets"])), PRUNE_OUT, "overlaps", ST)

# shard index: plain file names inside the model directory, checked before anything is read
IX = "model.safetensors.index.json"
case("ix-dotdot", index_edit(lambda ix, d, m: outside_shard(ix, d, m, "../elsewhere/model.safetensors")),
     PRUNE_OUT, "not a plain file name", IX)
case("ix-absolute", index_edit(lambda ix, d, m: outside_shard(ix, d, m, "{d}/elsewhere/model.safetensors")),
     PRUNE_OUT, "not a plain file name", IX)
case("ix-dotdot-eval", index_edit(lambda ix, d, m: outside_shard(ix, d, m, "../elsewhere/model.safetensors")),
     EVAL, "not a plain file name", IX)
case("ix-subdir", index_edit(lambda ix, d, m: point_all(ix, "sub/" + first_shard(ix))), EVAL, "not a plain file name", IX)
case("ix-backslash", index_edit(lambda ix, d, m: point_all(ix, "..\\" + first_shard(ix))), EVAL, "not a plain file name", IX)
case("ix-dot", index_edit(lambda ix, d, m: point_all(ix, ".")), EVAL, "not a plain file name", IX)
case("ix-dotdot-bare", index_edit(lambda ix, d, m: point_all(ix, "..")), EVAL, "not a plain file name", IX)
case("ix-empty-name", index_edit(lambda ix, d, m: point_all(ix, "")), EVAL, "not a plain file name", IX)
case("ix-nul", index_edit(lambda ix, d, m: point_all(ix, "a\x00b.safetensors")), EVAL, "not a plain file name", IX)
case("ix-symlink-out", index_edit(lambda ix, d, m: (
    outside_shard(ix, d, m, "link.safetensors"), (m / "link.safetensors").symlink_to(d / "elsewhere" / "model.safetensors"))),
    PRUNE_OUT, "leaves the model directory", IX)
case("ix-value-int", index_edit(lambda ix, d, m: ix["weight_map"].update({"model.norm.weight": 3})), EVAL, "weight_map", IX)
case("ix-value-list", index_edit(lambda ix, d, m: ix["weight_map"].update({"model.norm.weight": ["a"]})), EVAL, "weight_map", IX)
case("ix-map-list", index_edit(lambda ix, d, m: ix.update(weight_map=[1, 2])), EVAL, "weight_map", IX)
case("ix-no-map", index_edit(lambda ix, d, m: ix.pop("weight_map")), EVAL, "weight_map", IX)
case("ix-deep", index_edit(lambda ix, d, m: '{"weight_map": ' + DEEP + "}"), EVAL, "deeper", IX)
case("ix-not-json", index_edit(lambda ix, d, m: "{]"), EVAL, "invalid JSON", IX)
case("ix-fifo", lambda d: (model(d, "llama-f16-sharded"), corpus(d), fifo(d / "m" / IX)), EVAL, "named pipe", IX)
case("ix-at-config", index_edit(lambda ix, d, m: point_all(ix, "config.json")), EVAL, "limit", "config.json",
     forbid=(str(int.from_bytes(b'{\n  "arc', "little")), "4995128901736877908"))
case("ix-shard-fifo", index_edit(lambda ix, d, m: fifo(m / first_shard(ix))), EVAL, "named pipe", "safetensors")
case("ix-shard-missing", index_edit(lambda ix, d, m: (m / first_shard(ix)).unlink()), EVAL, "missing", IX)

# config.json: type and range of every field, memory implied, no tracebacks
CF = "config.json"
case("cf-layers-1e8", config_edit(lambda r: json.dumps(r).replace('"num_hidden_layers": 2', '"num_hidden_layers": 1e8')),
     EVAL, "num_hidden_layers", CF)
case("cf-layers-int-huge", config_edit(lambda r: r.update(num_hidden_layers=100_000_000)), EVAL, "num_hidden_layers", CF)
case("cf-vocab-infinity", config_edit(lambda r: json.dumps(r).replace('"vocab_size": 256', '"vocab_size": Infinity')),
     EVAL, "invalid JSON", CF)
case("cf-vocab-nan", config_edit(lambda r: json.dumps(r).replace('"vocab_size": 256', '"vocab_size": NaN')),
     EVAL, "invalid JSON", CF)
case("cf-vocab-negative", config_edit(lambda r: r.update(vocab_size=-1)), EVAL, "vocab_size", CF)
case("cf-vocab-string", config_edit(lambda r: r.update(vocab_size="256")), EVAL, "vocab_size", CF)
case("cf-vocab-bool", config_edit(lambda r: r.update(vocab_size=True)), EVAL, "vocab_size", CF)
case("cf-vocab-float", config_edit(lambda r: r.update(vocab_size=256.0)), EVAL, "vocab_size", CF)
case("cf-vocab-bigint", config_edit(lambda r: r.update(vocab_size=10**400)), EVAL, "vocab_size", CF)
case("cf-hidden-zero", config_edit(lambda r: r.update(hidden_size=0)), EVAL, "hidden_size", CF)
case("cf-intermediate-huge", config_edit(lambda r: r.update(intermediate_size=2**40)), EVAL, "intermediate_size", CF)
case("cf-heads-zero", config_edit(lambda r: r.update(num_attention_heads=0)), EVAL, "num_attention_heads", CF)
case("cf-opt-heads-zero", config_edit(lambda r: r.update(num_attention_heads=0), "tiny-opt"), EVAL, "num_attention_heads", CF)
case("cf-opt-ffn-string", config_edit(lambda r: r.update(ffn_dim="128"), "tiny-opt"), EVAL, "ffn_dim", CF)
case("cf-opt-proj-negative", config_edit(lambda r: r.update(word_embed_proj_dim=-64), "tiny-opt"), EVAL, "word_embed_proj_dim", CF)
case("cf-kv-heads-zero", config_edit(lambda r: r.update(num_key_value_heads=-2)), EVAL, "num_key_value_heads", CF)
case("cf-rope-scaling-string", config_edit(lambda r: r.update(rope_scaling="linear")), EVAL, "rope_scaling", CF)
case("cf-rope-scaling-list", config_edit(lambda r: r.update(rope_scaling=["llama3"])), EVAL, "rope_scaling", CF)
case("cf-rope-params-string", config_edit(lambda r: r.update(rope_parameters="default")), EVAL, "rope_parameters", CF)
case("cf-rope-theta-negative", config_edit(lambda r: r["rope_parameters"].update(rope_theta=-1.0)), EVAL, "rope_theta", CF)
case("cf-rope-theta-string", config_edit(lambda r: r["rope_parameters"].update(rope_theta="big")), EVAL, "rope_theta", CF)
case("cf-rope-theta-old-key", config_edit(lambda r: r.update(rope_parameters=None, rope_theta=[1])), EVAL, "rope_theta", CF)
case("cf-llama3-factor-string", config_edit(lambda r: r["rope_scaling"].update(factor="x"), "llama3-rope"), EVAL, "factor", CF)
case("cf-eps-zero", config_edit(lambda r: r.update(rms_norm_eps=0)), EVAL, "rms_norm_eps", CF)
case("cf-eps-large", config_edit(lambda r: r.update(rms_norm_eps=5)), EVAL, "rms_norm_eps", CF)
case("cf-head-dim-float", config_edit(lambda r: r.update(head_dim=3.5)), EVAL, "head_dim", CF)
case("cf-tie-string", config_edit(lambda r: r.update(tie_word_embeddings="yes")), EVAL, "tie_word_embeddings", CF)
case("cf-arch-string", config_edit(lambda r: r.update(architectures="LlamaForCausalLM")), EVAL, "architecture", CF)
case("cf-arch-nested", config_edit(lambda r: r.update(architectures=[["LlamaForCausalLM"]])), EVAL, "architecture", CF)
case("cf-hidden-act-list", config_edit(lambda r: r.update(hidden_act=["silu"])), EVAL, "hidden_act", CF)
case("cf-max-pos-huge", config_edit(lambda r: r.update(max_position_embeddings=2**30)), EVAL, "max_position_embeddings", CF)
case("cf-eos-negative", config_edit(lambda r: r.update(eos_token_id=-5)), EVAL, "eos_token_id", CF)
case("cf-bos-string", config_edit(lambda r: r.update(bos_token_id="a")), EVAL, "bos_token_id", CF)
case("cf-sliding-negative", config_edit(lambda r: r.update(sliding_window=-3), "mistral"), EVAL, "sliding_window", CF)
case("cf-dtype-int", config_edit(lambda r: r.update(dtype=12)), EVAL, "dtype", CF)
case("cf-memory", config_edit(lambda r: r.update(vocab_size=2**24, hidden_size=2**17, head_dim=None)),
     EVAL, ("vocab_size", "memory"), CF)
case("cf-deep", config_edit(lambda r: '{"architectures": ' + DEEP + "}"), EVAL, "deeper", CF)
case("cf-array", config_edit(lambda r: "[1, 2]"), EVAL, "JSON object", CF)
case("cf-not-utf8", config_edit(lambda r: b'{"a": "\xff"}'), EVAL, "UTF-8", CF)
case("cf-fifo", lambda d: (plain(d), fifo(d / "m" / CF)), EVAL, "named pipe", CF)
case("cf-directory", lambda d: (plain(d), (d / "m" / CF).unlink(), (d / "m" / CF).mkdir()), EVAL, "directory", CF)
case("cf-too-large", lambda d: (plain(d), os.truncate(d / "m" / CF, 65 * 2**20)), EVAL, "larger than", CF)
case("cf-prune-layers-1e8", config_edit(lambda r: r.update(num_hidden_layers=1e8)), PRUNE_OUT, "num_hidden_layers", CF)

# tokenizer.json
TK = "tokenizer.json"
case("tk-fifo", lambda d: (plain(d), fifo(d / "m" / TK)), EVAL, "named pipe", TK)
case("tk-not-json", lambda d: (plain(d), (d / "m" / TK).write_text("{not json")), EVAL, "cannot read tokenizer", TK)
case("tk-deep", lambda d: (plain(d), (d / "m" / TK).write_text(DEEP)), EVAL, "cannot read tokenizer", TK)
case("tk-directory", lambda d: (plain(d), (d / "m" / TK).unlink(), (d / "m" / TK).mkdir()), EVAL, "directory", TK)
case("tk-symlink-out", lambda d: (plain(d), shutil.move(d / "m" / TK, d / "tok.json"), (d / "m" / TK).symlink_to(d / "tok.json")),
     EVAL, "leaving the model directory", TK)


# corpora and calibration tokens
GZIP_MEMBER: list[bytes] = []


def gzip_bomb(path: Path, members: int = 80) -> None:
    """Concatenated gzip members of 64 MiB of spaces each: 5 MB that would unpack to 5 GiB."""
    if not GZIP_MEMBER:
        GZIP_MEMBER.append(gzip.compress(b" " * 2**26, compresslevel=9))
    path.write_bytes(GZIP_MEMBER[0] * members)


def npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(array), allow_pickle=True)
    return buf.getvalue()


TOK = [*PRUNE_OUT[:PRUNE_OUT.index("--calibration")], *PRUNE_OUT[PRUNE_OUT.index("--calibration") + 2:],
       "--calibration-tokens", "{d}/tokens.npy"]
case("co-gzip-bomb", lambda d: (plain(d), gzip_bomb(d / "bomb.txt.gz")),
     [*PRUNE_OUT, "--calibration", "{d}/bomb.txt.gz"], "decompression bomb", "bomb.txt.gz")
case("co-gzip-truncated", lambda d: (plain(d), (d / "c.jsonl.gz").write_bytes(gzip.compress(b'{"text": "a"}\n' * 100)[:40])),
     [*PRUNE_OUT, "--calibration", "{d}/c.jsonl.gz"], "cannot read corpus", "c.jsonl.gz")
case("co-gzip-not-gzip", lambda d: (plain(d), (d / "c.txt.gz").write_text("plain text")),
     [*PRUNE_OUT, "--calibration", "{d}/c.txt.gz"], "cannot read corpus", "c.txt.gz")
case("co-jsonl-deep", lambda d: (plain(d), (d / "c.jsonl").write_text('{"text": "ok"}\n{"text": ' + DEEP + "}\n")),
     [*PRUNE_OUT, "--calibration", "{d}/c.jsonl"], ("line 2", "deeper"), "c.jsonl")
case("co-jsonl-not-json", lambda d: (plain(d), (d / "c.jsonl").write_text('{"text": "ok"}\n{oops\n')),
     [*PRUNE_OUT, "--calibration", "{d}/c.jsonl"], "line 2 is not JSON", "c.jsonl")
case("co-jsonl-no-text", lambda d: (plain(d), (d / "c.jsonl").write_text('{"txt": "ok"}\n')),
     [*PRUNE_OUT, "--calibration", "{d}/c.jsonl"], "no string 'text'", "c.jsonl")
case("co-jsonl-text-list", lambda d: (plain(d), (d / "c.jsonl").write_text('{"text": ["ok"]}\n')),
     [*PRUNE_OUT, "--calibration", "{d}/c.jsonl"], "no string 'text'", "c.jsonl")
case("co-jsonl-bigint", lambda d: (plain(d), (d / "c.jsonl").write_text('{"text": "a", "n": ' + "9" * 5000 + "}\n")),
     [*PRUNE_OUT, "--calibration", "{d}/c.jsonl"], "line 1 is not JSON", "c.jsonl")
case("co-fifo", lambda d: (plain(d), fifo(d / "c.txt")), [*PRUNE_OUT, "--calibration", "{d}/c.txt"], "c.txt", "c.txt")
case("co-not-utf8", lambda d: (plain(d), (d / "c.txt").write_bytes(b"abc\xff\xfe")),
     [*PRUNE_OUT, "--calibration", "{d}/c.txt"], "not UTF-8", "c.txt")
case("co-directory", lambda d: (plain(d), (d / "c.txt").mkdir()), [*PRUNE_OUT, "--calibration", "{d}/c.txt"], "c.txt", "c.txt")
case("co-eval-fifo", lambda d: (plain(d), fifo(d / "e.txt")), [*EVAL, "--dataset", "{d}/e.txt"], "named pipe", "e.txt")
case("co-eval-gzip-bomb", lambda d: (plain(d), gzip_bomb(d / "e.txt.gz")), [*EVAL, "--dataset", "{d}/e.txt.gz"],
     "decompression bomb", "e.txt.gz")
case("tok-declared-huge", lambda d: (plain(d), (d / "tokens.npy").write_bytes(npy_header_only(None, (100_000, 100_000)))),
     TOK, "declares shape", "tokens.npy")
case("tok-declared-mismatch", lambda d: (plain(d), (d / "tokens.npy").write_bytes(npy_header_only(None, (4, 16)) + b"\0" * 8)),
     TOK, "data bytes", "tokens.npy")
case("tok-pickle", lambda d: (plain(d), (d / "tokens.npy").write_bytes(npy_bytes(np.array([[1, 2]], dtype=object)))),
     TOK, "objects", "tokens.npy")
case("tok-3d", lambda d: (plain(d), np.save(d / "tokens.npy", np.zeros((2, 4, 4), np.int64))), TOK, "[S, L]", "tokens.npy")
case("tok-float", lambda d: (plain(d), np.save(d / "tokens.npy", np.zeros((2, 16), np.float32))), TOK, "integers", "tokens.npy")
case("tok-out-of-vocab", lambda d: (plain(d), np.save(d / "tokens.npy", np.full((2, 16), 10**6, np.int64))), TOK, "vocabulary", "tokens.npy")
case("tok-garbage", lambda d: (plain(d), (d / "tokens.npy").write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': 'zz'}   \n")),
     TOK, "not a valid .npy", "tokens.npy")
case("tok-not-npy", lambda d: (plain(d), (d / "tokens.npy").write_text("1 2 3")), TOK, "not a valid .npy", "tokens.npy")
case("tok-fifo", lambda d: (plain(d), fifo(d / "tokens.npy")), TOK, "tokens.npy", "tokens.npy")
case("tok-structured", lambda d: (plain(d), np.save(d / "tokens.npy", np.zeros((2, 16), dtype=[("a", "<i8")]))),
     TOK, "records", "tokens.npy")

# golden files
GOLDEN_RUN = ["golden", "run", "{d}/case.npz", "-o", "{d}/out.npz"]
case("gd-declared-huge", lambda d: golden_with(d, weight=npy_header_only(None, (100_000, 100_000), "<f8")),
     GOLDEN_RUN, "declares shape", "case.npz")
case("gd-mismatch", lambda d: golden_with(d, weight=npy_header_only(None, (8, 384), "<f8") + b"\0" * 64),
     GOLDEN_RUN, "data bytes", "case.npz")
case("gd-pickle", lambda d: golden_with(d, case=np.array(["x"], dtype=object)), GOLDEN_RUN, "objects", "case.npz")
case("gd-not-zip", lambda d: (d / "case.npz").write_text("not a zip"), GOLDEN_RUN, "zip", "case.npz")
case("gd-member-not-npy", lambda d: zip_with(d / "case.npz", "notes.txt", b"hi"), GOLDEN_RUN, "not an .npy", "case.npz")
case("gd-fifo", lambda d: fifo(d / "case.npz"), GOLDEN_RUN, "named pipe", "case.npz")
case("gd-weight-string", lambda d: golden_with(d, weight=np.array(["a", "b"])), GOLDEN_RUN, "weight", "case.npz")
case("gd-missing-key", lambda d: golden_with(d, pruned0=None), GOLDEN_RUN, "pruned0", "case.npz")
case("gd-out-directory", lambda d: (golden_with(d), (d / "out.npz").mkdir()), GOLDEN_RUN, "is a directory", "out.npz")
case("gd-out-is-input", lambda d: golden_with(d), ["golden", "run", "{d}/case.npz", "-o", "{d}/case.npz"],
     "would overwrite the input", "case.npz")
case("gd-out-fifo", lambda d: (golden_with(d), fifo(d / "out.npz")), GOLDEN_RUN, "not a regular file", "out.npz")
case("gd-check-deep-bad", lambda d: golden_with(d, weight=npy_header_only(None, (10**5, 10**5), "<f8")),
     ["golden", "check", "{d}/case.npz"], "declares shape", "case.npz")

# results files for `report`
REPORT = ["report", "{d}/r.json"]
RJ = "r.json"
case("rp-deep", lambda d: results_file(d, lambda r: '{"layers": ' + DEEP + "}"), REPORT, "deeper", RJ)
case("rp-array", lambda d: results_file(d, lambda r: "[1]"), REPORT, "not a dsnot-ref results file", RJ)
case("rp-layers-dict", lambda d: results_file(d, lambda r: r.update(layers={"a": 1})), REPORT, "layers", RJ)
case("rp-layer-string", lambda d: results_file(d, lambda r: r.update(layers=["0.q_proj"])), REPORT, "layers[0]", RJ)
case("rp-sparsity-string", lambda d: results_file(d, lambda r: r["layers"][0].update(sparsity="half")), REPORT, "sparsity", RJ)
case("rp-swaps-float", lambda d: results_file(d, lambda r: r["layers"][0].update(swaps=2.5)), REPORT, "swaps", RJ)
case("rp-eps-list", lambda d: results_file(d, lambda r: r["layers"][0].update(eps_before=[1])), REPORT, "eps_before", RJ)
case("rp-ppl-missing", lambda d: results_file(d, lambda r: r["perplexity"].update(pruned={"perplexity": 3})), REPORT, "perplexity", RJ)
case("rp-ppl-string", lambda d: results_file(d, lambda r: r["perplexity"]["pruned"].update(perplexity="3")), REPORT, "perplexity", RJ)
case("rp-times-string", lambda d: results_file(d, lambda r: r.update(times="fast")), REPORT, "times", RJ)
case("rp-times-values", lambda d: results_file(d, lambda r: r.update(times={"load": "1"})), REPORT, "times", RJ)
case("rp-per-layer-strings", lambda d: results_file(d, lambda r: r["sparsity"].update(per_layer={"a": "x"})), REPORT, "per_layer", RJ)
case("rp-overall-missing", lambda d: results_file(d, lambda r: r["sparsity"].pop("overall")), REPORT, "overall", RJ)
case("rp-settings-list", lambda d: results_file(d, lambda r: r.update(settings=[1])), REPORT, "settings", RJ)
case("rp-not-utf8", lambda d: results_file(d, lambda r: b'{"layers": "\xff"}'), REPORT, "UTF-8", RJ)
case("rp-fifo", lambda d: fifo(d / "r.json"), REPORT, "named pipe", RJ)
case("rp-plot-directory", lambda d: (results_file(d, lambda r: None), (d / "p.png").mkdir()),
     [*REPORT, "--plot", "{d}/p.png"], "is a directory", "p.png")
case("rp-plot-is-results", lambda d: results_file(d, lambda r: None), [*REPORT, "--plot", "{d}/r.json"],
     "would overwrite the input", RJ)
case("rp-plot-fifo", lambda d: (results_file(d, lambda r: None), fifo(d / "p.png")), [*REPORT, "--plot", "{d}/p.png"],
     "not a regular file", "p.png")

# masks files (compare-masks)
CM = ["compare-masks", M, M]
case("mk-shapes-string", lambda d: masks_model(d, {"shapes": json.dumps({"model.layers.0.mlp.down_proj.weight": "abc"})}),
     CM, "not a shape", "masks.safetensors")
case("mk-shapes-list", lambda d: masks_model(d, {"shapes": "[1, 2]"}), CM, "shapes", "masks.safetensors")
case("mk-shapes-deep", lambda d: masks_model(d, {"shapes": DEEP}), CM, "deeper", "masks.safetensors")
case("mk-shapes-negative", lambda d: masks_model(d, {"shapes": json.dumps({"model.layers.0.mlp.down_proj.weight": [4, -8]})}),
     CM, "not a shape", "masks.safetensors")
case("mk-shapes-missing", lambda d: masks_model(d, {"format": "x"}), CM, "shapes", "masks.safetensors")
case("mk-fifo", lambda d: (model(d), fifo(d / "m" / "masks.safetensors")), CM, "named pipe", "masks.safetensors")

# outputs: never into the input, never a directory or a device, checked before the work
case("out-eval-results-config", plain, [*EVAL, "--results", "{d}/m/config.json"], "would overwrite the input", "config.json")
case("out-eval-results-in-model", plain, [*EVAL, "--results", "{d}/m/new.json"], "would overwrite the input", "new.json")
case("out-eval-results-dataset", plain, [*EVAL, "--results", "{d}/eval.txt"], "would overwrite the input", "eval.txt")
case("out-eval-results-directory", lambda d: (plain(d), (d / "res").mkdir()), [*EVAL, "--results", "{d}/res"], "is a directory", "res")
case("out-eval-results-fifo", lambda d: (plain(d), fifo(d / "res.json")), [*EVAL, "--results", "{d}/res.json"],
     "not a regular file", "res.json")
case("out-eval-results-dev-null", plain, [*EVAL, "--results", "/dev/null"], "character device", "/dev/null")
case("out-eval-results-parent-file", lambda d: (plain(d), (d / "f").write_text("x")), [*EVAL, "--results", "{d}/f/r.json"],
     "no write permission", "r.json")
case("out-prune-results-in-model", plain, [*PRUNE, "--results", "{d}/m/r.json"], "would overwrite the input", "r.json")
case("out-prune-results-directory", lambda d: (plain(d), (d / "res").mkdir()), [*PRUNE, "--results", "{d}/res"], "is a directory", "res")
case("out-prune-results-fifo", lambda d: (plain(d), fifo(d / "res.json")), [*PRUNE, "--results", "{d}/res.json"],
     "not a regular file", "res.json")
case("out-prune-results-calibration", plain, [*PRUNE, "--results", "{d}/calib.txt"], "would overwrite the input", "calib.txt")
case("out-prune-save-is-model", plain, [*PRUNE, "--save-model", M], "input model directory", "{d}/m")
case("out-prune-save-is-file", lambda d: (plain(d), (d / "out").write_text("x")), [*PRUNE, "--save-model", "{d}/out"],
     "not a directory", "{d}/out")
case("out-prune-run-dir-in-model", plain, [*PRUNE, "--run-dir", "{d}/m/run"], "overlaps the input model directory", "{d}/m/run")
case("out-prune-run-dir-file", lambda d: (plain(d), (d / "run").write_text("x")), [*PRUNE, "--run-dir", "{d}/run"],
     "not a directory", "{d}/run")
case("out-prune-home-is-file", lambda d: (plain(d), (d / "home").write_text("x")), PRUNE, "not a directory", "{d}/home",
     env={"DSNOT_REF_HOME": "{d}/home"})
case("out-fetch-home-is-file", lambda d: (d / "home").write_text("x"), ["fetch-model"], "not a directory", "{d}/home",
     env={"DSNOT_REF_HOME": "{d}/home"})
case("out-prune-manifest-deep", lambda d: (plain(d), (d / "run").mkdir(), (d / "run" / "manifest.json").write_text(DEEP)),
     [*PRUNE, "--run-dir", "{d}/run"], "manifest", "manifest.json")

# flags bounded to what can run
case("fl-nsamples", plain, [*PRUNE, "--nsamples", "1000000000"], "<=", "--nsamples")
case("fl-lookahead", plain, [*PRUNE, "--prune-method", "dsnot", "--dsnot-variant", "exact", "--lookahead", "1000000"], "<=", "--lookahead")
case("fl-max-cycle-time", plain, [*PRUNE, "--max-cycle-time", "1000000000"], "<=", "--max-cycle-time")
case("fl-chunk-size", plain, [*PRUNE, "--chunk-size", "1000000"], "<=", "--chunk-size")
case("fl-seqlen", plain, [*PRUNE, "--seqlen", "1000000000"], "<=", "--seqlen")
case("fl-eval-seqlen", plain, [*PRUNE, "--eval-seqlen", "1000000000"], "<=", "--eval-seqlen")
case("fl-eval-max-windows", plain, [*PRUNE, "--eval-max-windows", str(10**12)], "<=", "--eval-max-windows")
case("fl-seed", plain, [*PRUNE, "--seed", str(10**30)], "<=", "--seed")
case("fl-update-threshold-nan", plain, [*PRUNE, "--update-threshold", "nan"], "finite", "--update-threshold")
case("fl-pow-inf", plain, [*PRUNE, "--pow-of-var-regrowing", "inf"], "finite", "--pow-of-var-regrowing")
case("fl-threshold-negative", plain, [*PRUNE, "--update-threshold", "-1"], ">= 0", "--update-threshold")
case("fl-cycle-fraction-nan", plain, [*PRUNE, "--cycle-fraction", "nan"], "cycle-fraction", "--cycle-fraction")
case("fl-nsamples-memory", plain, [*PRUNE, "--nsamples", str(2**20), "--seqlen", "256", "--chunk-size", "1"],
     ("--nsamples", "memory"), "--seqlen")
case("fl-seqlen-over-positions", plain, [*PRUNE, "--seqlen", "100000"], "exceeds", "--seqlen")
case("fl-eval-cmd-seqlen", plain, [*EVAL, "--seqlen", "1000000000"], "--seqlen", "--seqlen")
case("fl-eval-max-windows-zero", plain, [*EVAL, "--max-windows", "0"], "--max-windows", "--max-windows")
case("fl-golden-rtol-nan", lambda d: None, ["golden", "check", str(GOLDEN), "--rtol", "nan"], "finite", "--rtol")
case("fl-golden-atol-negative", lambda d: None, ["golden", "check", str(GOLDEN), "--atol", "-1"], "finite", "--atol")
case("fl-nsamples-text", plain, [*PRUNE, "--nsamples", "lots"], "invalid int value", "--nsamples")


# errors during the work with a run directory: what this command wrote is taken back
def nan_in_layer_1(d: Path) -> None:
    plain(d)
    path = d / "m" / ST
    header, data = st_split(path)
    begin, _ = entry(header, "layers.1.self_attn.q_proj.weight")["data_offsets"]
    data = bytearray(data)
    data[begin:begin + 4] = struct.pack("<f", float("nan"))
    st_write(path, header, bytes(data))


case("rd-explicit-new", nan_in_layer_1, [*PRUNE, "--run-dir", "{d}/run"], "NaN", ST)
case("rd-explicit-empty", lambda d: (nan_in_layer_1(d), (d / "run").mkdir()), [*PRUNE, "--run-dir", "{d}/run"], "NaN", ST)
case("rd-default", nan_in_layer_1, PRUNE, "NaN", ST, env={"DSNOT_REF_HOME": "{d}/home"})
case("rd-explicit-with-outputs", nan_in_layer_1, PRUNE_OUT, "NaN", ST)


# --- running and checking ------------------------------------------------------------------


def sandbox_state(d: Path) -> dict:
    """Every entry under ``d`` (symlinks not followed): kind, mode and content hash or target."""
    state = {}
    for root, dirs, files in os.walk(d, followlinks=False):
        for name in sorted(dirs + files):
            p = Path(root) / name
            st = os.lstat(p)
            key = str(p.relative_to(d))
            if stat.S_ISLNK(st.st_mode):
                state[key] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    state[key] = ("file", st.st_mode, st.st_size, hashlib.sha256(f.read()).hexdigest())
            else:
                state[key] = ("other", stat.S_IFMT(st.st_mode), st.st_mode)
    return state


def expand(value: str, d: Path) -> str:
    return value.replace("{d}", str(d))


def check_refused(c: Case, result: dict, before: dict, after: dict, d: Path = Path("{d}")) -> None:
    err = result["stderr"]
    assert not result["timed_out"], f"{c.id}: timed out after {result['seconds']:.1f} s"
    assert "Traceback" not in err, f"{c.id}: traceback\n{err}"
    assert result["rc"] == 2, f"{c.id}: exit status {result['rc']}\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{c.id}: {len(lines)} lines on stderr\n{err}"
    line = lines[0]
    assert ERROR_LINE.match(line), f"{c.id}: {line}"
    for word in c.expect:
        assert word in line, f"{c.id}: {word!r} not in {line!r}"
    names = expand(c.names, d)
    assert names in line, f"{c.id}: {names!r} not named in {line!r}"
    for word in c.forbid:
        assert word not in line, f"{c.id}: {word!r} echoed in {line!r}"
    assert after == before, f"{c.id}: the sandbox changed: " + ", ".join(
        sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k)))


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Build every sandbox, run every case through the runner, hash every sandbox again."""
    base = tmp_path_factory.mktemp("hostile")
    dev_null = os.stat("/dev/null").st_mode
    prepared = {}
    for i, c in enumerate(CASES):
        d = base / f"c{i:03d}"
        d.mkdir()
        c.setup(d)
        prepared[c.id] = (d, sandbox_state(d))
    spec = {"limit_as": LIMIT_AS, "timeout": TIMEOUT, "jobs": 2, "cases": [
        {"id": c.id, "argv": [expand(a, prepared[c.id][0]) for a in c.argv], "cwd": str(prepared[c.id][0]),
         "env": {"DSNOT_REF_HOME": str(prepared[c.id][0] / "home"), "DSNOT_REF_BACKEND": "numpy",
                 **{k: expand(v, prepared[c.id][0]) for k, v in c.env.items()}}}
        for c in CASES]}
    proc = subprocess.run([sys.executable, str(RUNNER)], input=json.dumps(spec), capture_output=True,
                          text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["id"]: r for r in json.loads(proc.stdout)}
    after = {c.id: sandbox_state(prepared[c.id][0]) for c in CASES}
    assert os.stat("/dev/null").st_mode == dev_null  # still a character device
    return {c.id: (results[c.id], prepared[c.id][1], after[c.id], prepared[c.id][0]) for c in CASES}


def test_case_ids_are_unique_and_many():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 100


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_refused(c, outcomes):
    result, before, after, d = outcomes[c.id]
    check_refused(c, result, before, after, d)
    assert result["seconds"] < TIMEOUT
    assert result["maxrss_kb"] * 1024 < LIMIT_AS


def test_a_good_command_runs_under_the_same_limits(tmp_path):
    """The limits are not what refuses: the same runner runs a valid prune and eval."""
    plain(tmp_path)
    before = sandbox_state(tmp_path / "m")
    spec = {"limit_as": LIMIT_AS, "timeout": TIMEOUT, "jobs": 2, "cases": [
        {"id": "prune", "argv": [expand(a, tmp_path) for a in PRUNE_OUT], "cwd": str(tmp_path),
         "env": {"DSNOT_REF_HOME": str(tmp_path / "home")}},
        {"id": "eval", "argv": [expand(a, tmp_path) for a in EVAL], "cwd": str(tmp_path), "env": {}}]}
    proc = subprocess.run([sys.executable, str(RUNNER)], input=json.dumps(spec), capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    results = {r["id"]: r for r in json.loads(proc.stdout)}
    assert results["prune"]["rc"] == 0, results["prune"]["stderr"]
    assert results["eval"]["rc"] == 0, results["eval"]["stderr"]
    assert (tmp_path / "out" / ST).is_file() and (tmp_path / "r.json").is_file()
    assert not (tmp_path / "run").exists()
    assert sandbox_state(tmp_path / "m") == before


# --- a few as real `python -m dsnot_ref` processes -----------------------------------------------

REAL = ["st-fifo", "ix-dotdot", "cf-layers-1e8", "co-gzip-bomb", "tok-declared-huge", "out-eval-results-config",
        "gd-out-directory", "rp-deep"]


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))


def test_real_subprocesses(tmp_path):
    """The same refusals from `python -m dsnot_ref` itself, started in parallel."""
    chosen = [c for c in CASES if c.id in REAL]
    assert len(chosen) == len(REAL)
    procs = []
    for c in chosen:
        d = tmp_path / c.id
        d.mkdir()
        c.setup(d)
        before = sandbox_state(d)
        env = {**os.environ, "DSNOT_REF_HOME": str(d / "home"), **{k: expand(v, d) for k, v in c.env.items()}}
        proc = subprocess.Popen([sys.executable, "-m", "dsnot_ref", *[expand(a, d) for a in c.argv]], cwd=d, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limit_memory)
        procs.append((c, d, before, proc))
    for c, d, before, proc in procs:
        try:
            _, err = proc.communicate(timeout=TIMEOUT)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            timed_out = True
        result = {"rc": proc.returncode, "stderr": err, "timed_out": timed_out, "seconds": 0.0}
        check_refused(c, result, before, sandbox_state(d), d)


# --- fuzzing the validators (in process: only UserError may come out) -----------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dsnot_ref import validate  # noqa: E402
from dsnot_ref.config import config_from_dict  # noqa: E402
from dsnot_ref.data import gunzip_capped  # noqa: E402
from dsnot_ref.errors import UserError  # noqa: E402

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.function_scoped_fixture])
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                          max_leaves=12)
CODES = sorted(validate.SAFETENSORS_DTYPE_SIZES)


@st.composite
def safetensors_layouts(draw):
    """(header dict, data size): a valid contiguous layout, then maybe one field made hostile."""
    header, offset = {}, 0
    for i in range(draw(st.integers(0, 4))):
        code = draw(st.sampled_from(CODES))
        shape = draw(st.lists(st.integers(0, 5), max_size=3))
        nbytes = int(np.prod(shape, dtype=np.int64)) * validate.SAFETENSORS_DTYPE_SIZES[code]
        header[f"t{i}"] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.one_of(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
                                                JSON_VALUE))
    size = offset
    if header and draw(st.booleans()):
        name = draw(st.sampled_from(sorted(header)))
        key = draw(st.sampled_from(["dtype", "shape", "data_offsets", "entry", "size"]))
        if key == "size":
            size = draw(st.integers(0, offset + 16))
        elif key == "entry":
            header[name] = draw(JSON_VALUE)
        elif isinstance(header[name], dict):
            header[name][key] = draw(st.one_of(JSON_VALUE, st.lists(st.integers(-3, 2**66), max_size=4)))
    return header, size


@FUZZ
@given(layout=safetensors_layouts())
def test_fuzz_safetensors_headers_and_the_library_agrees(tmp_path, layout):
    """Our validator raises only UserError, and what it accepts the safetensors library opens."""
    safetensors = pytest.importorskip("safetensors")
    header, size = layout
    blob = json.dumps(header, allow_nan=True).encode()
    try:
        tensors = validate.safetensors_tensors(blob, size, "f.safetensors")
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    path = tmp_path / "f.safetensors"
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * size)
    with safetensors.safe_open(str(path), framework="numpy") as f:  # raises if the library refuses
        assert sorted(f.keys()) == sorted(tensors)


@FUZZ
@given(header=st.binary(max_size=64), size=st.integers(0, 2**64))
def test_fuzz_safetensors_header_bytes(header, size):
    try:
        validate.safetensors_tensors(header, size, "f.safetensors")
    except UserError as exc:
        assert "\n" not in str(exc)


def test_library_refusals_are_ours_too(tmp_path):
    """Headers the safetensors library refuses (its rules, case by case) are refused by us."""
    safetensors = pytest.importorskip("safetensors")
    good = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}
    variants = {
        "overlap": ({**good, "b": {**good["b"], "data_offsets": [0, 8]}}, 16),
        "gap": ({"a": good["a"], "b": {**good["b"], "data_offsets": [12, 20]}}, 20),
        "short": (good, 15),
        "long": (good, 17),
        "mismatch": ({**good, "b": {**good["b"], "shape": [3]}}, 16),
        "dtype": ({**good, "b": {**good["b"], "dtype": "X"}}, 16),
        "negative": ({**good, "b": {**good["b"], "shape": [-2]}}, 16),
        "overflow": ({**good, "b": {**good["b"], "shape": [2**62, 8]}}, 16),
    }
    for name, (header, size) in variants.items():
        blob = json.dumps(header).encode()
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * size)
        with pytest.raises(Exception):
            with safetensors.safe_open(str(path), framework="numpy") as f:
                f.keys()
        with pytest.raises(UserError):
            validate.safetensors_tensors(blob, size, path)


TINY_CONFIG = json.loads((FIXTURES / "tiny-llama" / "config.json").read_text())
OPT_CONFIG = json.loads((FIXTURES / "tiny-opt" / "config.json").read_text())


@FUZZ
@given(base=st.sampled_from([TINY_CONFIG, OPT_CONFIG]),
       changes=st.dictionaries(st.sampled_from(sorted(set(TINY_CONFIG) | set(OPT_CONFIG) | {"rope_scaling", "rope_theta"})),
                               JSON_VALUE, min_size=1, max_size=4))
def test_fuzz_configs(base, changes):
    raw = {**json.loads(json.dumps(base)), **changes}
    try:
        config = config_from_dict(raw, Path("config.json"))
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    assert config.num_layers >= 1 and config.vocab_size >= 1 and config.head_dim >= 1


@FUZZ
@given(index=st.one_of(JSON_VALUE, st.fixed_dictionaries({"weight_map": st.dictionaries(
    st.text(max_size=8), st.one_of(st.text(max_size=12), JSON_LEAF), max_size=4)})))
def test_fuzz_index_files(tmp_path, index):
    """Any index: only UserError, and every accepted shard is a plain name inside the model dir."""
    try:
        weight_map = validate.index_weight_map(index, "index.json")
        paths = [validate.shard_path(v, tmp_path, "index.json") for v in weight_map.values()]
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    for p in paths:
        assert p.parent == tmp_path and p.name not in ("", ".", "..") and "/" not in p.name


@FUZZ
@given(text=st.text(alphabet='[]{}"\\a,:', max_size=60))
def test_json_depth_matches_the_parser(text):
    """Where the text is JSON, json_depth is its real nesting depth."""
    try:
        value = json.loads(text)
    except ValueError:
        return

    def depth(v):
        if isinstance(v, list):
            return 1 + max(map(depth, v), default=0)
        if isinstance(v, dict):
            return 1 + max(map(depth, v.values()), default=0)
        return 0

    assert validate.json_depth(text) == depth(value)


def test_gunzip_cap_ratio_and_truncation(tmp_path):
    path = tmp_path / "t.gz"
    text = b"".join(b"line %d of some text\n" % i for i in range(5000))
    path.write_bytes(gzip.compress(text) + gzip.compress(b"second member"))
    assert gunzip_capped(path, 10**9) == text + b"second member"
    with pytest.raises(UserError, match="decompresses to more than"):
        gunzip_capped(path, 1000)
    path.write_bytes(gzip.compress(text)[:-20])
    with pytest.raises(EOFError):
        gunzip_capped(path, 10**9)
    path.write_bytes(gzip.compress(b"\0" * 2**27))
    with pytest.raises(UserError, match="decompression bomb"):
        gunzip_capped(path, 2**30)


def test_npy_declared_shapes(tmp_path):
    ok = tmp_path / "ok.npy"
    np.save(ok, np.arange(6, dtype=np.int32).reshape(2, 3))
    assert validate.npy_file(ok, "tokens") == ((2, 3), np.dtype("<i4"))
    big = tmp_path / "big.npy"
    big.write_bytes(npy_header_only(None, (10**5, 10**5)))
    with pytest.raises(UserError, match="declares shape"):
        validate.npy_file(big, "tokens")
    with pytest.raises(UserError, match="declares shape"):
        validate.npy_file(ok, "tokens", max_bytes=8)


def run_one(argv: list[str], d: Path, env: dict | None = None) -> dict:
    spec = {"limit_as": LIMIT_AS, "timeout": TIMEOUT, "jobs": 1, "cases": [
        {"id": "one", "argv": [expand(a, d) for a in argv], "cwd": str(d),
         "env": {"DSNOT_REF_HOME": str(d / "home"), **(env or {})}}]}
    proc = subprocess.run([sys.executable, str(RUNNER)], input=json.dumps(spec), capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)[0]


def test_an_explicit_run_dir_holding_an_earlier_run_is_kept_on_error(tmp_path):
    """The one case where an error leaves a run directory: it held an earlier run (resumable)."""
    plain(tmp_path)
    first = run_one([*PRUNE, "--run-dir", "{d}/run", "--keep-cache"], tmp_path)
    assert first["rc"] == 0, first["stderr"]
    shutil.rmtree(tmp_path / "m")
    nan_in_layer_1(tmp_path)  # another model now: its identity no longer matches the run's
    (tmp_path / "calib.txt").unlink()
    corpus(tmp_path)
    before = sandbox_state(tmp_path)
    again = run_one([*PRUNE, "--run-dir", "{d}/run"], tmp_path)
    assert again["rc"] == 2 and "Traceback" not in again["stderr"]
    lines = again["stderr"].strip().splitlines()  # "found a run directory ...; resuming", then the error
    assert ERROR_LINE.match(lines[-1]) and "made from other inputs" in lines[-1], lines
    assert sandbox_state(tmp_path) == before
