"""The byte codecs behind the compressors other than zstd (`pipeline.quant.compressors`).

lzma is the standard library's; brotli is the optional extra ``brotli``; lrzip is
an external binary run through a temporary directory.  Each missing one fails with
`CodecUnavailable`, naming what to install.
"""

from __future__ import annotations

import lzma
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PgolfError


class CodecUnavailable(PgolfError, RuntimeError):
    """A selected compressor needs a package or a program that is not installed."""


def brotli_module():
    try:
        import brotli
    except ImportError:
        raise CodecUnavailable("the brotli compressors need the 'brotli' package: "
                               "pip install -e '.[brotli]' (or pip install brotli)") from None
    return brotli


def lrzip_binary() -> str:
    path = shutil.which("lrzip")
    if path is None:
        raise CodecUnavailable("the lrzip compressors need the external 'lrzip' program on PATH "
                               "(apt-get install lrzip; the Docker image has it)")
    return path


def lzma_compress(payload: bytes, cfg: Any) -> bytes:
    return lzma.compress(payload, preset=cfg.codec.lzma_preset)


def lzma_decompress(blob: bytes) -> bytes:
    return lzma.decompress(blob)


LZMA_ERRORS: tuple[type[Exception], ...] = (lzma.LZMAError,)


def brotli_compress(payload: bytes, cfg: Any) -> bytes:
    return brotli_module().compress(payload, quality=cfg.codec.brotli_quality, lgwin=cfg.codec.brotli_window)


def brotli_decompress(blob: bytes) -> bytes:
    return brotli_module().decompress(blob)


class _BrotliError(Exception):
    """Stands in for brotli.error when brotli is not installed (nothing raises it then)."""


def _brotli_errors() -> tuple[type[Exception], ...]:
    try:
        import brotli
    except ImportError:
        return (_BrotliError,)
    return (brotli.error,)


BROTLI_ERRORS = _brotli_errors()


def _lrzip_run(args: list[str], data: bytes, suffix_in: str, suffix_out: str) -> bytes:
    binary = lrzip_binary()
    with tempfile.TemporaryDirectory(prefix="pgolf-lrzip-") as tmp:
        src, dst = Path(tmp) / f"in{suffix_in}", Path(tmp) / f"out{suffix_out}"
        src.write_bytes(data)
        result = subprocess.run([binary, *args, "-o", str(dst), str(src)], capture_output=True)
        if result.returncode != 0:
            raise LrzipError(f"lrzip {' '.join(args)} failed ({result.returncode}): "
                             f"{result.stderr.decode(errors='replace').strip()}")
        return dst.read_bytes()


class LrzipError(RuntimeError):
    pass


def lrzip_compress(payload: bytes, cfg: Any) -> bytes:
    return _lrzip_run(["-q", "-z", "-L", "9"], payload, ".bin", ".lrz")


def lrzip_decompress(blob: bytes) -> bytes:
    return _lrzip_run(["-q", "-d", "-f"], blob, ".lrz", ".bin")


LRZIP_ERRORS: tuple[type[Exception], ...] = (LrzipError,)


# ---------------------------------------------------------------------------- byte shuffle

class ShuffleError(ValueError):
    pass


SHUFFLE_ERRORS: tuple[type[Exception], ...] = (ShuffleError,)


def byte_shuffle(data: bytes, stride: int) -> bytes:
    """One byte `stride`, then every stride-th byte from offset 0, then from 1, ... (the 04-01 record's
    transpose: bytes at the same position of consecutive `stride`-byte words end up together)."""
    src = np.frombuffer(data, dtype=np.uint8)
    if stride <= 1 or src.size < stride:
        return bytes([1]) + data
    return bytes([stride]) + b"".join(src[pos::stride].tobytes() for pos in range(stride))


def byte_unshuffle(data: bytes) -> bytes:
    if not data:
        raise ShuffleError("byte-shuffled stream is empty (no stride byte)")
    stride, body = data[0], np.frombuffer(data, dtype=np.uint8, offset=1)
    if stride <= 1:
        return body.tobytes()
    out = np.empty(body.size, dtype=np.uint8)
    offset = 0
    for pos in range(stride):
        count = len(range(pos, body.size, stride))
        out[pos::stride] = body[offset : offset + count]
        offset += count
    return out.tobytes()


def shuffled(compress: Callable[[bytes, Any], bytes]) -> Callable[[bytes, Any], bytes]:
    return lambda payload, cfg: compress(byte_shuffle(payload, cfg.codec.shuffle_stride), cfg)


def unshuffled(decompress: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    return lambda blob: byte_unshuffle(decompress(blob))
