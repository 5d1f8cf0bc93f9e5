"""Reading the validation byte sidecar (``fineweb_val_bytes_NNNNNN.bin``) beside the shards.

Kept apart from the writer (`pipeline.data.byte_sidecar`, prepare only) so the
exported train_gpt.py, which reads sidecars but never writes one, carries
only this.  Format: the shard header (magic, version, count) and one
little-endian uint16 per validation token, its original UTF-8 bytes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pipeline.data.shards import HEADER_BYTES, read_header, shard_paths
from pipeline.errors import DataError

SIDECAR_DTYPE = np.dtype("<u2")


def sidecar_name(index: int) -> str:
    return f"fineweb_val_bytes_{index:06d}.bin"


def sidecar_paths(directory: str | Path) -> list[Path]:
    """The sidecar files in `directory`, in name order (empty when there are none)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    pattern = re.compile(r"fineweb_val_bytes_\d{6}\.bin")
    return sorted(p for p in directory.iterdir() if pattern.fullmatch(p.name))


def load_sidecar(directory: str | Path, expected_tokens: int) -> np.ndarray | None:
    """The validation byte counts of a shards directory, or None when it has no sidecar.

    A sidecar whose files do not pair one for one with the validation shards, or
    whose total differs from the shards' token count, is an error naming the file.
    """
    paths = sidecar_paths(directory)
    if not paths:
        return None
    shards = shard_paths(directory, "val")
    if len(paths) != len(shards):
        raise DataError(f"{directory}: {len(paths)} byte sidecar file(s) for {len(shards)} validation shard(s)")
    parts = []
    for sidecar, shard in zip(paths, shards):
        count = read_header(sidecar)
        if count != read_header(shard):
            raise DataError(f"{sidecar}: holds {count} counts but {shard.name} holds {read_header(shard)} tokens")
        parts.append(np.fromfile(sidecar, dtype=SIDECAR_DTYPE, offset=HEADER_BYTES, count=count))
    counts = np.concatenate(parts)
    if counts.size != expected_tokens:
        raise DataError(f"{directory}: the byte sidecar holds {counts.size} counts for {expected_tokens} "
                        "validation tokens")
    return counts
