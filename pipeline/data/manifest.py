"""What ``manifest.json`` records about each output file: size, sha256, documents.

The manifest is the stage's receipt: anyone can check a data directory
against it, and two runs on the same input must produce the same manifest,
so it holds no timestamps and no absolute paths of temporary directories.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.data.shards import HEADER_BYTES, TOKEN_DTYPE, read_header
from pipeline.errors import DataError

_CHUNK_BYTES = 1 << 22


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            sha.update(chunk)
    return sha.hexdigest()


def shard_record(path: Path, root: Path, bos_id: int, vocab_size: int) -> dict[str, Any]:
    """One pass over a shard: its sha256, token count, documents (BOS count) and id range check."""
    count = read_header(path)
    sha = hashlib.sha256()
    documents = 0
    with open(path, "rb") as f:
        sha.update(f.read(HEADER_BYTES))
        while chunk := f.read(_CHUNK_BYTES):
            sha.update(chunk)
            tokens = np.frombuffer(chunk, dtype=TOKEN_DTYPE)
            documents += int(np.count_nonzero(tokens == bos_id))
            top = int(tokens.max()) if tokens.size else 0
            if top >= vocab_size:
                raise DataError(f"{path}: holds token id {top}, outside the tokenizer's vocab of {vocab_size}")
    return {
        "file": path.relative_to(root).as_posix(),
        "tokens": count,
        "documents": documents,
        "sha256": sha.hexdigest(),
    }


def shard_records(paths: list[Path], root: Path, bos_id: int, vocab_size: int, threads: int) -> list[dict[str, Any]]:
    """`shard_record` for many shards at once (hashing releases the GIL, so threads help)."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(lambda p: shard_record(p, root, bos_id, vocab_size), paths))


def split_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "documents": sum(r["documents"] for r in records),
        "tokens": sum(r["tokens"] for r in records),
        "shards": records,
    }
