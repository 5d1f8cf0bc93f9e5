"""Compressors of the artifact payload, by name (`quant.compressor`).

Each compressor has a one-byte ``code`` that the artifact header records
(`pipeline.quant.artifact`: the byte after ``PGOLFQZ``), so the reader picks
the matching decompressor whatever the params say.  zstd's code is 0, the
byte every artifact written before this registry carries.  A compressor must
be deterministic: the same payload gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zstandard

from pipeline.quant.registry import lookup, register


@dataclass(frozen=True)
class Compressor:
    name: str
    code: int  # 0..255, unique: recorded in the artifact header
    compress: Callable[[bytes, Any], bytes]  # (payload, QuantConfig) -> compressed bytes
    decompress: Callable[[bytes], bytes]  # raises one of `errors` on damaged input
    errors: tuple[type[Exception], ...]


COMPRESSORS: dict[str, Compressor] = {}


def register_compressor(compressor: Compressor) -> Compressor:
    """Make `compressor` selectable as `quant.compressor` and readable from artifacts."""
    if not 0 <= compressor.code <= 255:
        raise ValueError(f"compressor {compressor.name!r}: code {compressor.code} is not a byte")
    for other in COMPRESSORS.values():
        if other.name != compressor.name and other.code == compressor.code:
            raise ValueError(f"compressor {compressor.name!r}: code {compressor.code} is {other.name!r}'s")
    return register(COMPRESSORS, "compressor", compressor)


def get_compressor(name: str) -> Compressor:
    return lookup(COMPRESSORS, "compressor", name)


def compressor_by_code(code: int) -> Compressor | None:
    return next((c for c in COMPRESSORS.values() if c.code == code), None)


def _zstd_compress(payload: bytes, cfg: Any) -> bytes:
    # Single-threaded: the same payload gives the same bytes.
    return zstandard.ZstdCompressor(level=cfg.zstd_level, threads=0).compress(payload)


def _zstd_decompress(blob: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(blob)


register_compressor(Compressor("zstd", 0, _zstd_compress, _zstd_decompress, (zstandard.ZstdError,)))
