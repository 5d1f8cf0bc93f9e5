"""The token shard format (SPEC §1), byte-compatible with the published shards.

A shard is a header of 256 little-endian int32 (``[0]`` magic 20240520,
``[1]`` version 1, ``[2]`` token count) followed by the tokens as
little-endian uint16.  Every reader goes through `read_shard`, which checks
the header against the file size, so a truncated download or a stray file
fails with its name instead of training on garbage.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import ArrayLike

from pipeline.atomic import atomic_path
from pipeline.errors import DataError

MAGIC = 20240520
VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_DTYPE = np.dtype("<u2")
MAX_TOKENS_PER_SHARD = 2**31 - 1  # the count is an int32
SPLITS = ("train", "val")


def shard_name(split: str, index: int) -> str:
    """``fineweb_{split}_NNNNNN.bin``: the published naming, numbered from 000000."""
    _check_split(split)
    return f"fineweb_{split}_{index:06d}.bin"


def shard_paths(directory: str | Path, split: str) -> list[Path]:
    """The shards of one split in `directory`, in name order (the training order)."""
    _check_split(split)
    pattern = re.compile(rf"fineweb_{split}_\d{{6}}\.bin")
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if pattern.fullmatch(p.name))


def read_header(path: str | Path) -> int:
    """Validate a shard's header against its size and return its token count."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            raw = f.read(HEADER_BYTES)
    except FileNotFoundError:
        raise DataError(f"{path}: shard not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read shard ({exc.strerror or exc})") from None
    if len(raw) < HEADER_BYTES:
        raise DataError(f"{path}: truncated shard: {size} bytes, shorter than the {HEADER_BYTES}-byte header")
    header = np.frombuffer(raw, dtype="<i4")
    magic, version, count = int(header[0]), int(header[1]), int(header[2])
    if magic != MAGIC:
        raise DataError(f"{path}: not a token shard: magic {magic}, expected {MAGIC}")
    if version != VERSION:
        raise DataError(f"{path}: unsupported shard version {version}, expected {VERSION}")
    expected = HEADER_BYTES + count * TOKEN_DTYPE.itemsize
    if count < 0 or size != expected:
        state = "truncated" if size < expected else "has trailing bytes"
        raise DataError(f"{path}: {state}: header says {count} tokens ({expected} bytes) but the file has {size} bytes")
    return count


def read_shard(path: str | Path) -> np.ndarray:
    """The tokens of a validated shard, memory-mapped read-only as little-endian uint16."""
    count = read_header(path)
    if count == 0:  # mmap cannot map an empty range
        return np.zeros(0, dtype=TOKEN_DTYPE)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(count,))


def as_tokens(tokens: ArrayLike, where: str | Path) -> np.ndarray:
    """Check that every id fits uint16 and return the tokens as a little-endian uint16 array."""
    array = np.asarray(tokens)
    if array.dtype == TOKEN_DTYPE:
        return array.reshape(-1)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{where}: tokens must be integers, got dtype {array.dtype}")
    array = array.reshape(-1)
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > np.iinfo(TOKEN_DTYPE).max:
            bad = high if high > np.iinfo(TOKEN_DTYPE).max else low
            raise DataError(f"{where}: token id {bad} does not fit a uint16 shard (ids must be in [0, 65535])")
    return array.astype(TOKEN_DTYPE)


def write_shard(path: str | Path, tokens: ArrayLike) -> None:
    """Write one shard atomically (a reader never sees half a file)."""
    path = Path(path)
    data = as_tokens(tokens, path)
    if data.size > MAX_TOKENS_PER_SHARD:
        raise DataError(f"{path}: {data.size} tokens do not fit one shard (max {MAX_TOKENS_PER_SHARD})")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(_header_bytes(data.size))
        f.write(data.tobytes())


class ShardWriter:
    """Streams the tokens of one split into numbered shards of `shard_tokens` each.

    Tokens go straight to disk (the header is patched in when a shard is
    full), so memory stays bounded whatever the shard size.  Meant to write
    into a directory that is swapped in only when complete.
    """

    def __init__(self, directory: str | Path, split: str, shard_tokens: int) -> None:
        _check_split(split)
        if not 1 <= shard_tokens <= MAX_TOKENS_PER_SHARD:
            raise DataError(f"shard_tokens={shard_tokens} must be in [1, {MAX_TOKENS_PER_SHARD}]")
        self.directory = Path(directory)
        self.split = split
        self.shard_tokens = shard_tokens
        self.paths: list[Path] = []
        self.tokens_written = 0
        self._file: BinaryIO | None = None
        self._fill = 0

    def write(self, tokens: ArrayLike) -> None:
        data = as_tokens(tokens, self.directory / shard_name(self.split, len(self.paths)))
        start = 0
        while start < data.size:
            if self._file is None:
                self._open_next()
            assert self._file is not None
            take = min(self.shard_tokens - self._fill, data.size - start)
            self._file.write(data[start : start + take].tobytes())
            self._fill += take
            self.tokens_written += take
            start += take
            if self._fill == self.shard_tokens:
                self._finish()

    def close(self) -> list[Path]:
        """Finish the last (partial) shard and return every shard written, in order."""
        if self._file is not None:
            self._finish()
        return list(self.paths)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open_next(self) -> None:
        path = self.directory / shard_name(self.split, len(self.paths))
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb")
        self._file.write(_header_bytes(0))
        self.paths.append(path)
        self._fill = 0

    def _finish(self) -> None:
        assert self._file is not None
        self._file.seek(0, os.SEEK_SET)
        self._file.write(_header_bytes(self._fill))
        self._file.close()
        self._file = None


def _header_bytes(count: int) -> bytes:
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = MAGIC, VERSION, count
    return header.tobytes()


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
