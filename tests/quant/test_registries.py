"""The three quantisation seams: storage schemes, rounding methods, compressors."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch

from pipeline.model import naming
from pipeline.quant.artifact import MAGIC, pack_artifact, read_artifact, write_artifact
from pipeline.quant.compressors import Compressor, get_compressor, register_compressor
from pipeline.quant.methods import register_method

from .conftest import g3_shapes, random_state_dict


def test_record_artifact_bytes_are_those_of_the_fixed_int6_int8_zstd_packer(g3_state_dict, fast_quant_cfg,
                                                                           monkeypatch):
    # sha256 and size of these artifacts as written by the packer before the registries (commit 2d4cc66),
    # with the quant params read from params.yaml.  The second has int6 attn and mlp matrices and int8
    # for both the embedding and a 3-D tensor: their scheme names come from different params fields.
    blob, stats = pack_artifact(g3_state_dict, fast_quant_cfg, {"seed": 1})
    assert (len(blob), hashlib.sha256(blob).hexdigest()) == (
        2_115_387, "78a9e042e00a54085e50e394aaa2db7c77b49c81c8dd9ef419890dcb3422f8ca")
    assert blob[:8] == MAGIC == b"PGOLFQZ\x00"
    assert (stats.method, stats.compressor) == ("rtn", "zstd")
    sd = random_state_dict(g3_shapes(num_layers=2, dim=512, heads=8, kv_heads=4))
    sd["blocks.0.mlp.conv"] = sd["blocks.0.mlp.fc.weight"].reshape(512, 3, 512)[:300].clone()
    # A made-up parameter: one entry in the parameter table (pipeline/model/naming.py) lets it through.
    monkeypatch.setattr(naming, "PARAM_RULES", naming.PARAM_RULES + (
        naming.ParamRule(r"blocks\.\d+\.mlp\.conv", "scalar", "mlp", "mlp"),))
    blob, stats = pack_artifact(sd, fast_quant_cfg, {"seed": 1})
    assert (stats.counts["int6"], stats.counts["int8"], stats.counts["kept"]) == (12, 2, 13)
    assert (len(blob), hashlib.sha256(blob).hexdigest()) == (
        3_787_828, "183ff211e9fba267106681345aae7bee9df6f2f9812107ed645856b2d55b94da")


@pytest.mark.parametrize(("scheme", "lo", "hi"), [("int5", -16, 15), ("int7", -64, 63)])
def test_other_bit_widths_are_one_registry_line(tmp_path, quant_cfg, scheme, lo, hi):
    cfg = dataclasses.replace(quant_cfg, zstd_level=3,
                              schemes=dataclasses.replace(quant_cfg.schemes, mlp=scheme, embed="fp16"))
    sd = random_state_dict(g3_shapes(num_layers=1), std=2.0)  # rows wide enough that the step is not floored
    stats = write_artifact(tmp_path / "a.ptz", sd, cfg, {})
    assert stats.counts[scheme] == 2 and stats.counts["int8"] == 0
    back, _ = read_artifact(tmp_path / "a.ptz")
    assert torch.equal(back["tok_emb.weight"], sd["tok_emb.weight"].half().float())  # embed kept as fp16
    for key in ("blocks.0.mlp.fc.weight", "blocks.0.mlp.proj.weight"):
        w = sd[key]
        step = (w.abs().amax(dim=1) / hi).clamp_min(1.0 / hi).half().float()[:, None]
        codes = torch.round(back[key] / step)
        assert int(codes.min()) >= lo and int(codes.max()) <= hi
        assert int(codes.min()) == lo or int(codes.max()) == hi  # the grid is used to its edge
        assert torch.all((back[key] - w).abs() <= step / 2 * (1 + 1e-5) + 1e-7), key


def test_a_method_may_only_need_what_the_stage_provides():
    class NeedsData:
        name = "gptq-test"
        needs = ("model", "calibration_tokens")

    with pytest.raises(ValueError, match="'gptq-test' needs 'calibration_tokens'; the quantize stage provides model"):
        register_method(NeedsData())


def test_compressor_codes_are_unique_bytes():
    zstd = get_compressor("zstd")
    with pytest.raises(ValueError, match="code 0 is 'zstd''s"):
        register_compressor(Compressor("other", 0, zstd.compress, zstd.decompress, zstd.errors))
    with pytest.raises(ValueError, match="code 256 is not a byte"):
        register_compressor(Compressor("other", 256, zstd.compress, zstd.decompress, zstd.errors))
    assert register_compressor(zstd) is zstd  # registering the same one again is harmless
