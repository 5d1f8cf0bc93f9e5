"""Per-group compression (the 04-27 record's, after PR #1586): like matrices compressed together, apart
from the rest.

The payload is the artifact's torch.save archive.  Its integer codes of 2-D
matrices (every entry with a ``scale`` whose ``data`` is int8 and 2-D) are taken
out and grouped by name with the block index removed (``attn.c_q.weight`` of every
block is one group; ``tok_emb.weight`` alone is another), in block order.  Each
matrix's rows may first be reordered into a greedy nearest-neighbour chain by L1
distance (``quant.codec.similarity_sort``; the record sorts the embedding, c_q and
mlp.fc), then stored column-major, so that similar values sit side by side; each
group's bytes are compressed by the inner codec on their own.  What remains (the
archive with those codes emptied) and the row orders (uint16) are compressed too.

Decompression rebuilds the archive and saves it again: the reader gets back the
very bytes that were compressed.  Compression checks that, and refuses (rather than
write an artifact that would not read back exactly) if a torch version ever saved
the rebuilt archive differently.

Container: b"PGRP", a uint32 stream count, uint32 lengths, then the streams:
a JSON manifest (groups, members, shapes, whether sorted), the remainder archive,
the row orders, one stream per group; all but the manifest compressed.
"""

from __future__ import annotations

import io
import json
import re
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

MAGIC = b"PGRP"


class PerGroupError(ValueError):
    pass


ERRORS: tuple[type[Exception], ...] = (PerGroupError,)
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def similarity_order(matrix: np.ndarray) -> np.ndarray:
    """Rows in a greedy chain: start at row 0, always step to the nearest unused row by L1 distance."""
    n = matrix.shape[0]
    rows = matrix.astype(np.float32)
    used = np.zeros(n, dtype=bool)
    order = np.empty(n, dtype=np.int64)
    order[0], used[0] = 0, True
    current = rows[0]
    for i in range(1, n):
        unused = np.flatnonzero(~used)
        best = unused[np.argmin(np.abs(rows[unused] - current).sum(axis=1))]
        order[i], used[best] = best, True
        current = rows[best]
    return order


def _group_key(name: str) -> tuple[str, int]:
    m = _BLOCK.match(name)
    return (m.group(2), int(m.group(1))) if m else (name, 0)


def _pack(streams: list[bytes]) -> bytes:
    return MAGIC + struct.pack(f"<I{len(streams)}I", len(streams), *map(len, streams)) + b"".join(streams)


def _unpack(blob: bytes) -> list[bytes]:
    if blob[:4] != MAGIC or len(blob) < 8:
        raise PerGroupError("not a per-group stream (no PGRP magic)")
    (n,) = struct.unpack_from("<I", blob, 4)
    if len(blob) < 8 + 4 * n:
        raise PerGroupError("per-group stream truncated in its length table")
    lengths = struct.unpack_from(f"<{n}I", blob, 8)
    offset, streams = 8 + 4 * n, []
    for length in lengths:
        streams.append(blob[offset : offset + length])
        offset += length
    if offset != len(blob) or any(len(s) != n for s, n in zip(streams, lengths)):
        raise PerGroupError("per-group stream lengths do not match its size")
    return streams


def _save(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def split(payload: bytes, sort: bool) -> list[bytes]:
    """The uncompressed streams: manifest, remainder archive, row orders, then each group's bytes."""
    obj = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    groups: dict[str, list[tuple[int, str]]] = {}
    for name, entry in obj["tensors"].items():
        data = entry.get("data")
        if ("scale" in entry and isinstance(data, torch.Tensor) and data.dtype == torch.int8 and data.ndim == 2
                and data.is_contiguous() and data.untyped_storage().nbytes() == data.numel()):
            key, block = _group_key(name)
            groups.setdefault(key, []).append((block, name))
    manifest, orders, group_bytes = [], [], []
    for key in sorted(groups):
        members, chunks = [], []
        for _, name in sorted(groups[key]):
            arr = obj["tensors"][name]["data"].numpy()
            sorted_rows = sort and 1 < arr.shape[0] <= 65535
            if sorted_rows:
                order = similarity_order(arr)
                orders.append(order.astype(np.uint16).tobytes())
                arr = arr[order]
            chunks.append(np.ascontiguousarray(arr.T).tobytes())
            members.append([name, list(arr.shape), sorted_rows])
            obj["tensors"][name]["data"] = torch.zeros(0, dtype=torch.int8)
        manifest.append({"group": key, "members": members})
        group_bytes.append(b"".join(chunks))
    return [json.dumps(manifest).encode(), _save(obj), b"".join(orders), *group_bytes]


def join(streams: list[bytes]) -> bytes:
    """Inverse of `split`: the archive's bytes."""
    if len(streams) < 3:
        raise PerGroupError(f"per-group stream has {len(streams)} streams, fewer than 3")
    try:
        manifest = json.loads(streams[0])
        obj = torch.load(io.BytesIO(streams[1]), map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged manifest or archive
        raise PerGroupError(f"per-group stream damaged: {exc}") from exc
    if len(manifest) != len(streams) - 3:
        raise PerGroupError(f"per-group manifest names {len(manifest)} groups, the stream holds {len(streams) - 3}")
    orders = np.frombuffer(streams[2], dtype=np.uint16)
    order_at = 0
    for group, raw in zip(manifest, streams[3:]):
        flat = np.frombuffer(raw, dtype=np.int8)
        at = 0
        for name, (rows, cols), sorted_rows in group["members"]:
            arr = flat[at : at + rows * cols].reshape(cols, rows).T
            at += rows * cols
            if sorted_rows:
                order = orders[order_at : order_at + rows].astype(np.int64)
                order_at += rows
                restored = np.empty_like(arr)
                restored[order] = arr
                arr = restored
            obj["tensors"][name]["data"] = torch.from_numpy(np.ascontiguousarray(arr))
        if at != flat.size:
            raise PerGroupError(f"per-group stream of {group['group']!r} has {flat.size - at} bytes too many")
    return _save(obj)


def compressor(inner: Callable[[bytes, Any], bytes]) -> Callable[[bytes, Any], bytes]:
    def compress(payload: bytes, cfg: Any) -> bytes:
        streams = split(payload, cfg.codec.similarity_sort)
        if join(streams) != payload:
            raise PerGroupError("per-group compression would not give back the same archive bytes "
                                "(this torch saves the rebuilt archive differently); use another compressor")
        return _pack([streams[0]] + [inner(s, cfg) if s else b"" for s in streams[1:]])
    return compress


def decompressor(inner: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    def decompress(blob: bytes) -> bytes:
        streams = _unpack(blob)
        return join([streams[0]] + [inner(s) if s else b"" for s in streams[1:]])
    return decompress
