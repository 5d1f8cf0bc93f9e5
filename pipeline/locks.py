"""One writer at a time per seed run directory and per data directory.

`fcntl.flock` on a lock file: the kernel releases it when the holding process
ends, however it ends (SIGKILL included), so a lock never outlives its run.
The holder writes its pid into the file so a refused second command can say
who holds it, and removes the file when it lets go; a killed holder leaves the
file behind and the next command simply takes it over.

The run lock file lives inside the run directory (``runs/seed_N/.pgolf-lock``),
which pgolf never replaces (only its contents).  The data directory is replaced
as a whole by `pgolf prepare`, so its lock file sits next to it
(``.data.pgolf-lock`` beside ``data/``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import OutputError

LOCK_FILE = ".pgolf-lock"


def run_lock_path(run_dir: Path) -> Path:
    return Path(run_dir) / LOCK_FILE


def data_lock_path(data_dir: Path) -> Path:
    data_dir = Path(data_dir)
    return data_dir.parent / f".{data_dir.name}{LOCK_FILE}"


@contextlib.contextmanager
def hold(lock_path: Path, what: Path) -> Iterator[None]:
    """Hold the lock at `lock_path` for the body; refuse at once (OutputError naming the pid) if taken."""
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(lock_path, what)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            lock_path.unlink()  # still holding it: a waiter that opened this file retries on a fresh one
        os.close(fd)  # releases the lock


def _acquire(lock_path: Path, what: Path) -> int:
    """A descriptor holding the lock on the file now at `lock_path` (re-tried if it was replaced meanwhile)."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(f"{what}: in use by another pgolf process (pid {holder}, lock file {lock_path}); "
                              "wait for it to finish") from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder released and removed the file between our open and our lock


def run_lock(run_dir: Path, create: bool = True) -> contextlib.AbstractContextManager[None]:
    """The lock of one seed's run directory (train, swa and quantize of that seed take it).

    With `create` false a missing run directory is left missing (a stage that only
    reads it is about to report its missing input; there is nothing to protect).
    """
    if not create and not Path(run_dir).is_dir():
        return contextlib.nullcontext()
    return hold(run_lock_path(run_dir), Path(run_dir))


def data_lock(data_dir: Path) -> contextlib.AbstractContextManager[None]:
    """The lock of the data directory (`pgolf prepare` takes it)."""
    return hold(data_lock_path(data_dir), Path(data_dir))
