"""Checks on inputs from strangers, one small function per kind of input.

Every function here refuses with a ``UserError`` whose one line names the file (or flag) and
the problem, and never echoes the file's bytes. They read at most a bounded prefix of a file
(a header), never allocate what a file merely declares, and never follow a path out of the
directory it must stay in. Callers: ``weights`` (safetensors, index), ``config``, ``data``
(corpora, token arrays), ``golden``, ``cli.report`` and every command that writes.
"""

from __future__ import annotations

import json
import os
import re
import stat
import zipfile
from pathlib import Path

import numpy as np

from .errors import UserError

MAX_JSON_DEPTH = 64                       # config.json and friends nest 3 or 4 deep
MAX_JSON_FILE_BYTES = 64 * 2**20          # config, index, results, golden metadata
MAX_SAFETENSORS_HEADER = 100_000_000      # the safetensors library's own limit
MAX_TOKENIZER_BYTES = 512 * 2**20
MAX_CORPUS_BYTES = 2**30                  # decompressed text of one corpus file
MAX_ARRAY_BYTES = 2**30                   # one declared .npy array (tokens, golden inputs)
SAFETENSORS_DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8,
}
U64_MAX = 2**64 - 1
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


# --- files ----------------------------------------------------------------------------------


def regular_file(path, what: str) -> Path:
    """``path`` if it is an existing regular file (symlinks followed).

    Refuses: a missing path, a directory, a FIFO (reading it would block forever), a device
    node, a socket.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise UserError(f"{what} {path} is not a regular file ({file_kind(mode)})")
    return path


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def read_capped(path, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``.

    Refuses: everything ``regular_file`` refuses, and a larger file (checked on the size and
    again on what is read, so a file that grows meanwhile is refused too).
    """
    path = regular_file(path, what)
    try:
        if path.stat().st_size > max_bytes:
            raise UserError(f"{what} {path} is larger than {max_bytes} bytes")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > max_bytes:
        raise UserError(f"{what} {path} is larger than {max_bytes} bytes")
    return data


# --- JSON -----------------------------------------------------------------------------------


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (brackets inside strings ignored).

    Counted 1 MiB at a time, so a 100 MB header needs a few MB beyond its own copy.
    """
    codes = np.frombuffer(_JSON_STRING.sub("", text).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    depth = deepest = 0
    for start in range(0, codes.size, 2**20):
        c = codes[start:start + 2**20]
        steps = (c == 0x5B).astype(np.int32) + (c == 0x7B) - (c == 0x5D) - (c == 0x7D)  # [ { ] }
        running = depth + np.cumsum(steps, dtype=np.int64)
        deepest, depth = max(deepest, int(running.max())), int(running[-1])
    return deepest


def too_deep(text: str, max_depth: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``text`` nests JSON deeper than ``max_depth`` (cheap when it has few brackets)."""
    return text.count("[") + text.count("{") > max_depth and json_depth(text) > max_depth


def parse_json(data: bytes | str, path, what: str, max_depth: int = MAX_JSON_DEPTH):
    """The JSON value of ``data`` (one file, or one line of one).

    Refuses: text that is not UTF-8, not JSON, nested deeper than ``max_depth`` (checked before
    parsing, so no RecursionError), integers too long to convert, NaN/Infinity literals.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise UserError(f"invalid {what} {path}: not UTF-8 text (byte {exc.start})") from None
    if too_deep(text, max_depth):
        raise UserError(f"invalid {what} {path}: JSON nested deeper than {max_depth} levels")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise UserError(f"invalid {what} {path}: invalid JSON "
                        f"({exc.msg}, line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise UserError(f"invalid {what} {path}: invalid JSON ({str(exc).splitlines()[0][:120]})") from None
    if SURROGATE_ESCAPE.search(text) and not is_text(json.dumps(value, ensure_ascii=False)):
        raise UserError(f"invalid {what} {path}: a string holds a lone surrogate escape (\\ud800 to \\udfff), "
                        "not text")
    return value


SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def is_text(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8: no lone surrogate (JSON's "\\ud800" escapes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_json_file(path, what: str, max_bytes: int = MAX_JSON_FILE_BYTES):
    """A small JSON file's value; refuses what ``read_capped`` and ``parse_json`` refuse."""
    return parse_json(read_capped(path, what, max_bytes), path, what)


def json_object(value, path, what: str) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"invalid {what} {path}: expected a JSON object")
    return value


# --- safetensors ----------------------------------------------------------------------------


def safetensors_header_length(prefix: bytes, file_size: int, path) -> int:
    """N, the header length of a safetensors file from its first 8 bytes.

    Refuses: a file shorter than 8 bytes, N above the library's 100,000,000, N past the end of
    the file. The message gives N's size relation, never the bytes.
    """
    if len(prefix) < 8:
        raise UserError(f"truncated safetensors file {path}: {file_size} bytes, no header")
    n = int.from_bytes(prefix[:8], "little")
    if n > MAX_SAFETENSORS_HEADER:
        raise UserError(f"corrupt safetensors file {path}: declared header length is over the "
                        f"{MAX_SAFETENSORS_HEADER}-byte limit")
    if 8 + n > file_size:
        raise UserError(f"corrupt or truncated safetensors file {path}: declared header length "
                        f"does not fit in the file's {file_size} bytes")
    return n


def safetensors_tensors(header_bytes: bytes, data_size: int, path) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
    """name -> (dtype, shape, begin, end) of a safetensors header, checked as the library does.

    ``data_size`` is the file size minus 8 minus the header. Refuses (the rules of the
    ``safetensors`` crate's ``read_metadata`` and ``validate``, and a few more): a header that
    is not UTF-8, does not start with ``{``, is not a JSON object or nests too deep; a repeated
    tensor name; ``__metadata__`` that is not an object of strings; an entry that is not an
    object with a known ``dtype`` string, a ``shape`` list of non-negative integers and
    ``data_offsets`` [begin, end] of non-negative integers; an element count or byte count that
    overflows 64 bits; a byte range that does not match dtype size x element count; ranges that
    overlap, leave a gap, or do not cover the data exactly to the end of the file.
    """
    try:
        text = header_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"corrupt safetensors file {path}: header is not valid JSON (not UTF-8)") from None
    if not text.startswith("{"):
        raise UserError(f"corrupt safetensors file {path}: header is not valid JSON (does not start with '{{')")
    pairs = parse_json_pairs(text, path)
    names = [k for k, _ in pairs]
    if len(set(names)) != len(names):
        raise UserError(f"corrupt safetensors file {path}: a tensor name appears twice in the header")
    tensors = {}
    for name, info in pairs:
        if name == "__metadata__":
            metadata_strings(info, path)
            continue
        tensors[name] = safetensors_entry(name, info, path)
    check_byte_ranges(tensors, data_size, path)
    return tensors


class JsonObjectPairs(list):
    """A JSON object as its (key, value) pairs in file order (repeated keys kept)."""


def parse_json_pairs(text: str, path) -> list[tuple[str, object]]:
    if too_deep(text):
        raise UserError(f"corrupt safetensors file {path}: header nests JSON deeper than {MAX_JSON_DEPTH} levels")
    try:
        top = json.loads(text, object_pairs_hook=JsonObjectPairs, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise UserError(f"corrupt safetensors file {path}: header is not valid JSON") from None
    if not isinstance(top, JsonObjectPairs):
        raise UserError(f"corrupt safetensors file {path}: header is not a JSON object")
    return top


def metadata_strings(info, path) -> None:
    """``__metadata__``: null, or an object whose values are all strings."""
    if info is None:
        return
    if not isinstance(info, JsonObjectPairs) or not all(isinstance(v, str) for _, v in info):
        raise UserError(f"corrupt safetensors file {path}: __metadata__ is not an object of strings")


def safetensors_entry(name: str, info, path) -> tuple[str, tuple[int, ...], int, int]:
    """(dtype, shape, begin, end) of one header entry (an object as a list of pairs)."""
    fields = dict(info) if isinstance(info, JsonObjectPairs) else None
    if fields is None or not {"dtype", "shape", "data_offsets"} <= fields.keys():
        raise UserError(f"corrupt safetensors file {path}: bad header entry for {name!r}")
    code, shape, offsets = fields["dtype"], fields["shape"], fields["data_offsets"]
    if not isinstance(code, str) or code not in SAFETENSORS_DTYPE_SIZES:
        shown = code if isinstance(code, str) and len(code) <= 16 else type(code).__name__
        raise UserError(f"corrupt safetensors file {path}: unknown dtype {shown!r} of {name!r}")
    if not is_json_array(shape) or not all(is_u64(d) for d in shape):
        raise UserError(f"corrupt safetensors file {path}: shape of {name!r} is not a list of non-negative integers")
    if not is_json_array(offsets) or len(offsets) != 2 or not all(is_u64(o) for o in offsets):
        raise UserError(f"corrupt safetensors file {path}: data_offsets of {name!r} is not [begin, end]")
    count = 1
    for d in shape:
        count *= d
        if count > U64_MAX:
            raise UserError(f"corrupt safetensors file {path}: element count of {name!r} overflows 64 bits")
    if count * SAFETENSORS_DTYPE_SIZES[code] > U64_MAX:
        raise UserError(f"corrupt safetensors file {path}: byte count of {name!r} overflows 64 bits")
    begin, end = offsets
    if end < begin or end - begin != count * SAFETENSORS_DTYPE_SIZES[code]:
        raise UserError(f"corrupt safetensors file {path}: {name!r} has {end - begin} bytes for "
                        f"shape {shape} {code}")
    return code, tuple(shape), begin, end


def is_json_array(value) -> bool:
    """A JSON array as ``parse_json_pairs`` returns it (objects come back as JsonObjectPairs)."""
    return isinstance(value, list) and not isinstance(value, JsonObjectPairs)


def is_u64(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX


def check_byte_ranges(tensors: dict, data_size: int, path) -> None:
    """The tensors' byte ranges, sorted, must tile [0, data_size) exactly: no overlap, no gap."""
    start = 0
    for name, (_, _, begin, end) in sorted(tensors.items(), key=lambda kv: (kv[1][2], kv[1][3])):
        if begin != start:
            problem = "overlaps the previous tensor" if begin < start else "leaves a gap before it"
            raise UserError(f"corrupt safetensors file {path}: the byte range of {name!r} {problem}")
        start = end
    if start != data_size:
        raise UserError(f"corrupt safetensors file {path}: tensors cover {start} data bytes but the file "
                        f"has {data_size}")


# --- model directory and shard index --------------------------------------------------------


def shard_path(name, model_dir: Path, index_path) -> Path:
    """The shard file ``name`` listed by an index, as a path inside ``model_dir``.

    Refuses, before anything is opened: a name that is not a string, is empty, has a path
    separator, a NUL, ``..`` or ``.``, or is absolute; a name that resolves (through symlinks)
    outside the model directory.
    """
    if not isinstance(name, str) or not name or name in (".", "..") or "\x00" in name \
            or "/" in name or "\\" in name or os.path.isabs(name):
        shown = name if isinstance(name, str) and len(name) <= 80 else type(name).__name__
        raise UserError(f"invalid safetensors index {index_path}: shard {shown!r} is not a plain file "
                        "name inside the model directory")
    path = model_dir / name
    if not stays_in_model(path, model_dir):
        raise UserError(f"invalid safetensors index {index_path}: shard {name!r} leaves the model "
                        "directory (symlink)")
    return path


def stays_in_model(path: Path, model_dir) -> bool:
    """Whether the file ``path`` of a model directory resolves to a file of that directory, or,
    for a Hugging Face hub cache snapshot (``<repo>/snapshots/<revision>/``, whose files are
    symlinks into ``<repo>/blobs/``), to a file of the same repository's ``blobs`` directory.
    A link anywhere else (another repository, /etc) does not stay."""
    target, home = Path(path).resolve(), Path(model_dir).resolve()
    if target.parent == home:
        return True
    return home.parent.name == "snapshots" and target.parent == home.parent.parent / "blobs"


def model_file(model_dir, name: str, what: str) -> Path:
    """``model_dir / name`` if it is a regular file that stays in the model directory
    (``stays_in_model``); refuses a missing file, a FIFO or device, a link leaving it."""
    path = Path(model_dir) / name
    regular_file(path, what)
    if not stays_in_model(path, model_dir):
        raise UserError(f"{what} {path} is a symlink leaving the model directory")
    return path


def index_weight_map(index, path) -> dict[str, str]:
    """The ``weight_map`` of a parsed ``model.safetensors.index.json``.

    Refuses: an index that is not an object, has no ``weight_map`` object, or maps a name to
    anything but a string.
    """
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise UserError(f"invalid safetensors index {path}: expected JSON with a weight_map object")
    weight_map = index["weight_map"]
    if not all(isinstance(v, str) for v in weight_map.values()):
        raise UserError(f"invalid safetensors index {path}: weight_map must map names to files")
    return weight_map


def tokenizer_file(model_dir) -> Path:
    """``tokenizer.json`` of a model directory: a regular file of at most 512 MiB.

    Refuses: a missing file, a FIFO/device/directory, a larger file, a symlink leaving the
    directory (``stays_in_model``: a hub snapshot's links into its blobs stay).
    """
    path = Path(model_dir) / "tokenizer.json"
    if not path.exists() and not path.is_symlink():
        raise UserError(f"no tokenizer.json in model directory {model_dir}")
    model_file(model_dir, "tokenizer.json", "tokenizer")
    if path.stat().st_size > MAX_TOKENIZER_BYTES:
        raise UserError(f"tokenizer {path} is larger than {MAX_TOKENIZER_BYTES} bytes")
    return path


# --- memory ---------------------------------------------------------------------------------


def memory_limit_bytes() -> int:
    """What this process may allocate: physical memory, or the address-space limit if lower."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        import resource  # noqa: PLC0415 - POSIX only

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limit = min(limit, soft)
    except (ImportError, ValueError, OSError):
        pass
    return limit


def check_memory(need: int, what: str) -> None:
    """Refuses a computation whose arrays would need more bytes than the machine has."""
    have = memory_limit_bytes()
    if need > have:
        raise UserError(f"{what} needs about {format_bytes(need)} of memory; this machine has {format_bytes(have)}")


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


# --- arrays (.npy / .npz) -------------------------------------------------------------------


def npy_declared(f, size: int, path, what: str, max_bytes: int = MAX_ARRAY_BYTES,
                 fortran_ok: bool = False) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the header of an .npy stream of ``size`` bytes, before any data.

    Refuses: a bad magic or header, object (pickled) or structured dtypes, Fortran order (unless
    ``fortran_ok``: arrays read whole, not memory-mapped), a declared size above ``max_bytes``,
    or one that does not match the bytes that follow.
    """
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f, max_header_size=2**16)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=2**16)
        else:
            raise ValueError("unknown .npy version")
        offset = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError):
        raise UserError(f"{what} {path} is not a valid .npy array") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise UserError(f"{what} {path} holds objects or records (dtype {dtype}); only plain numbers are read")
    if fortran and len(shape) > 1 and not fortran_ok:
        raise UserError(f"{what} {path} is in Fortran order; save it in C order")
    count = 1
    for d in shape:
        count *= int(d)
    nbytes = count * dtype.itemsize
    if nbytes > max_bytes:
        raise UserError(f"{what} {path} declares shape {tuple(shape)} ({format_bytes(nbytes)}), over the "
                        f"{format_bytes(max_bytes)} limit")
    if nbytes != size - offset:
        raise UserError(f"{what} {path} declares shape {tuple(shape)} {dtype} ({nbytes} bytes) but holds "
                        f"{size - offset} data bytes")
    return tuple(int(d) for d in shape), dtype


def npy_file(path, what: str, max_bytes: int = MAX_ARRAY_BYTES) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of a regular .npy file; refuses what ``npy_declared`` refuses."""
    path = regular_file(path, what)
    try:
        with open(path, "rb") as f:
            return npy_declared(f, path.stat().st_size, path, what, max_bytes)
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from None


def npz_members(path, what: str, max_bytes: int = MAX_ARRAY_BYTES, max_members: int = 256,
                fortran_ok: bool = False) -> dict[str, tuple]:
    """name -> (shape, dtype) of every array of a regular .npz file, from the headers only.

    Refuses: a file that is not a zip archive, more than ``max_members`` members, a member that
    is not ``NAME.npy`` or whose header ``npy_declared`` refuses (the declared size must match
    the member's uncompressed size), more than ``max_bytes`` in all.
    """
    path = regular_file(path, what)
    if not zipfile.is_zipfile(path):
        raise UserError(f"{what} {path} is not an .npz (zip) archive")
    members, total = {}, 0
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            if len(infos) > max_members:
                raise UserError(f"{what} {path} has {len(infos)} members, more than {max_members}")
            for info in infos:
                if not info.filename.endswith(".npy") or info.is_dir():
                    raise UserError(f"{what} {path}: member {info.filename[:80]!r} is not an .npy array")
                total += info.file_size
                if total > max_bytes:
                    raise UserError(f"{what} {path} unpacks to more than {format_bytes(max_bytes)}")
                with z.open(info) as f:
                    member = f"{path}:{info.filename}"
                    members[info.filename[:-4]] = npy_declared(f, info.file_size, member, what, max_bytes,
                                                               fortran_ok)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise UserError(f"{what} {path} is not a readable .npz archive ({type(exc).__name__})") from None
    return members


# --- outputs --------------------------------------------------------------------------------


def output_file(path, flag: str, inputs=()) -> Path:
    """A file a command will write (atomically: temporary name, then rename).

    Refuses: an existing directory, FIFO, device or anything not a regular file; a path inside
    (or equal to) any of ``inputs`` (input directories, or input files never to be replaced);
    a parent that is not a directory or not writable. Checked before any work.
    """
    path = Path(path)
    if path.is_symlink() or path.exists():
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise UserError(f"{flag} {path} is a broken symlink") from None
        if stat.S_ISDIR(mode):
            raise UserError(f"{flag} {path} is a directory; give a file name")
        if not stat.S_ISREG(mode):
            raise UserError(f"{flag} {path} exists and is not a regular file ({file_kind(mode)})")
    target = path.resolve()
    for inp in inputs:
        if inp is None:
            continue
        src = Path(inp).resolve()
        if target == src or src in target.parents:
            raise UserError(f"{flag} {path} would overwrite the input {inp}")
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: no write permission in {parent}")
    return path


def apart_from_model(path, what: str, model_dir) -> Path:
    """A directory a command writes (run directory, saved model) and the input model directory
    must be disjoint: refuses ``path`` equal to, inside, or containing ``model_dir``."""
    out, src = Path(path).resolve(), Path(model_dir).resolve()
    if out == src or src in out.parents:
        raise UserError(f"{what} {path} overlaps the input model directory {model_dir} (it is inside it)")
    if out in src.parents:
        raise UserError(f"{what} {path} overlaps the input model directory {model_dir} (it contains it)")
    return Path(path)


def check_disjoint(outputs, inputs=()) -> None:
    """Every output location apart from every other output and every input: after symlinks are
    resolved, no two are the same path and neither lies inside the other (a results file inside
    a saved model would replace its weights; a saved model inside the run directory would be
    deleted with it). ``outputs``/``inputs``: (flag, path or None) pairs. One UserError line."""
    outs = [(flag, Path(p), Path(p).resolve()) for flag, p in outputs if p is not None]
    ins = [(flag, Path(p), Path(p).resolve()) for flag, p in inputs if p is not None]
    for i, (flag_a, a, real_a) in enumerate(outs):
        for flag_b, b, real_b in outs[i + 1:] + ins:
            if real_a == real_b:
                raise UserError(f"{flag_a} {a} and {flag_b} {b} are the same location")
            if real_b in real_a.parents:
                raise UserError(f"{flag_a} {a} is inside {flag_b} {b}")
            if real_a in real_b.parents:
                raise UserError(f"{flag_b} {b} is inside {flag_a} {a}")


def cache_home_dir(path: Path) -> Path:
    """The cache root ($DSNOT_REF_HOME ...). Refuses one that exists and is not a directory, or
    whose nearest existing ancestor is not a directory."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cache directory {path} (DSNOT_REF_HOME or XDG_CACHE_HOME) is not a directory "
                        f"({existing} is a file)")
    return path


# --- results files --------------------------------------------------------------------------


def results_record(results, path) -> dict:
    """A parsed ``prune --results`` file, typed as ``report`` reads it.

    Refuses: a value that is not an object; no ``layers`` list of objects; a layer field in the
    table (name, sparsity, eps_*, swaps, recon_*) of the wrong type; ``settings``,
    ``sparsity``, ``perplexity``, ``times`` that are not objects; per-layer sparsities, times,
    perplexity fields that are not numbers.
    """
    if not isinstance(results, dict) or not isinstance(results.get("layers"), list):
        raise UserError(f"{path} is not a dsnot-ref results file (no 'layers' list)")
    for key in ("settings", "sparsity", "perplexity", "times"):
        if not isinstance(results.get(key) or {}, dict):
            raise UserError(f"results file {path}: {key!r} is not an object")
    for i, row in enumerate(results["layers"]):
        if not isinstance(row, dict):
            raise UserError(f"results file {path}: layers[{i}] is not an object")
        for key in ("sparsity", "eps_before", "eps_after", "recon_before", "recon_after"):
            if row.get(key) is not None and not is_number(row[key]):
                raise UserError(f"results file {path}: layers[{i}].{key} is not a number")
        if row.get("swaps") is not None and not (isinstance(row["swaps"], int) and not isinstance(row["swaps"], bool)):
            raise UserError(f"results file {path}: layers[{i}].swaps is not an integer")
        if not isinstance(row.get("name", ""), (str, int)):
            raise UserError(f"results file {path}: layers[{i}].name is not a string")
    sparsity = results.get("sparsity") or {}
    per_layer = sparsity.get("per_layer") or {}
    if not isinstance(per_layer, dict) or not all(is_number(v) for v in per_layer.values()):
        raise UserError(f"results file {path}: sparsity.per_layer is not an object of numbers")
    if per_layer and not is_number(sparsity.get("overall")):
        raise UserError(f"results file {path}: sparsity.overall is not a number")
    for which, ppl in (results.get("perplexity") or {}).items():
        fields = ("n_windows", "seqlen")
        # a null perplexity beside a numeric mean NLL is one that overflowed (written as null)
        value_ok = isinstance(ppl, dict) and (is_number(ppl.get("perplexity")) or (
            ppl.get("perplexity") is None and is_number(ppl.get("mean_nll"))))
        if ppl and not (value_ok and all(is_number(ppl.get(k)) for k in fields)):
            raise UserError(f"results file {path}: perplexity.{which} lacks numeric perplexity, n_windows, seqlen")
    if not all(is_number(v) for v in (results.get("times") or {}).values()):
        raise UserError(f"results file {path}: times are not all numbers")
    # a section given as null reads as absent
    return {**results, **{key: results.get(key) or {} for key in ("settings", "sparsity", "perplexity", "times")}}


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
