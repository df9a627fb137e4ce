"""The run directory: per-layer activations on disk and the run manifest (I/O).

A pruning run keeps the calibration activations of one layer boundary on disk, never in
memory: ``acts/layer_{i:03d}.npy`` holds the inputs of decoder layer i, shape [S, L, D], in the
compute dtype (float32 by default, float64 with ``dtype="float64"``). Files are ordinary .npy
files (``open_activations`` maps one with ``mmap_mode="r"``), but the pipeline streams them a
chunk at a time with plain reads and writes (``read_chunk``, ``ActivationWriter``): pages of a
memory-mapped file count in the process's resident set once touched, so mapping a whole
[S, L, D] file would make peak RSS grow with S.

Every file is written under a temporary name and renamed, so a killed run leaves complete files
or none. A killed run leaves at most: two activation files (the inputs of the layer in progress
and the partial temporary of the next one, 2·S·L·D·itemsize bytes), plus the finished layers'
pruned weights, masks and diagnostics. ``cache_size_bytes`` measures it.

The manifest (``manifest.json``) records what the run is of: the model by content (sha256 of
config.json and of every weight file), the sha256 of the calibration tokens
(``data.tokens_hash``), the settings, the number of finished layers, and the size and sha256 of
every file a resumed run would reuse (written with the file). Reopening a run directory with a
different model, tokens or settings, or one whose files no longer match their records, raises
``UserError``: a cache is never reused silently.
A run claims its directory (``run_lock``) before reading or writing anything in it: an exclusive
``flock`` on ``.lock`` in it, held for the whole run and released by the kernel when the process
dies, so two processes never use the same run directory, and a refused process touches nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from . import validate
from .errors import UserError
from .io_utils import atomic_path, atomic_write_json

# 3: the model by content (sha256 of every file), and a size + sha256 record of every file reused.
FORMAT_VERSION = 3
MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".lock"


class RunDirectoryError(UserError):
    """The run directory itself cannot be used: another process holds it, it was made from other
    inputs, or its files or manifest are not what was written. The message says what to do."""


# --- paths inside a run directory --------------------------------------------------------


def activation_path(run_dir: Path, layer: int) -> Path:
    """Inputs of decoder layer ``layer`` (``layer == num_layers``: the final hidden states)."""
    return Path(run_dir) / "acts" / f"layer_{layer:03d}.npy"


def layer_weights_path(run_dir: Path, layer: int) -> Path:
    return Path(run_dir) / "layers" / f"layer_{layer:03d}.safetensors"


def layer_masks_path(run_dir: Path, layer: int) -> Path:
    return Path(run_dir) / "masks" / f"layer_{layer:03d}.safetensors"


def layer_diagnostics_path(run_dir: Path, layer: int) -> Path:
    return Path(run_dir) / "diagnostics" / f"layer_{layer:03d}.json"


# --- activation files ----------------------------------------------------------------------


class ActivationWriter:
    """Writes an [S, L, D] .npy file chunk by chunk; it appears under its name only when complete.

    Use as a context manager: ``with ActivationWriter(path, shape, dtype) as w: w.write(b0, chunk)``.
    On an exception (or a kill) only a temporary ``.layer_XXX.npy.*.tmp`` file is left behind.
    """

    def __init__(self, path: Path, shape: tuple[int, int, int], dtype):
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize  # one sequence
        self._ctx = None
        self._file = None
        self._offset = 0

    def __enter__(self) -> ActivationWriter:
        self._ctx = atomic_path(self.path)
        tmp = self._ctx.__enter__()
        self._file = open(tmp, "wb")  # noqa: SIM115 - closed in __exit__
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": self.shape,
        }
        np.lib.format.write_array_header_1_0(self._file, header)
        self._offset = self._file.tell()
        self._file.truncate(self._offset + self.shape[0] * self.row_bytes)
        return self

    def write(self, start: int, chunk: np.ndarray) -> None:
        """Sequences ``start .. start + B`` of the array: ``chunk [B, L, D]`` (host array)."""
        if tuple(chunk.shape[1:]) != self.shape[1:] or start + chunk.shape[0] > self.shape[0]:
            raise ValueError(f"chunk {tuple(chunk.shape)} at {start} does not fit {self.shape}")
        data = np.ascontiguousarray(chunk, dtype=self.dtype)
        self._file.seek(self._offset + start * self.row_bytes)
        self._file.write(data.tobytes())

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._file.flush()
                os.fsync(self._file.fileno())
        finally:
            self._file.close()
        return self._ctx.__exit__(exc_type, exc, tb)


def _npy_layout(f) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) of an open C-ordered .npy file."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if fortran:
        raise UserError(f"activation file {f.name} is Fortran-ordered; it was not written by dsnot_ref")
    return tuple(shape), np.dtype(dtype), f.tell()


def activation_info(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an activation file, without reading its data."""
    with open(path, "rb") as f:
        shape, dtype, _ = _npy_layout(f)
    return shape, dtype


def read_chunk(path: Path, start: int, stop: int) -> np.ndarray:
    """Sequences ``start:stop`` of an [S, L, D] activation file, read into a fresh array."""
    with open(path, "rb") as f:
        shape, dtype, offset = _npy_layout(f)
        stop = min(stop, shape[0])
        row = int(np.prod(shape[1:]))
        f.seek(offset + start * row * dtype.itemsize)
        out = np.fromfile(f, dtype=dtype, count=(stop - start) * row)
    if out.size != (stop - start) * row:
        raise UserError(f"activation file {path} is truncated; delete the run directory and rerun")
    return out.reshape((stop - start, *shape[1:]))  # [B, L, D]


def open_activations(path: Path) -> np.ndarray:
    """A read-only memory map of a whole activation file (for inspection and tests)."""
    return np.load(path, mmap_mode="r")


# --- identity of what a run is made from -----------------------------------------------------


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_identity(model_dir: Path) -> dict:
    """What a model is, by content: the sha256 of config.json and of every weight file (and
    index) of the directory. Not its path, names of files aside, sizes or modification times: a
    copied or moved model is the same model, a file rewritten with other bytes is another.

    Hashing streams each file (1 MiB blocks); within one process the digest of a file not
    written since (same inode, size and change time, which no program can set back) is reused
    rather than read again.
    """
    model_dir = Path(model_dir).resolve()
    config = model_dir / "config.json"
    if not config.is_file():
        raise UserError(f"no config.json in model directory {model_dir}")
    files = {}
    for p in sorted(model_dir.iterdir()):
        if p.is_file() and (p.name.endswith(".safetensors") or p.name.endswith(".safetensors.index.json")):
            files[p.name] = file_digest(p)
    return {"config_sha256": file_digest(config), "weight_files": files}


_DIGESTS: dict[tuple, str] = {}  # (resolved path, device, inode, size, ctime_ns) -> sha256, this process


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, computed once per process for an unchanged file."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_ctime_ns)
    if key not in _DIGESTS:
        try:
            _DIGESTS[key] = file_sha256(path)
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None
    return _DIGESTS[key]


def check_not_foreign(run_dir: Path) -> None:
    """UserError for an existing directory that holds files but no run manifest."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} exists and is not a directory")
    if (run_dir / MANIFEST_NAME).exists() or not run_dir.exists():
        return
    if any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        raise UserError(f"run directory {run_dir} is not empty and has no {MANIFEST_NAME}; choose another")


# --- one process per run directory ----------------------------------------------------------


class RunClaim:
    """This process's exclusive hold on a run directory, and what it may clean up afterwards.

    ``made``: the directories this process created for it (the run directory and missing
    parents, deepest first); ``fresh``: the run directory held no run when it was claimed (new,
    or empty), so everything in it is this process's work; ``earlier``: the manifest of the
    earlier (interrupted) run found in it, or None.
    """

    def __init__(self, run_dir: Path, made: list[Path], earlier: dict | None):
        self.run_dir = run_dir
        self.made = made
        self.fresh = earlier is None
        self.earlier = earlier

    def layers_done(self) -> int:
        manifest = read_manifest(self.run_dir) if (self.run_dir / MANIFEST_NAME).is_file() else None
        return 0 if manifest is None else int(manifest.get("layers_done") or 0)

    def remove(self) -> None:
        """Delete the run directory (its contents only when it existed, empty, before the run) and
        the parents made for it. Only with the lock held: nobody else can be using it."""
        if self.run_dir in self.made or not self.fresh:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:
            for p in self.run_dir.iterdir():
                if p.name == LOCK_NAME:
                    continue
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
            (self.run_dir / LOCK_NAME).unlink(missing_ok=True)
        for parent in self.made:
            if parent != self.run_dir:
                with contextlib.suppress(OSError):
                    parent.rmdir()  # only if empty

    def remove_temporaries(self) -> list[Path]:
        """Delete the temporary files in the run directory (they can only be this process's)."""
        return remove_stale_temporaries(self.run_dir) if self.run_dir.is_dir() else []


_CLAIMS: dict[str, RunClaim] = {}  # resolved run directory -> this process's claim on it


def missing_directories(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            break
        missing.append(p)
    return missing


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Claim a run directory for this process (yields a ``RunClaim``): an exclusive ``flock`` on
    its ``.lock``, taken before anything in it is read or written and held until the block ends
    (the kernel releases it if the process dies).

    A process refused the lock (``UserError``, "in use") has created nothing and removes nothing.
    Inside one process a second ``run_lock`` of the same directory joins the first.
    """
    import fcntl  # noqa: PLC0415 - POSIX only; imported where it is used

    run_dir = Path(run_dir)
    key = str(run_dir.resolve())
    if key in _CLAIMS:
        yield _CLAIMS[key]
        return
    check_not_foreign(run_dir)  # never leave a lock file in someone else's directory
    made = missing_directories(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    fd, made_lock = lock_run_dir(run_dir, fcntl)
    try:
        try:
            check_not_foreign(run_dir)  # what it holds now that nobody else can change it
            claim = RunClaim(run_dir, made, read_manifest(run_dir))
        except BaseException:  # refused: take back the lock file and directories made for it
            if made_lock:
                (run_dir / LOCK_NAME).unlink(missing_ok=True)
            for directory in made:
                with contextlib.suppress(OSError):
                    directory.rmdir()
            raise
        _CLAIMS[key] = claim
        try:
            yield claim
        finally:
            del _CLAIMS[key]
    finally:
        os.close(fd)  # releases the lock


def lock_run_dir(run_dir: Path, fcntl) -> tuple[int, bool]:
    """(open descriptor holding the exclusive lock on ``run_dir/.lock``, whether this call created
    the file); UserError if another process holds it. A lock file removed (with its run
    directory) by the process that held it, between our open and our lock, is not the run's
    lock any more: open the new one."""
    lock_path = run_dir / LOCK_NAME
    for _ in range(10):
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            created = not lock_path.exists()
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise RunDirectoryError(f"cannot create the lock file {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunDirectoryError(f"run directory {run_dir} is in use by another process") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            return fd, created
        os.close(fd)
    raise RunDirectoryError(f"run directory {run_dir} keeps being removed by another process")


# --- the manifest ----------------------------------------------------------------------------


def _json_ready(obj):
    """The value as it reads back from JSON (tuples become lists), for exact comparison."""
    return json.loads(json.dumps(obj))


def _first_difference(a, b, where: str = "") -> str | None:
    """Dotted path of the first place two JSON values differ, with both values."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            sub = f"{where}.{key}" if where else str(key)
            if key not in a or key not in b:
                return f"{sub}: {a.get(key, '<missing>')!r} vs {b.get(key, '<missing>')!r}"
            found = _first_difference(a[key], b[key], sub)
            if found:
                return found
        return None
    return None if a == b else f"{where}: {a!r} (run directory) vs {b!r} (now)"


def read_manifest(run_dir: Path) -> dict | None:
    path = Path(run_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    try:
        manifest = validate.read_json_file(path, "run manifest")
    except UserError as exc:
        raise RunDirectoryError(f"run manifest {path} is not valid JSON ({str(exc).split(': ', 1)[-1]}); "
                        "delete the run directory") from None
    if not isinstance(manifest, dict):
        raise RunDirectoryError(f"run manifest {path} is not a JSON object; delete the run directory")
    return manifest


def open_run(run_dir: Path, identity: dict, tokens_hash: str, settings: dict, num_layers: int) -> dict:
    """Create a run directory, or reopen one made from exactly the same inputs.

    Returns the manifest. Raises UserError for a non-empty directory that is not a run
    directory, a run directory made from another model, other tokens or other settings, and one
    whose finished files do not match the records written with them (``verify_run``).
    """
    run_dir = Path(run_dir)
    wanted = _json_ready(
        {
            "format_version": FORMAT_VERSION,
            "model": identity,
            "calibration_tokens_sha256": tokens_hash,
            "settings": settings,
            "num_layers": num_layers,
        }
    )
    manifest = read_manifest(run_dir)
    if manifest is None:
        check_not_foreign(run_dir)
        manifest = {**wanted, "layers_done": 0, "files": {}}
        atomic_write_json(run_dir / MANIFEST_NAME, manifest)
        return manifest
    found = {key: manifest.get(key) for key in wanted}
    diff = _first_difference(found, wanted)
    if diff:
        raise RunDirectoryError(
            f"run directory {run_dir} was made from other inputs ({diff}); "
            "use another run directory or delete this one"
        )
    remove_stale_temporaries(run_dir)
    return verify_run(run_dir, manifest)


def finished_files(run_dir: Path, layer: int) -> list[Path]:
    """The files that make layer ``layer`` finished: pruned weights, masks, diagnostics."""
    return [layer_weights_path(run_dir, layer), layer_masks_path(run_dir, layer),
            layer_diagnostics_path(run_dir, layer)]


def file_record(path: Path) -> dict:
    """What a run directory's file must still be when it is reused: its size and sha256."""
    return {"size": Path(path).stat().st_size, "sha256": file_sha256(path)}


def record_files(run_dir: Path, paths, manifest: dict | None = None, **changes) -> dict:
    """Add the records of ``paths`` (and ``changes``, e.g. layers_done) to the manifest on disk
    (atomic rewrite); returns it. Records of files no longer present are dropped."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir) or manifest or {}
    files = {name: rec for name, rec in (manifest.get("files") or {}).items() if (run_dir / name).exists()}
    for p in paths:
        files[Path(p).relative_to(run_dir).as_posix()] = file_record(p)
    manifest = {**manifest, **changes, "files": files}
    atomic_write_json(run_dir / MANIFEST_NAME, manifest)
    return manifest


def mark_layers_done(run_dir: Path, manifest: dict, layers_done: int) -> dict:
    """Record that layers ``0 .. layers_done - 1`` are finished (atomic rewrite), with the size
    and sha256 of the last one's files and of the inputs of the next layer."""
    run_dir = Path(run_dir)
    paths = finished_files(run_dir, layers_done - 1)
    if activation_path(run_dir, layers_done).exists():
        paths.append(activation_path(run_dir, layers_done))
    return record_files(run_dir, [p for p in paths if p.exists()], manifest, layers_done=int(layers_done))


def is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def verify_run(run_dir: Path, manifest: dict) -> dict:
    """The manifest of a run directory about to be resumed, after checking that every file the
    resumed run will reuse (each finished layer's weights, masks and diagnostics, the inputs of
    the next layer, owl.json) is the file written then: same size and sha256. A changed, missing
    or unrecorded file is refused in one line; the inputs of layer 0, which are cheap to make
    again, are deleted instead."""
    run_dir = Path(run_dir)
    done, files = manifest.get("layers_done"), manifest.get("files")
    n_layers = manifest.get("num_layers")
    if not is_count(done) or not 0 <= done <= n_layers:
        raise RunDirectoryError(f"run manifest {run_dir / MANIFEST_NAME}: layers_done is {done!r}, not a layer count "
                        f"in [0, {n_layers}]; delete the run directory")
    if not isinstance(files, dict) or not all(
            isinstance(r, dict) and is_count(r.get("size")) and isinstance(r.get("sha256"), str)
            for r in files.values()):
        raise RunDirectoryError(f"run manifest {run_dir / MANIFEST_NAME}: 'files' is not a record of sizes and sha256; "
                        "delete the run directory")
    if done == 0:  # nothing finished: what is not recorded is made again
        activation_path(run_dir, 0).unlink(missing_ok=True)
        if "owl.json" not in files:
            (run_dir / "owl.json").unlink(missing_ok=True)
    reused = [p for i in range(done) for p in finished_files(run_dir, i)]
    if 0 < done < n_layers:
        reused.append(activation_path(run_dir, done))
    reused += [p for p in (run_dir / "owl.json",) if p.exists() or p.relative_to(run_dir).as_posix() in files]
    for path in reused:
        check_record(run_dir, path, files)
    return manifest


def check_record(run_dir: Path, path: Path, files: dict) -> None:
    """UserError unless ``path`` matches its record in the manifest's ``files``."""
    name = path.relative_to(run_dir).as_posix()
    record = files.get(name)
    advice = "delete the run directory and rerun"
    if record is None:
        raise RunDirectoryError(f"run directory {run_dir}: {name} has no record in the manifest; {advice}")
    if not path.is_file():
        raise RunDirectoryError(f"run directory {run_dir}: {name} is missing; {advice}")
    size = path.stat().st_size
    if size != record["size"]:
        raise RunDirectoryError(f"run directory {run_dir}: {name} has {size} bytes, {record['size']} when it was written "
                        f"(changed since); {advice}")
    if file_sha256(path) != record["sha256"]:
        raise RunDirectoryError(f"run directory {run_dir}: {name} changed since it was written (sha256 differs); {advice}")


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete the ``.*.tmp`` files a killed run left behind; returns what was removed."""
    removed = []
    for p in sorted(Path(run_dir).rglob(".*.tmp")):
        if not p.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed


def cache_size_bytes(run_dir: Path) -> int:
    """Bytes used by all files of a run directory (including temporaries of a killed run)."""
    return sum(p.stat().st_size for p in Path(run_dir).rglob("*") if p.is_file())
