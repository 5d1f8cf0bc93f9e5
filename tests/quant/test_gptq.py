"""GPTQ and LQER: pgolf's codes, scales and factors pinned to the records' (scripts/parity/gptq_parity.py
ran the 03-25, 04-06 and 04-27 records' own functions on these inputs and found them equal)."""

from __future__ import annotations

import dataclasses
import struct

import pytest
import torch

from pipeline.quant.artifact import FORMAT_VERSION, HEADER_BYTES, read_artifact, write_artifact
from pipeline.quant.gptq import gptq_quantize
from pipeline.quant.lqer import correction
from pipeline.quant.mixed import dequantize_state_dict, quantize_state_dict

from .gptq_inputs import BLOCK_SIZE, digest, state_and_hessians

# Printed by scripts/parity/gptq_parity.py (records' outputs == pgolf's).
SEARCH_0325 = ("b79bb65681474b6a1607ca4ce574408ce13a4af9904a8221f523d7ff9c23949d",
               "ff45d6b0c944b859659978de67565acb0a5b26a0a7135692aae4bba7c2c9bc7d")
HESSIAN_SD_0406 = ("2245b946033c30234114d861c263c302f78a7354df8109b23e1e7d4988af7143",
                   "0a85e7361841259a15cc800b943c4e559429d34ee3b98ad92f282e9c90fcf295")
MIXED_0427 = {  # name -> (codes, scales); LQER: (a, a_scale, b, b_scale)
    "tok_emb.weight": ("3d2cd5b6cc6fe11fa46de1d46766475d63a34bbcbfce2ad5f0a6e433fcc0dc84",
                       "703c01e110fa940783be45fe0108414c937f0e7fc106d0d5b6ef7337ab497ef8"),
    "blocks.0.attn.c_q.weight": ("8d8aa40aca6591d13daac5b3aa8fbb3189f56d76a01236ad7cd3b7d3c3e9733c",
                                 "fcfba91368d622cc044691646e4f70c7500a3656d26f9f477d0da0b0f9eaf5ae"),
    "blocks.0.mlp.fc.weight": ("ae601b7c689e7492b1d5d759b7e9493d6da1853af854636e4e8f19035e6f7ab1",
                               "609095209ec20068a569b4dfcea13715a266314d96fb6936328dee51eb03bff6"),
    "blocks.0.mlp.proj.weight": ("2d0f13faa4cd6794eb8ed1dc0e6c624b517972b22eb2f73e471bdb65f0041c8d",
                                 "692e6921b4cf6ae60aeae25a3938376e77e7b6a70eff47a47a5f0631cd732983"),
}
LQER_0427 = {
    "blocks.0.attn.c_q.weight": ("asym", "3697fbd550a4597a7ef33e72401575f70145ad40c2c23019689d70d17ca18039",
                                 "dd00796d42b5d30029940546b1e888241fe1f3e5248306a836686deaa5719e90",
                                 "293f3c670af165525e3509b16f9ce1651aa69d1d59a012706a889448223b3546",
                                 "3037d284bdec8a0b497256e034f54878e487c3b4b4277bec386614225cd81f16"),
    "blocks.0.mlp.proj.weight": ("sym", "547230085b48cf63b6b7ad7caa290b0f89c3d104c3b27bb3da9df374bb58e97b",
                                 "1e4ba15be8014bdc44f818fec3600e1f1080b3a308ec4354e43a103cfab2c8cc",
                                 "0d51a8a9606ebdb9c9727f168445802e006710a16012971ea897a979806f22c1",
                                 "d813d22acc567b30f1b129e8708bfbafc93025c9610f17e585593ff94f3d39f4"),
}


@pytest.fixture(scope="module")
def inputs():
    return state_and_hessians()


def mixed_cfg(q, **lqer):
    """What the 04-27 record's gptq_mixed_quantize call in the parity script says."""
    g = q.gptq
    return dataclasses.replace(
        q, method="gptq", keep_float_max_numel=65536,
        schemes=dataclasses.replace(q.schemes, embed="int8", mlp="int6", attn="int6", other="int6"),
        gptq=dataclasses.replace(g, block_size=128, clip="sd", hessian_clip_lambda=0.0,
                                 clip_sigmas=dataclasses.replace(g.clip_sigmas, embed=20.0, mlp=10.0, attn=13.0,
                                                                 other=12.85)),
        lqer=dataclasses.replace(q.lqer, **{"top_k": 2, "rank": 4, "asym": True, "asym_group": 64,
                                            "factor_bits": 4, **lqer}))


def test_gptq_percentile_search_equals_the_0325_record(inputs):
    state, hessians = inputs
    name = "blocks.0.mlp.fc.weight"
    q, s = gptq_quantize(state[name], hessians[name], 31, block_size=BLOCK_SIZE, clip="search")
    assert (digest(q), digest(s)) == SEARCH_0325


def test_gptq_hessian_aware_sd_clip_equals_the_0406_record(inputs):
    state, hessians = inputs
    name = "blocks.0.mlp.fc.weight"
    q, s = gptq_quantize(state[name], hessians[name], 31, block_size=BLOCK_SIZE, clip="sd", clip_sigmas=12.85,
                         hessian_lambda=0.5)
    assert (digest(q), digest(s)) == HESSIAN_SD_0406
    assert int(q.abs().max()) <= 31


def test_gptq_sd_clip_and_lqer_equal_the_0427_record(inputs, quant_cfg):
    state, hessians = inputs
    out = quantize_state_dict(state, mixed_cfg(quant_cfg), {"hessians": hessians})
    for name, pinned in MIXED_0427.items():
        assert (digest(out[name]["data"]), digest(out[name]["scale"])) == pinned, name
    corrected = {name: e for name, e in out.items() if "lqer" in e}
    assert set(corrected) == set(LQER_0427)
    for name, (packing, *pinned) in LQER_0427.items():
        e = corrected[name]
        assert e["lqer"] == packing
        assert [digest(e[f]) for f in ("lqer_a", "lqer_a_scale", "lqer_b", "lqer_b_scale")] == pinned, name
    assert out["blocks.0.attn_scale"]["scheme"] == "fp16"


def test_gptq_beats_round_to_nearest_on_the_hessian_weighted_error(inputs, quant_cfg):
    state, hessians = inputs
    name = "blocks.0.mlp.fc.weight"
    w, H = state[name], hessians[name]
    q, s = gptq_quantize(w, H, 31, block_size=BLOCK_SIZE, clip="sd", clip_sigmas=10.0)
    rtn = torch.clamp(torch.round(w / s.float()[:, None]), -31, 31)  # the same step, rounded independently

    def loss(codes):
        d = w - codes.float() * s.float()[:, None]
        return float(torch.einsum("ij,jk,ik->", d, H, d))

    assert loss(q) < 0.95 * loss(rtn)  # 0.478 vs 0.539 here


def test_without_a_hessian_gptq_is_round_to_nearest_on_its_step(quant_cfg):
    w = torch.randn(64, 96, generator=torch.Generator().manual_seed(3))
    q, s = gptq_quantize(w, torch.eye(96), 31, clip="sd", clip_sigmas=3.0)
    assert torch.equal(q.float(), torch.clamp(torch.round(w / s.float()[:, None]), -31, 31))


def test_lqer_artifact_round_trips_as_format_version_2(tmp_path, inputs, quant_cfg):
    state, hessians = inputs
    cfg = dataclasses.replace(mixed_cfg(quant_cfg), zstd_level=3)
    stats = write_artifact(tmp_path / "a.ptz", state, cfg, {"seed": 1}, {"hessians": hessians})
    blob = (tmp_path / "a.ptz").read_bytes()
    assert stats.format_version == FORMAT_VERSION == 2 == struct.unpack_from("<I", blob, 8)[0]
    back, meta = read_artifact(tmp_path / "a.ptz")
    expected = dequantize_state_dict(quantize_state_dict(state, cfg, {"hessians": hessians}))
    assert meta == {"seed": 1} and all(torch.equal(back[k], expected[k]) for k in state)
    # The correction is what the reader added, and it shrinks the error of the tensors it corrects.
    out = quantize_state_dict(state, cfg, {"hessians": hessians})
    for name in LQER_0427:
        plain = dataclasses.replace(cfg, lqer=dataclasses.replace(cfg.lqer, top_k=0))
        base = dequantize_state_dict({name: quantize_state_dict({name: state[name]}, plain,
                                                                 {"hessians": hessians})[name]})[name]
        assert torch.equal(back[name], base + correction(out[name]))
        assert (state[name] - back[name]).norm() < (state[name] - base).norm()
    assert len(blob) > HEADER_BYTES


def test_int8row_gate_scheme_equals_the_0427_record(inputs):
    from pipeline.quant.rtn import RoundToNearest
    from pipeline.quant.schemes import get_scheme

    state, _ = inputs
    gate = state["blocks.0.attn.c_q.weight"][:8] * torch.linspace(0.0, 3.0, 8)[:, None]  # row 0 all zero
    entry = RoundToNearest().encode("blocks.0.attn_gate_w", gate, get_scheme("int8row"), None, {})
    assert (digest(entry["data"]), digest(entry["scale"])) == (
        "8c72c8ad45caaa856011f948cd3236d9400c30014580b56f3f3f2f7c5db4c433",
        "9484037e7971b5b34f6d7aeb952d5b614585c27ebe5731d94cef47d83d0ff081")
    assert int(entry["data"].abs().max()) == 127 and not entry["data"][0].any()


def test_hessian_aware_sd_clip_of_an_all_zero_matrix_is_finite():
    # The record divides 0 by 0 here (a zero-initialised table, e.g. an untrained bigram embedding).
    q, s = gptq_quantize(torch.zeros(16, 32), torch.eye(32), 127, clip="sd", clip_sigmas=20.0, hessian_lambda=0.5)
    assert not q.any() and torch.isfinite(s.float()).all()
