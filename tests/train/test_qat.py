"""train.qat_targets: which layers late QAT fake-quantises, and onto which grid."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from pipeline.model import GPT
from pipeline.model.layers import CastedLinear
from pipeline.quant.mixed import quantize_state_dict
from pipeline.quant.rowwise import fake_quant_rows
from pipeline.train.qat import configure_qat, qat_grids

from ..conftest import tiny_model_config


@pytest.fixture()
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_model_config())  # dim 64, mlp hidden 128, bigram.proj 64x16


@pytest.fixture()
def quant(record_params):
    """Small matrices quantised (as the smoke profile does), attention at int6, the MLP at int5."""
    return dataclasses.replace(record_params.quant, keep_float_max_numel=1024,
                               schemes=dataclasses.replace(record_params.quant.schemes, mlp="int5", attn="int6"))


def test_all_linear_is_the_reference_int6_on_every_linear_and_the_models_default(model, quant):
    defaults = {f"{n}.weight": m.qat_grid for n, m in model.named_modules() if isinstance(m, CastedLinear)}
    grids = configure_qat(model, "all_linear", quant)
    assert grids == defaults == dict.fromkeys(defaults, (-32, 31))
    assert "bigram.proj.weight" in grids  # stored fp16 by the artifact, fake-quantised anyway


def test_as_stored_follows_what_the_quantize_stage_stores(model, quant):
    grids = configure_qat(model, "as_stored", quant)
    stored = quantize_state_dict(model.state_dict(), quant)
    assert grids["bigram.proj.weight"] is None and stored["bigram.proj.weight"]["scheme"] == "fp16"
    for name, grid in grids.items():
        scheme = stored[name]["scheme"]
        expected = {"int6": (-32, 31), "int5": (-16, 15)}.get(scheme)
        assert grid == expected, (name, scheme)
    assert grids["blocks.0.attn.c_q.weight"] == (-32, 31) and grids["blocks.0.mlp.fc.weight"] == (-16, 15)
    assert {m.qat_grid for n, m in model.named_modules() if isinstance(m, CastedLinear)} == {None, (-32, 31),
                                                                                              (-16, 15)}


def test_as_stored_with_the_record_quant_leaves_tiny_matrices_alone(model, record_params):
    # keep_float_max_numel 65,536: every matrix of the tiny model is stored fp16, so none is fake-quantised.
    assert set(qat_grids(model, "as_stored", record_params.quant).values()) == {None}


def test_the_grid_decides_the_training_forward(model, quant):
    configure_qat(model, "as_stored", quant)
    model.train()
    model.set_qat(True)
    x = torch.randn(3, 64)
    fc, bigram_proj = model.blocks[0].mlp.fc, model.bigram.proj
    assert torch.equal(fc(x), F.linear(x, fake_quant_rows(fc.weight, -16, 15)))
    assert not torch.equal(fc(x), F.linear(x, fc.weight))
    xb = torch.randn(3, 16)
    assert torch.equal(bigram_proj(xb), F.linear(xb, bigram_proj.weight))


def test_an_unknown_target_is_refused(model, quant):
    with pytest.raises(ValueError, match="train.qat_targets: 'some'"):
        qat_grids(model, "some", quant)  # type: ignore[arg-type]


def test_the_trainer_fixes_the_grids_from_params_before_compiling(record_params, embedded_data, tmp_path, quant):
    from pipeline.runtime import detect_runtime
    from pipeline.train.loop import Trainer
    from tests.train.helpers import tiny_params

    p = tiny_params(record_params, embedded_data.layout.root, tmp_path, train=dict(qat_targets="as_stored"))
    p = dataclasses.replace(p, quant=quant)
    trainer = Trainer(p, 1, embedded_data.layout.root, tmp_path / "r", detect_runtime(), progress=False)
    got = {f"{n}.weight": m.qat_grid for n, m in trainer.model.named_modules() if isinstance(m, CastedLinear)}
    assert got == qat_grids(GPT(p.model), "as_stored", quant)
    assert got["bigram.proj.weight"] is None
