"""Checks every stage makes before its expensive work: can it read its inputs and write its outputs.

An unwritable ``train.out_dir`` or an ``evaluate --out`` that names a
directory used to surface after the training run or the scoring was done,
and lose it.  A stage lists what it reads and what it writes, and
`preflight` checks all of it first: each input exists, is a file and opens
for reading; each output's directory can take a new file (a probe file is
created and removed in the nearest existing directory, the one pgolf would
create the rest under), and the output itself is not a directory (or, for a
directory output, not a file).  Nothing is created: a failure leaves the disk
as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import PgolfError

PROBE_PREFIX = ".pgolf-probe."


def readable(path: Path, hint: str) -> None:
    """`path` is an existing file that opens for reading; `hint` says what makes it (for the error)."""
    path = Path(path)
    if path.is_dir():
        raise PgolfError(f"{path}: is a directory, expected a file ({hint})")
    if not path.is_file():
        raise PgolfError(f"{path}: missing ({hint})")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise PgolfError(f"{path}: cannot read ({exc.strerror or exc})") from None


def writable_file(path: Path, key: str) -> None:
    """A file can be written at `path` (set by `key`, a params key or an option)."""
    path = Path(path)
    if path.is_dir():
        raise PgolfError(f"{key}: {path} is a directory, expected a file path")
    _probe(path.parent, path, key)


def writable_dir(path: Path, key: str) -> None:
    """A directory output can be built and swapped in at `path` (built beside it, in its parent)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PgolfError(f"{key}: {path} is a file, expected a directory")
    _probe(path.parent, path, key)


def preflight(*, reads: Iterable[tuple[Path, str]] = (), writes: Iterable[tuple[Path, str]] = (),
              builds: Iterable[tuple[Path, str]] = ()) -> None:
    """Check inputs (path, hint), file outputs (path, key) and directory outputs (path, key), in that order."""
    for path, hint in reads:
        readable(path, hint)
    for path, key in writes:
        writable_file(path, key)
    for path, key in builds:
        writable_dir(path, key)


def _probe(directory: Path, target: Path, key: str) -> None:
    """Create and remove a file in the nearest existing ancestor of `directory`."""
    existing = directory if str(directory) else Path(".")
    while not existing.exists():
        if existing.is_symlink():
            raise PgolfError(f"{key}: cannot create {target}: {existing} is a dangling symbolic link")
        existing = existing.parent
    if not existing.is_dir():
        raise PgolfError(f"{key}: cannot create {target}: {existing} is not a directory")
    try:
        fd, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=existing)
    except OSError as exc:
        raise PgolfError(f"{key}: cannot create {target}: {existing} is not writable "
                         f"({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(name)


def prepared_data(data_dir: Path, vocab_size: int, splits: Iterable[str]) -> list[tuple[Path, str]]:
    """The prepare stage's files a later stage reads: the manifest (read and checked here), the
    tokenizer and the shards of `splits`, as `reads` entries for `preflight`."""
    from pipeline.data.layout import DataLayout
    from pipeline.stage_files import read_manifest

    layout = DataLayout(Path(data_dir))
    hint = "run `pgolf prepare` first"
    readable(layout.manifest, hint)
    manifest = read_manifest(layout.manifest)
    made_for = manifest["tokenizer"]["vocab_size"]
    if made_for != vocab_size:
        raise PgolfError(f"{layout.manifest}: the data was prepared with vocab {made_for} but "
                         f"model.vocab_size is {vocab_size} (run `pgolf prepare` again)")
    files = [layout.tokenizer]
    for split in splits:
        files += layout.train_files() if split == "train" else layout.val_files()
    return [(f, hint) for f in files]
