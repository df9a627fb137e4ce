"""Writing files so that a crash never leaves a half-written one: temporary name, then rename."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp creates the file 0600; give the final file the mode a plain open() would.
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def os_error_text(exc: OSError) -> str:
    """One line for an environment error: what failed and on which file ("No space left on
    device: /data/run/acts/layer_003.npy")."""
    what = exc.strerror or type(exc).__name__
    where = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
    return f"{what}: {' -> '.join(where)}" if where else what


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """``obj`` as JSON; a non-finite float (an overflowed perplexity) is written as null, since
    JSON has no infinity or NaN."""
    atomic_write_text(path, json.dumps(finite_or_null(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def finite_or_null(obj):
    """``obj`` with every non-finite float replaced by None (recursively through dicts and lists)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


# --- replacing a whole directory ----------------------------------------------------------
#
# A new directory is staged, then put in place by renames. Into a path that does not exist: one
# rename of a sibling ``.<name>.XXXXXXXX.tmp``. Into an existing directory (possibly an empty
# mount point, which cannot be renamed, or a volume on another file system than its parent) the
# staging is inside it, and the swap is a sequence of renames whose every state is recognisable
# by the names inside the directory:
#
#   .dsnot-save.XXXXXXXX.tmp   the new content, being written (incomplete: deleted by a rerun)
#   .dsnot-save.new            the new content, complete: the replacement is committed
#   .dsnot-save.old            the old entries, being moved aside (after the commit)
#   .dsnot-save.up             the new content, being moved up into the directory
#
# ``repair_directory`` (run by every later replacement, under the same lock) deletes an
# incomplete staging and finishes a committed replacement from any of these states.

SAVE_PREFIX = ".dsnot-save"
STAGED, MOVING_UP, OLD = f"{SAVE_PREFIX}.new", f"{SAVE_PREFIX}.up", f"{SAVE_PREFIX}.old"


@contextlib.contextmanager
def directory_lock(path: Path):
    """An exclusive flock on the parent directory of ``path`` (waits for another process replacing
    a directory there; the kernel releases it if the process dies)."""
    import fcntl  # noqa: PLC0415 - POSIX only

    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def is_staging_name(name: str, prefix: str) -> bool:
    """``prefix`` + 8 characters of mkdtemp + ``.tmp``: a staging directory of ours."""
    return name.startswith(prefix) and name.endswith(".tmp") and len(name) == len(prefix) + 8 + len(".tmp")


def move_entries(src: Path, dst: Path) -> None:
    """Move every entry of ``src`` into ``dst`` (made if missing), one rename each; ours stay."""
    dst.mkdir(exist_ok=True)
    for p in sorted(src.iterdir()):
        if not p.name.startswith(SAVE_PREFIX):
            os.replace(p, dst / p.name)


def repair_directory(path: Path) -> None:
    """Delete what a killed replacement of ``path`` left incomplete and finish one it committed.
    Call with ``directory_lock(path)`` held."""
    for p in path.parent.iterdir():
        if p.is_dir() and not p.is_symlink() and is_staging_name(p.name, f".{path.name}."):
            shutil.rmtree(p)
    if not path.is_dir():
        return
    for p in path.iterdir():
        if p.is_dir() and not p.is_symlink() and is_staging_name(p.name, f"{SAVE_PREFIX}."):
            shutil.rmtree(p)
    if (path / STAGED).is_dir():  # committed: the old entries go aside, then the new ones up
        move_entries(path, path / OLD)
        os.replace(path / STAGED, path / MOVING_UP)
    if (path / MOVING_UP).is_dir():
        move_entries(path / MOVING_UP, path)
        (path / MOVING_UP).rmdir()
    if (path / OLD).exists():
        shutil.rmtree(path / OLD)


def is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False):
    """Yield a temporary directory; on success its content replaces ``path``.

    Refuses an existing non-empty ``path`` unless ``overwrite``. On an exception before the
    content is complete the staging is removed and ``path`` is untouched; a process killed at any
    point leaves a state the next replacement of ``path`` repairs (the old content, or the new
    one once it was complete). An existing empty directory (a mount point) is filled in place.
    """
    from .errors import UserError

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with directory_lock(path):
        repair_directory(path)
        if path.exists() and not is_empty_dir(path) and not overwrite:
            raise UserError(f"output directory {path} exists and is not empty (use --overwrite)")
        inside = path.is_dir()
        prefix = f"{SAVE_PREFIX}." if inside else f".{path.name}."
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=path if inside else path.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it 0700
        try:
            yield tmp
            if inside:
                os.replace(tmp, path / STAGED)  # the commit
                repair_directory(path)
            else:
                os.replace(tmp, path)
        except BaseException:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            else:  # committed before the interruption: finish, never leave half of each
                repair_directory(path)
            raise
