"""The packed model artifact: one versioned file format, written by quantize, read by evaluate.

Layout (all integers little-endian)::

    offset  size  field
    0       7     magic            b"PGOLFQZ"
    7       1     compressor       its code in `pipeline.quant.compressors` (zstd: 0)
    8       4     format version   uint32 (FORMAT_VERSION)
    12      8     payload length   uint64, bytes of the compressed payload
    20      32    payload sha256   of the compressed payload bytes
    52      ...   payload          compressed by `quant.compressor` (zstd: one frame, level quant.zstd_level)

A zstd artifact therefore starts with ``MAGIC`` = b"PGOLFQZ\\x00", as every
artifact did before compressors were registered: those files read unchanged.

The decompressed payload is a `torch.save` archive of plain data only, so it
loads with ``torch.load(weights_only=True)`` and no code is ever unpickled::

    {"format_version": int,   # the header's
     "tensors": {name: {"scheme": a registered storage scheme (int6, int8, fp16, ...),
                        "dtype": "float32", "shape": [...],
                        <the scheme's fields>: Tensor ("data"; "scale" for integer schemes),
                        # version 2 only, on the LQER-corrected tensors (`pipeline.quant.lqer`):
                        "lqer": "asym" | "sym", "lqer_a", "lqer_a_scale", "lqer_b", "lqer_b_scale": Tensor}},
     "meta": {...}}   # caller's metadata: str/int/float/bool/None/list/dict

Version 1 artifacts (no LQER) are written exactly as before version 2 existed; this pgolf reads both.

`pipeline.quant.schemes` defines the schemes.  Reading checks, in order: the
magic, that the header is complete, the version, the compressor, the payload
length, the sha256, then the decompression and the archive's structure; any failure raises
`ArtifactError` naming the file and the check.  To enforce the size cap
before anything is written, pack with `pack_artifact`, check the size
(`pipeline.quant.size`), then write the bytes.  The header costs 52 bytes and counts in the size.
Compressors are deterministic, so the same weights give the same bytes.
"""

from __future__ import annotations

import hashlib
import io
import struct
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pipeline import atomic
from pipeline.config import QuantConfig
from pipeline.errors import ArtifactError
from pipeline.quant.categories import category_stats
from pipeline.quant.codecs import CodecUnavailable
from pipeline.quant.compressors import compressor_by_code, get_compressor
from pipeline.quant.lqer import FIELDS as LQER_FIELDS
from pipeline.quant.mixed import dequantize_state_dict, quantize_state_dict, scheme_counts
from pipeline.quant.schemes import SCHEMES

MAGIC_PREFIX = b"PGOLFQZ"
MAGIC = MAGIC_PREFIX + bytes([get_compressor("zstd").code])  # a zstd artifact's first 8 bytes
# Format versions: 1 = every entry holds only its storage scheme's fields; 2 = entries may also hold an
# LQER correction (`pipeline.quant.lqer`: "lqer" and its four tensors).  An artifact is written with the
# lowest version that expresses it, so an artifact without corrections is byte for byte what version 1 wrote.
BASE_VERSION = 1
FORMAT_VERSION = 2  # the newest this pgolf writes and reads
_HEADER = struct.Struct("<8sIQ32s")
HEADER_BYTES = _HEADER.size  # 52


@dataclass(frozen=True)
class ArtifactStats:
    """What packing produced: sizes, digest, per-scheme tensor counts, timings."""

    file_bytes: int  # header + compressed payload: the model bytes that count
    payload_bytes: int  # torch.save archive before compression
    sha256: str  # of the compressed payload
    format_version: int
    counts: dict[str, int]
    quantize_seconds: float
    compress_seconds: float
    method: str  # quant.method that rounded the integer schemes
    compressor: str  # quant.compressor, also recorded in the header
    # Per tensor category: schemes and bits, tensors, weights, bytes before compression, relative
    # reconstruction error, LQER-corrected tensors (`pipeline.quant.categories`).
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    calibration_batches: int = 0  # GPTQ's calibration batches (0: the method needs none)
    calibration_seconds: float = 0.0  # collecting the Hessians: counts in the challenge's training budget

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def artifact_version(tensors: Mapping[str, Mapping[str, Any]]) -> int:
    """The lowest format version that holds these entries."""
    return FORMAT_VERSION if any("lqer" in entry for entry in tensors.values()) else BASE_VERSION


def _check_plain(value: Any, where: str) -> None:
    """Metadata must be plain data: anything else would need unpickling code."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"artifact meta {where}: keys must be strings, got {key!r}")
            _check_plain(item, f"{where}.{key}")
        return
    raise ValueError(f"artifact meta {where}: {type(value).__name__} is not plain data (str/int/float/list/dict)")


def _interned(value: Any) -> Any:
    """`value` with every string (keys too) interned, so equal strings are one object.

    Pickle writes a string once and refers back to it when the *same object* comes
    again, so equal metadata could pickle to different bytes depending on where its
    strings came from: params.yaml's loader makes a new object per occurrence, while
    the exported script's literal PARAMS shares (and interns) its constants.  Interning
    both makes the artifact's bytes a function of the metadata's value alone."""
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, list):
        return [_interned(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_interned(item) for item in value)
    if isinstance(value, dict):
        return {sys.intern(key): _interned(item) for key, item in value.items()}
    return value


def pack_artifact(
    state_dict: Mapping[str, Tensor], cfg: QuantConfig, meta: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
) -> tuple[bytes, ArtifactStats]:
    """Quantise, serialise and compress: the artifact's bytes, not yet written anywhere.

    `inputs`: what `quant.method` declares it needs (`pipeline.quant.methods`)."""
    _check_plain(dict(meta), "meta")
    meta = _interned(dict(meta))
    compressor = get_compressor(cfg.compressor)
    t0 = time.perf_counter()
    tensors = quantize_state_dict(state_dict, cfg, inputs)
    categories = category_stats(state_dict, tensors, dequantize_state_dict(tensors))
    buf = io.BytesIO()
    version = artifact_version(tensors)
    torch.save({"format_version": version, "tensors": tensors, "meta": meta}, buf)
    raw = buf.getvalue()
    t1 = time.perf_counter()
    payload = compressor.compress(raw, cfg)
    t2 = time.perf_counter()
    digest = hashlib.sha256(payload).digest()
    blob = _HEADER.pack(MAGIC_PREFIX + bytes([compressor.code]), version, len(payload), digest) + payload
    stats = ArtifactStats(
        file_bytes=len(blob),
        payload_bytes=len(raw),
        sha256=digest.hex(),
        format_version=version,
        counts=scheme_counts(tensors),
        quantize_seconds=t1 - t0,
        compress_seconds=t2 - t1,
        method=cfg.method,
        compressor=compressor.name,
        categories=categories,
        calibration_batches=int((inputs or {}).get("calibration", {}).get("batches", 0)),
        calibration_seconds=float((inputs or {}).get("calibration", {}).get("seconds", 0.0)),
    )
    return blob, stats


def write_artifact(
    path: str | Path, state_dict: Mapping[str, Tensor], cfg: QuantConfig, meta: Mapping[str, Any],
    inputs: Mapping[str, Any] | None = None,
) -> ArtifactStats:
    """Pack `state_dict` and write it to `path` atomically."""
    blob, stats = pack_artifact(state_dict, cfg, meta, inputs)
    atomic.write_bytes(path, blob)
    return stats


def _unpack_payload(blob: bytes, name: str) -> tuple[int, bytes]:
    """Check the header and digest; return (format version, the decompressed torch.save archive)."""
    head = blob[: len(MAGIC_PREFIX)]
    if head != MAGIC_PREFIX[: len(head)] or not head:
        raise ArtifactError(f"{name}: not a pgolf artifact (magic {head!r}, expected {MAGIC_PREFIX!r})")
    if len(blob) < HEADER_BYTES:
        raise ArtifactError(f"{name}: truncated: {len(blob)} bytes, shorter than the {HEADER_BYTES}-byte header")
    magic, version, length, digest = _HEADER.unpack_from(blob)
    if not BASE_VERSION <= version <= FORMAT_VERSION:
        raise ArtifactError(
            f"{name}: artifact format version {version}; this pgolf reads versions {BASE_VERSION} to {FORMAT_VERSION}"
        )
    compressor = compressor_by_code(magic[len(MAGIC_PREFIX)])
    if compressor is None:
        raise ArtifactError(f"{name}: compressed with compressor code {magic[len(MAGIC_PREFIX)]}, "
                            f"which no registered compressor has")
    payload = blob[HEADER_BYTES:]
    if len(payload) < length:
        raise ArtifactError(f"{name}: truncated: payload has {len(payload)} of {length} bytes")
    if len(payload) > length:
        raise ArtifactError(f"{name}: {len(payload) - length} unexpected bytes after the payload")
    if hashlib.sha256(payload).digest() != digest:
        raise ArtifactError(f"{name}: corrupt: payload sha256 does not match the header")
    if compressor.check_available is not None:
        try:
            compressor.check_available()
        except CodecUnavailable as exc:
            raise ArtifactError(f"{name}: compressed with {compressor.name}: {exc}") from exc
    try:
        return version, compressor.decompress(payload)
    except compressor.errors as exc:
        raise ArtifactError(f"{name}: corrupt: {compressor.name} payload does not decompress: {exc}") from exc


def _check_entry(name: str, key: str, entry: Any, version: int) -> None:
    if not isinstance(entry, dict) or entry.get("scheme") not in SCHEMES:
        raise ArtifactError(f"{name}: tensor {key!r} has no valid quantisation scheme")
    fields = SCHEMES[entry["scheme"]].fields
    if "lqer" in entry:
        if version < 2:
            raise ArtifactError(f"{name}: tensor {key!r} has an LQER correction, which format version {version} lacks")
        if entry["lqer"] not in ("asym", "sym"):
            raise ArtifactError(f"{name}: tensor {key!r} has an unknown LQER packing {entry['lqer']!r}")
        fields = fields + LQER_FIELDS
    for field in fields:
        if not isinstance(entry.get(field), Tensor):
            raise ArtifactError(f"{name}: tensor {key!r} ({entry['scheme']}) lacks its {field!r} tensor")


def read_artifact(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state dict in the original dtypes, meta) from an artifact written by `write_artifact`."""
    path = Path(path)
    name = str(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{name}: cannot read artifact: {exc.strerror or exc}") from exc
    version, raw = _unpack_payload(blob, name)
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError, RuntimeError from a damaged archive
        from pipeline.stage_files import describe_load_error

        raise ArtifactError(f"{name}: payload is not a plain-data torch archive: {describe_load_error(exc)}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("tensors"), dict) or not isinstance(obj.get("meta"), dict):
        raise ArtifactError(f"{name}: payload lacks the 'tensors' and 'meta' mappings")
    if obj.get("format_version") != version:
        raise ArtifactError(f"{name}: payload format version {obj.get('format_version')!r} disagrees with the header")
    for key, entry in obj["tensors"].items():
        _check_entry(name, key, entry, version)
    try:
        state_dict = dequantize_state_dict(obj["tensors"])
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{name}: cannot dequantise: {exc}") from exc
    return state_dict, obj["meta"]
