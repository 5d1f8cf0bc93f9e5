"""Mixed int6/int8 quantisation: scheme choice, error bounds, exact round trip of kept tensors."""

from __future__ import annotations

import dataclasses

import torch

import pytest

from pipeline.model import naming
from pipeline.model.naming import ParamRule, is_control_tensor
from pipeline.quant.mixed import (
    choose_scheme,
    dequantize_state_dict,
    quantize_state_dict,
    scheme_counts,
    tensor_category,
)
from pipeline.quant.rowwise import INT6_MAX, INT6_MIN, INT8_MAX

from .conftest import g3_shapes, random_state_dict


def test_categories():
    assert tensor_category("tok_emb.weight") == "embed"
    assert tensor_category("blocks.3.mlp.fc.weight") == "mlp"
    assert tensor_category("blocks.0.attn.c_k.weight") == "attn"
    assert tensor_category("bigram.proj.weight") == "other"
    assert tensor_category("blocks.1.attn.q_gain") == "control"
    assert is_control_tensor("blocks.1.attn.q_gain")
    assert is_control_tensor("smear.gate") and is_control_tensor("skip_weights")
    assert not is_control_tensor("blocks.1.attn.c_q.weight")


def test_g3_counts_per_scheme(g3_state_dict, quant_cfg):
    q = quantize_state_dict(g3_state_dict, quant_cfg)
    counts = scheme_counts(q)
    assert (counts["int6"], counts["int8"], counts["kept"]) == (6, 1, 29)
    assert {n for n, e in q.items() if e["scheme"] == "int6"} == {
        f"blocks.{i}.mlp.{w}.weight" for i in range(3) for w in ("fc", "proj")
    }
    assert [n for n, e in q.items() if e["scheme"] == "int8"] == ["tok_emb.weight"]
    # 256x256 attention matrices have exactly keep_float_max_numel elements: kept.
    assert q["blocks.0.attn.c_q.weight"]["scheme"] == "fp16"


def test_int6_attn_when_large_enough(quant_cfg):
    sd = random_state_dict(g3_shapes(num_layers=1, dim=512, heads=8, kv_heads=4))
    q = quantize_state_dict(sd, quant_cfg)
    assert all(q[f"blocks.0.attn.{w}.weight"]["scheme"] == "int6" for w in ("c_q", "c_k", "c_v", "proj"))
    only_mlp = dataclasses.replace(quant_cfg, schemes=dataclasses.replace(quant_cfg.schemes, attn="int8"))
    assert quantize_state_dict(sd, only_mlp)["blocks.0.attn.c_q.weight"]["scheme"] == "int8"


def test_int6_error_bound(g3_state_dict, quant_cfg):
    q = quantize_state_dict(g3_state_dict, quant_cfg)
    deq = dequantize_state_dict(q)
    for name, entry in q.items():
        if entry["scheme"] != "int6":
            continue
        codes, scale = entry["data"], entry["scale"].float()[:, None]
        assert codes.dtype == torch.int8
        assert int(codes.min()) >= INT6_MIN and int(codes.max()) <= INT6_MAX
        w = g3_state_dict[name]
        unclipped = (torch.round(w / scale) >= INT6_MIN) & (torch.round(w / scale) <= INT6_MAX)
        assert unclipped.float().mean() > 0.99
        err = (deq[name] - w).abs()
        assert torch.all(err[unclipped] <= (scale / 2).expand_as(w)[unclipped] * (1 + 1e-5))


def test_int8_error_bound_with_clip(g3_state_dict, quant_cfg):
    w = g3_state_dict["tok_emb.weight"]
    entry = quantize_state_dict({"tok_emb.weight": w}, quant_cfg)["tok_emb.weight"]
    codes, scale = entry["data"], entry["scale"].float()[:, None]
    assert int(codes.abs().max()) <= INT8_MAX
    clip = torch.quantile(w.abs(), quant_cfg.int8_clip_percentile / 100.0, dim=1)[:, None]
    deq = dequantize_state_dict({"tok_emb.weight": entry})["tok_emb.weight"]
    inside = w.abs() <= clip
    err = (deq - w).abs()
    # Rounding uses the exact fp32 scale, the file stores it in fp16 (as the
    # reference does): the bound is half a step plus the code times that gap.
    scale32 = (clip / INT8_MAX).clamp_min(1.0 / INT8_MAX)
    bound = scale32 / 2 + codes.abs().float() * (scale - scale32).abs() + 1e-7
    assert torch.all(err[inside] <= bound.expand_as(w)[inside])
    assert torch.all(err[inside] <= (scale / 2).expand_as(w)[inside] * 1.13)
    # Clipped values land on the clip (up to one step), never beyond it.
    assert torch.all(deq.abs() <= (clip + scale).expand_as(w))


def test_kept_tensors_and_dtypes(quant_cfg):
    torch.manual_seed(0)
    sd = {
        "blocks.0.attn_scale": torch.randn(64),
        "blocks.0.resid_mix": torch.randn(2, 40_000, dtype=torch.float64),
        "blocks.0.mlp.fc.weight": torch.randn(16, 8),
        "bigram.scale": torch.randn(5).to(torch.bfloat16),
        "step": torch.tensor(7),  # non-float tensors (buffers, never parameters) are stored raw
        "mask": torch.tensor([True, False]),
        "bigram.proj.weight": torch.randn(300, 300).to(torch.bfloat16),
    }
    q = quantize_state_dict(sd, quant_cfg)
    # Small control tensors are kept fp16 like any small tensor (the reference's order, SPEC §7 golden);
    # a control tensor too large to keep stays exact in fp32.
    assert [q[n]["scheme"] for n in sd] == ["fp16", "fp32", "fp16", "fp16", "raw", "raw", "int8"]
    deq = dequantize_state_dict(q)
    assert list(deq) == list(sd)
    for name, t in sd.items():
        assert deq[name].dtype == t.dtype and deq[name].shape == t.shape, name
    assert torch.equal(deq["blocks.0.attn_scale"], sd["blocks.0.attn_scale"].half().float())
    assert torch.equal(deq["blocks.0.resid_mix"], sd["blocks.0.resid_mix"].float().double())
    assert torch.equal(deq["blocks.0.mlp.fc.weight"], sd["blocks.0.mlp.fc.weight"].half().float())
    assert torch.equal(deq["bigram.scale"], sd["bigram.scale"])
    assert torch.equal(deq["step"], sd["step"]) and torch.equal(deq["mask"], sd["mask"])


def test_large_non_matrix_uses_int8_rows(quant_cfg, monkeypatch):
    # No parameter of today's model is a large non-control tensor that is not 2-D: two made-up
    # ones, each taught to the pipeline by one table entry.
    monkeypatch.setattr(naming, "PARAM_RULES", naming.PARAM_RULES + (
        ParamRule(r"blocks\.\d+\.mlp\.(big_vector|conv)", "scalar", "mlp", "mlp"),))
    g = torch.Generator().manual_seed(0)
    sd = {"blocks.0.mlp.big_vector": torch.randn(70_000, generator=g),
          "blocks.0.mlp.conv": torch.randn(300, 1, 300, generator=g)}
    q = quantize_state_dict(sd, quant_cfg)
    assert choose_scheme("blocks.0.mlp.big_vector", sd["blocks.0.mlp.big_vector"], quant_cfg) == "int8"
    assert q["blocks.0.mlp.conv"]["scheme"] == "int8" and q["blocks.0.mlp.conv"]["scale"].shape == (300,)
    deq = dequantize_state_dict(q)
    for name, t in sd.items():
        assert deq[name].shape == t.shape
        assert (deq[name] - t).abs().max() < 0.05


def test_a_float_tensor_of_unknown_name_is_refused(quant_cfg):
    with pytest.raises(naming.UnknownParameterError, match=r"'blocks\.0\.mlp\.mystery'"):
        quantize_state_dict({"blocks.0.mlp.mystery": torch.zeros(4)}, quant_cfg)
