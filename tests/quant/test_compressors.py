"""The compressors beyond zstd: exact round trips, the records' sizes (scripts/parity/compressor_parity.py),
clear errors when a codec is missing."""

from __future__ import annotations

import dataclasses
import json
import lzma
import sys

import brotli
import numpy as np
import pytest
import torch

from pipeline.quant import codecs, pergroup
from pipeline.quant.artifact import pack_artifact, read_artifact
from pipeline.quant.compressors import COMPRESSORS, get_compressor
from pipeline.quant.mixed import dequantize_state_dict, quantize_state_dict

from .compressor_inputs import payload_and_entries
from .conftest import g3_shapes, random_state_dict

# Printed by scripts/parity/compressor_parity.py: (record's bytes, pgolf's bytes) on the same 1,955,142-byte payload.
PARITY = {
    "lzma": (1_492_740, 1_492_740),  # 03-25: lzma preset 9, the same bytes
    "brotli-shuffle": (1_437_589, 1_437_703),  # 04-01: shuffle stride 2 + brotli 11
    "lzma-shuffle": (1_459_064, 1_459_056),  # 04-01: shuffle stride 2 + lzma preset 6
    "brotli": (1_467_473, 1_467_473),  # 04-27: brotli 11, the same bytes
    "pergroup-brotli": (1_467_959, 1_469_147),  # 04-27 per-group, brotli in lrzip's place
}
PARITY_CODEC = {
    "lzma": {"lzma_preset": 9}, "brotli-shuffle": {"brotli_quality": 11, "brotli_window": 22, "shuffle_stride": 2},
    "lzma-shuffle": {"lzma_preset": 6, "shuffle_stride": 2}, "brotli": {"brotli_quality": 11, "brotli_window": 22},
    "pergroup-brotli": {"brotli_quality": 11, "brotli_window": 24, "similarity_sort": True},
}
LOCAL = [name for name in COMPRESSORS if "lrzip" not in name]  # lrzip: an external program, absent here


def fast(q, **codec):
    return dataclasses.replace(q, zstd_level=3, codec=dataclasses.replace(
        q.codec, lzma_preset=1, brotli_quality=4, **codec))


@pytest.fixture(scope="module")
def small_sd():
    return random_state_dict(g3_shapes(num_layers=2, dim=64, vocab=256, bigram=(64, 16)))


@pytest.mark.parametrize("name", LOCAL)
def test_every_compressor_round_trips_the_artifact_exactly(tmp_path, small_sd, quant_cfg, name):
    cfg = dataclasses.replace(fast(quant_cfg), compressor=name, keep_float_max_numel=256)
    blob, stats = pack_artifact(small_sd, cfg, {"seed": 2})
    assert blob[7] == get_compressor(name).code and stats.compressor == name
    (tmp_path / "a.ptz").write_bytes(blob)
    back, meta = read_artifact(tmp_path / "a.ptz")
    expected = dequantize_state_dict(quantize_state_dict(small_sd, cfg))
    assert meta == {"seed": 2} and all(torch.equal(back[k], expected[k]) for k in expected)
    assert pack_artifact(small_sd, cfg, {"seed": 2})[0] == blob  # deterministic


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PARITY))
def test_sizes_within_half_a_percent_of_the_records(quant_cfg, name):
    raw, _ = payload_and_entries(quant_cfg)
    assert len(raw) == 1_955_142
    cfg = dataclasses.replace(quant_cfg, codec=dataclasses.replace(quant_cfg.codec, **PARITY_CODEC[name]))
    c = get_compressor(name)
    out = c.compress(raw, cfg)
    assert c.decompress(out) == raw
    record, ours = PARITY[name]
    assert len(out) == ours and abs(ours - record) / record <= 0.005
    if name == "lzma":
        assert out == lzma.compress(raw, preset=9)
    if name == "brotli":
        assert out == brotli.compress(raw, quality=11)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 1000, 1001])
@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_byte_shuffle_is_undone(n, stride):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    shuffled = codecs.byte_shuffle(data, stride)
    assert len(shuffled) == n + 1 and codecs.byte_unshuffle(shuffled) == data
    if stride == 2 and n == 1000:  # low bytes first, then high bytes, as the 04-01 record's transpose
        assert shuffled[1:] == data[0::2] + data[1::2]


def test_per_group_streams_hold_column_major_sorted_codes_and_undo_it(quant_cfg, small_sd):
    raw, entries = payload_and_entries(quant_cfg)
    streams = pergroup.split(raw, sort=True)
    manifest = json.loads(streams[0])
    groups = {g["group"]: g["members"] for g in manifest}
    assert [m[0] for m in groups["mlp.fc.weight"]] == ["blocks.0.mlp.fc.weight", "blocks.1.mlp.fc.weight"]
    assert len(streams) == 3 + len(groups)
    codes = entries["tok_emb.weight"]["data"].numpy()
    order = pergroup.similarity_order(codes)
    assert sorted(order.tolist()) == list(range(codes.shape[0])) and order[0] == 0
    k = sorted(groups).index("tok_emb.weight")
    assert streams[3 + k] == np.ascontiguousarray(codes[order].T).tobytes()
    assert pergroup.join(streams) == raw
    assert pergroup.join(pergroup.split(raw, sort=False)) == raw


def test_a_damaged_per_group_artifact_is_refused(tmp_path, small_sd, quant_cfg):
    cfg = dataclasses.replace(fast(quant_cfg), compressor="pergroup-lzma", keep_float_max_numel=256)
    blob = bytearray(pack_artifact(small_sd, cfg, {})[0])
    blob[52:56] = b"XXXX"  # the PGRP magic, right after the header
    import hashlib
    import struct
    struct.pack_into("32s", blob, 20, hashlib.sha256(bytes(blob[52:])).digest())
    (tmp_path / "a.ptz").write_bytes(bytes(blob))
    from pipeline.errors import ArtifactError
    with pytest.raises(ArtifactError, match="corrupt: pergroup-lzma payload does not decompress: not a per-group"):
        read_artifact(tmp_path / "a.ptz")


def test_missing_brotli_or_lrzip_is_a_clear_error(monkeypatch, record_params, tmp_path, small_sd, quant_cfg):
    from pipeline.config import ConfigError

    def validate_quant_names(q):
        q.validate("quant")
    from pipeline.errors import ArtifactError

    blob = pack_artifact(small_sd, dataclasses.replace(fast(quant_cfg), compressor="brotli"), {})[0]
    (tmp_path / "a.ptz").write_bytes(blob)
    monkeypatch.setitem(sys.modules, "brotli", None)  # import brotli now fails
    with pytest.raises(ConfigError, match=r"quant.compressor: the brotli compressors need the 'brotli' package: "
                                          r"pip install -e '.\[brotli\]'"):
        validate_quant_names(dataclasses.replace(quant_cfg, compressor="pergroup-brotli"))
    with pytest.raises(ArtifactError, match="a.ptz: compressed with brotli: the brotli compressors need"):
        read_artifact(tmp_path / "a.ptz")
    monkeypatch.setattr(codecs.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="quant.compressor: the lrzip compressors need the external 'lrzip' "
                                          "program on PATH"):
        validate_quant_names(dataclasses.replace(quant_cfg, compressor="lrzip"))
    with pytest.raises(codecs.CodecUnavailable, match="lrzip"):
        get_compressor("lrzip").compress(b"payload", quant_cfg)
    with pytest.raises(ConfigError, match="lrzip"):
        validate_quant_names(dataclasses.replace(quant_cfg, compressor="pergroup-lrzip"))
