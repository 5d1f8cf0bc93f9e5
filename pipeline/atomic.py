"""Atomic file and directory writes: temp path first, rename when complete.

A DVC stage that is interrupted must never leave an output that looks
finished.  Every stage writes through these helpers; a rename within one
filesystem is atomic, so readers see either the old file or the new one.

Temporary names are ``.<output name>.<pid>.<random>.tmp`` next to the output
(``.<name>.<pid>.<random>.old`` for a directory set aside while it is
replaced).  A process killed mid-write leaves them behind; the next write of
the same output (and every stage at its start, `clean_stale`) removes those
whose process is gone, restoring an ``.old`` directory if the output itself
is missing.  Nothing else next to an output is ever touched.

Directories pgolf writes carry a marker file (`OUTPUT_MARKER`) naming their
kind; `atomic_dir` replaces an existing directory only if it carries the
marker of the same kind (or is empty), unless forced.  On Linux the swap is
one ``renameat2(RENAME_EXCHANGE)``, so the output path always holds a complete
directory, old or new.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import io
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from pipeline.errors import OutputError

OUTPUT_MARKER = ".pgolf-output"
_TMP = ".tmp"
_OLD = ".old"
_created: set[str] = set()  # temp paths this process made: its own pid may be a dead run's (containers)


def write_point(name: str) -> None:
    """A named moment inside a write.  Does nothing; tests replace it to kill the process there."""


# --------------------------------------------------------------------------- temporary names


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _new_temp(path: Path, suffix: str, directory: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        name = tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=suffix, dir=path.parent)
    else:
        fd, name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=suffix, dir=path.parent)
        os.close(fd)
    _created.add(os.path.abspath(name))
    return Path(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(path: Path, suffix: str) -> list[Path]:
    """Temp siblings of `path` with `suffix` left by processes that no longer run."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[a-z0-9_]+{re.escape(suffix)}")
    if not path.parent.is_dir():
        return []
    found = []
    for entry in path.parent.iterdir():
        match = pattern.fullmatch(entry.name)
        if not match or os.path.abspath(entry) in _created:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or not _alive(pid):
            found.append(entry)
    return sorted(found, key=lambda p: p.lstat().st_mtime, reverse=True)


def is_marked(path: Path, kind: str | None = None) -> bool:
    """True if `path` is a real directory holding pgolf's marker (of `kind`, if given)."""
    marker = Path(path) / OUTPUT_MARKER
    if Path(path).is_symlink() or not marker.is_file():
        return False
    return kind is None or marker_kind(path) == kind


def marker_kind(path: Path) -> str | None:
    try:
        first = (Path(path) / OUTPUT_MARKER).read_text(encoding="utf-8").splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    return first.removeprefix("pgolf-output: ").strip() if first.startswith("pgolf-output: ") else None


def _remove_pgolf_dir(path: Path) -> bool:
    """Remove a directory only if pgolf's marker is in it or it is empty."""
    if path.is_symlink() or not path.is_dir():
        return False
    if not is_marked(path) and any(path.iterdir()):
        return False
    shutil.rmtree(path)
    return True


def clean_stale(path: str | Path) -> None:
    """Undo what a killed write of `path` left: restore a set-aside directory, remove temp files.

    Only names of pgolf's own temp pattern, made by processes that are gone, are touched;
    a directory among them is removed only if it carries the marker (or is empty).
    """
    path = Path(path)
    for old in _leftovers(path, _OLD):
        if not path.exists() and not path.is_symlink():
            os.rename(old, path)  # killed between setting the old one aside and moving the new one in
        else:
            _remove_pgolf_dir(old)
    for tmp in _leftovers(path, _TMP):
        if tmp.is_dir() and not tmp.is_symlink():
            _remove_pgolf_dir(tmp)
        else:
            tmp.unlink()


# --------------------------------------------------------------------------- files


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename onto it only if the body succeeds."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise OutputError(f"{path}: is a directory; refusing to replace it with a file")
    clean_stale(path)
    tmp = _new_temp(path, _TMP, directory=False)
    try:
        yield tmp
        write_point(f"file:{path.name}")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        _created.discard(os.path.abspath(tmp))


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def torch_save(obj: Any, path: str | Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------- directories


def write_marker(directory: Path, kind: str) -> None:
    """The marker that lets a later run replace `directory` (the same bytes every time)."""
    (Path(directory) / OUTPUT_MARKER).write_text(
        f"pgolf-output: {kind}\nWritten by pgolf, which replaces this whole directory when it writes "
        "the output again. Do not keep your own files here.\n", encoding="utf-8")


def check_replaceable(path: str | Path, kind: str, force: bool = False) -> None:
    """Raise OutputError unless `path` is absent, empty, or a pgolf directory of `kind` (or `force`).

    Also cleans what a killed earlier write left next to it (`clean_stale`).
    """
    path = Path(path)
    clean_stale(path)
    if force or (not path.exists() and not path.is_symlink()):
        return
    if path.is_symlink() or not path.is_dir():
        raise OutputError(f"{path}: exists and is not a directory written by pgolf; refusing to replace it")
    if is_marked(path, kind) or not any(path.iterdir()):
        return
    other = marker_kind(path) if is_marked(path) else None
    if other is not None:
        raise OutputError(f"{path}: holds a pgolf {other} output, not a {kind} output; refusing to replace it")
    raise OutputError(f"{path}: exists and was not written by pgolf (no {OUTPUT_MARKER} marker inside); "
                      "refusing to replace it")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc without renameat2 (glibc < 2.28)
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):  # kernel or filesystem
        return False
    raise OSError(err, os.strerror(err), str(b))


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _swap_in(tmp: Path, path: Path) -> None:
    """Put `tmp` at `path`; whatever `path` held ends up at `tmp` or an ``.old`` sibling, then goes."""
    if not path.exists() and not path.is_symlink():
        os.rename(tmp, path)
    elif _exchange(tmp, path):
        write_point(f"dir-exchanged:{path.name}")
    else:  # set the old one aside; a kill between the renames is undone by `clean_stale`
        old = _new_temp(path, _OLD, directory=True)
        os.rmdir(old)
        os.rename(path, old)
        write_point(f"dir-old-aside:{path.name}")
        try:
            os.rename(tmp, path)
        except BaseException:
            os.rename(old, path)  # put the old one back before reporting the failure
            raise
        finally:
            _created.discard(os.path.abspath(old))
        _discard(old)
    _fsync_dir(path.parent)


def _discard(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


@contextlib.contextmanager
def atomic_dir(path: str | Path, force: bool = False, kind: str = "output") -> Iterator[Path]:
    """Build a directory under a temporary name and swap it into place at the end.

    The new directory gets pgolf's marker of `kind`.  An existing directory at
    `path` is replaced only if it is empty or carries the marker of the same
    kind (`force` replaces anything), and only once the new one is complete;
    on failure the temporary directory is removed and `path` is left as it was.
    """
    path = Path(path)
    check_replaceable(path, kind, force)
    tmp = _new_temp(path, _TMP, directory=True)
    try:
        write_marker(tmp, kind)
        yield tmp
        write_point(f"dir-built:{path.name}")
        check_replaceable(path, kind, force)  # the body may have run for minutes
        _swap_in(tmp, path)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _discard(tmp)  # a failed build, or after an exchange the previous output
        _created.discard(os.path.abspath(tmp))
