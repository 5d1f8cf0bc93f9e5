"""Compressors of the artifact payload, by name (`quant.compressor`).

Each compressor has a one-byte ``code`` that the artifact header records
(`pipeline.quant.artifact`: the byte after ``PGOLFQZ``), so the reader picks
the matching decompressor whatever the params say.  zstd's code is 0, the
byte every artifact written before this registry carries.  A compressor must
be deterministic: the same payload gives the same bytes.

Registered here (settings from ``quant.codec``; the decoders need none of them):

=====================  ====  ==================================================================
name                   code  what
=====================  ====  ==================================================================
zstd                   0     zstd at ``quant.zstd_level`` (the record: 22)
lzma                   1     xz container, ``lzma_preset`` (the 03-25 record: 9)
brotli                 2     ``brotli_quality``, window ``brotli_window`` (04-01; extra ``brotli``)
zstd-shuffle           3     byte-shuffle (`pipeline.quant.shuffle`, ``shuffle_stride``), then zstd
lzma-shuffle           4     byte-shuffle, then lzma
brotli-shuffle         5     byte-shuffle, then brotli (the 04-01 record's default)
pergroup-brotli        6     per-group (`pipeline.quant.pergroup`, 04-27) with brotli streams
pergroup-lzma          7     per-group with lzma streams
lrzip                  8     the external ``lrzip -z -L 9`` binary, when installed
pergroup-lrzip         9     per-group with lrzip streams (the 04-27 record)
=====================  ====  ==================================================================

brotli is an optional extra (``pip install -e '.[brotli]'``) and lrzip an external
binary (the Docker image installs it); selecting either without it fails with an
error saying what to install, when params load and when an artifact is read.
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
    # Raises `pipeline.quant.codecs.CodecUnavailable` when a package or program it needs is missing.
    check_available: Callable[[], Any] | None = None


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


def _register_others() -> None:
    from pipeline.quant import codecs, pergroup

    for name, code, compress, decompress, errors in [
        ("lzma", 1, codecs.lzma_compress, codecs.lzma_decompress, codecs.LZMA_ERRORS),
        ("brotli", 2, codecs.brotli_compress, codecs.brotli_decompress, codecs.BROTLI_ERRORS),
        ("lrzip", 8, codecs.lrzip_compress, codecs.lrzip_decompress, codecs.LRZIP_ERRORS),
    ]:
        needs = {"brotli": codecs.brotli_module, "lrzip": codecs.lrzip_binary}.get(name)
        register_compressor(Compressor(name, code, compress, decompress, errors, needs))
    for inner, code in (("zstd", 3), ("lzma", 4), ("brotli", 5)):
        base = get_compressor(inner)
        register_compressor(Compressor(f"{inner}-shuffle", code, codecs.shuffled(base.compress),
                                       codecs.unshuffled(base.decompress), base.errors + codecs.SHUFFLE_ERRORS,
                                       base.check_available))
    for inner, code in (("brotli", 6), ("lzma", 7), ("lrzip", 9)):
        base = get_compressor(inner)
        register_compressor(Compressor(f"pergroup-{inner}", code, pergroup.compressor(base.compress),
                                       pergroup.decompressor(base.decompress), base.errors + pergroup.ERRORS,
                                       base.check_available))


_register_others()
