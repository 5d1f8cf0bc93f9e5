"""The artifact format: exact round trip, determinism, and every kind of damage rejected."""

from __future__ import annotations

import hashlib
import io
import struct

import pytest
import torch
import zstandard

from pipeline.errors import ArtifactError
from pipeline.quant import artifact
from pipeline.quant.artifact import BASE_VERSION, FORMAT_VERSION, HEADER_BYTES, MAGIC, pack_artifact, read_artifact, write_artifact
from pipeline.quant.mixed import dequantize_state_dict, quantize_state_dict

META = {"params_digest": "ab" * 32, "seed": 1337, "model": {"num_layers": 3, "dims": [256, 768]}, "note": None}


@pytest.fixture()
def written(tmp_path, g3_state_dict, fast_quant_cfg):
    path = tmp_path / "model.int6.ptz"
    stats = write_artifact(path, g3_state_dict, fast_quant_cfg, META)
    return path, stats


def _header(blob: bytes):
    return struct.unpack_from("<8sIQ32s", blob)


def test_round_trip_equals_dequantised(written, g3_state_dict, fast_quant_cfg):
    path, stats = written
    state_dict, meta = read_artifact(path)
    assert meta == META
    expected = dequantize_state_dict(quantize_state_dict(g3_state_dict, fast_quant_cfg))
    assert list(state_dict) == list(expected)
    for name in expected:
        assert state_dict[name].dtype == expected[name].dtype
        assert torch.equal(state_dict[name], expected[name]), name
    assert stats.file_bytes == path.stat().st_size
    assert (stats.counts["int6"], stats.counts["int8"], stats.counts["kept"]) == (6, 1, 29)
    assert stats.format_version == BASE_VERSION  # no LQER corrections: written as version 1 always was


def test_header_and_zstd_round_trip_byte_identical(written, g3_state_dict, fast_quant_cfg):
    path, stats = written
    blob = path.read_bytes()
    magic, version, length, digest = _header(blob)
    assert (magic, version, length) == (MAGIC, BASE_VERSION, len(blob) - HEADER_BYTES)
    payload = blob[HEADER_BYTES:]
    assert hashlib.sha256(payload).hexdigest() == digest.hex() == stats.sha256
    raw = zstandard.ZstdDecompressor().decompress(payload)
    assert len(raw) == stats.payload_bytes
    assert zstandard.ZstdCompressor(level=fast_quant_cfg.zstd_level).compress(raw) == payload
    # Same weights, same bytes: packing is deterministic.
    again, _ = pack_artifact(g3_state_dict, fast_quant_cfg, META)
    assert again == blob


def test_payload_is_plain_data_for_weights_only_load(written):
    path, _ = written
    raw = zstandard.ZstdDecompressor().decompress(path.read_bytes()[HEADER_BYTES:])
    obj = torch.load(io.BytesIO(raw), weights_only=True)
    assert obj["format_version"] == BASE_VERSION
    assert obj["tensors"]["blocks.0.mlp.fc.weight"]["scheme"] == "int6"


def test_record_zstd_level_small_dict(tmp_path, quant_cfg):
    sd = {"blocks.0.mlp.fc.weight": torch.randn(512, 256), "blocks.0.attn_scale": torch.ones(256)}
    stats = write_artifact(tmp_path / "a.ptz", sd, quant_cfg, {})
    back, _ = read_artifact(tmp_path / "a.ptz")
    assert torch.equal(back["blocks.0.attn_scale"], sd["blocks.0.attn_scale"])
    assert stats.file_bytes < 512 * 256  # int6 codes compress below one byte per weight


def test_equal_metadata_packs_to_equal_bytes_wherever_its_strings_come_from(quant_cfg):
    """params.yaml's loader makes one string object per occurrence; the exported script's
    literal PARAMS shares its constants.  Pickle writes a shared string once, so without
    interning the two gave artifacts a few bytes apart (found with the frontier profile's
    two `auto` values)."""
    sd = {"blocks.0.mlp.fc.weight": torch.randn(64, 32), "blocks.0.attn_scale": torch.ones(32)}

    def fresh(text):  # a new str object each call, as a YAML loader makes
        return "".join(list(text))

    loaded = {"model": {fresh("attention_backend"): fresh("auto"), fresh("fused_kernels"): fresh("auto")},
              "note": fresh("a value with spaces"), "pair": (fresh("x y"), fresh("x y"))}
    literal = {"model": {"attention_backend": "auto", "fused_kernels": "auto"},
               "note": "a value with spaces", "pair": ("x y", "x y")}
    assert loaded["model"]["fused_kernels"] is not loaded["model"]["attention_backend"]
    blob_loaded, _ = pack_artifact(sd, quant_cfg, loaded)
    blob_literal, _ = pack_artifact(sd, quant_cfg, literal)
    assert blob_loaded == blob_literal


def _expect_error(path, *fragments):
    with pytest.raises(ArtifactError) as info:
        read_artifact(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_corrupt_byte_rejected(written):
    path, _ = written
    blob = bytearray(path.read_bytes())
    blob[HEADER_BYTES + len(blob) // 3] ^= 0x40
    path.write_bytes(bytes(blob))
    _expect_error(path, "corrupt", "sha256")


def test_truncated_rejected(written):
    path, _ = written
    blob = path.read_bytes()
    path.write_bytes(blob[:-100])
    _expect_error(path, "truncated")
    path.write_bytes(blob[:20])
    _expect_error(path, "truncated", "header")


def test_trailing_bytes_rejected(written):
    path, _ = written
    path.write_bytes(path.read_bytes() + b"\0")
    _expect_error(path, "unexpected bytes")


def test_wrong_magic_rejected(written, tmp_path):
    path, _ = written
    blob = path.read_bytes()
    path.write_bytes(b"NOTPGOLF" + blob[8:])
    _expect_error(path, "not a pgolf artifact")
    raw_zstd = tmp_path / "plain.ptz"  # e.g. a reference-style artifact: bare zstd frame
    raw_zstd.write_bytes(zstandard.ZstdCompressor().compress(b"x" * 100))
    _expect_error(raw_zstd, "not a pgolf artifact")


def test_future_version_rejected(written):
    path, _ = written
    blob = bytearray(path.read_bytes())
    struct.pack_into("<I", blob, 8, FORMAT_VERSION + 1)
    path.write_bytes(bytes(blob))
    _expect_error(path, f"version {FORMAT_VERSION + 1}", f"reads versions {BASE_VERSION} to {FORMAT_VERSION}")


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "absent.ptz", "cannot read")


class Smuggled:
    """A custom class: a weights_only load must refuse to rebuild it."""

    def __init__(self) -> None:
        self.x = 1


def _forge(path, obj) -> None:
    """A well-formed envelope around an arbitrary torch.save payload."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = zstandard.ZstdCompressor().compress(buf.getvalue())
    header = struct.pack("<8sIQ32s", MAGIC, FORMAT_VERSION, len(payload), hashlib.sha256(payload).digest())
    path.write_bytes(header + payload)


def test_custom_objects_never_unpickled(tmp_path):
    path = tmp_path / "evil.ptz"
    _forge(path, {"format_version": FORMAT_VERSION, "tensors": {}, "meta": {"x": Smuggled()}})
    _expect_error(path, "plain-data")


def test_malformed_payload_rejected(tmp_path):
    path = tmp_path / "bad.ptz"
    _forge(path, {"format_version": FORMAT_VERSION, "tensors": {"w": {"scheme": "int6", "data": torch.zeros(2, 2)}},
                  "meta": {}})
    _expect_error(path, "'w'", "scale")
    _forge(path, [1, 2, 3])
    _expect_error(path, "lacks")


def test_meta_must_be_plain(fast_quant_cfg):
    with pytest.raises(ValueError, match="meta.model.cfg"):
        artifact.pack_artifact({"w": torch.zeros(2)}, fast_quant_cfg, {"model": {"cfg": object()}})
