"""The one table of parameter rules: every name covered once, every consumer asks it, unknown names raise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.activation_memory import state_bytes
from pipeline.bench import matmul_params
from pipeline.model import GPT, naming
from pipeline.model.init import init_weights
from pipeline.model.naming import PARAM_RULES, ParamRule, UnknownParameterError, parameter_counts, rule_for
from pipeline.optim import split_params
from pipeline.quant.mixed import choose_scheme, quantize_state_dict, tensor_category

from ..conftest import tiny_model_config
from ..optim.test_groups import spec_shapes


def _model_with(name: str, shape: tuple[int, ...]) -> GPT:
    """The tiny model with one extra parameter registered under `name` (a dotted path into it)."""
    torch.manual_seed(0)
    model = GPT(tiny_model_config())
    *path, leaf = name.split(".")
    owner = model
    for part in path:
        if not hasattr(owner, part):
            owner.add_module(part, nn.Module())
        owner = getattr(owner, part)
    owner.register_parameter(leaf, nn.Parameter(torch.randn(shape)))
    return model


def _consumers(model: GPT, params) -> dict:
    """Everything that decides something from a parameter's name, each run over the whole model."""
    sd = model.state_dict()
    return {
        "optimiser groups": lambda: split_params(model.named_parameters()),
        "model groups": lambda: naming.split_param_groups(model),
        "parameter counts": lambda: parameter_counts(model),
        "init": lambda: init_weights(model, 4, 0.005),
        "flop count": lambda: matmul_params(model),
        "memory estimate": lambda: state_bytes(model),
        "quantisation": lambda: quantize_state_dict(sd, params.quant),
    }


def _refusal(run) -> str:
    """The UnknownParameterError's message, or a line saying nothing was refused."""
    try:
        run()
    except UnknownParameterError as err:
        return str(err)
    return "not refused"


def test_every_record_and_canon_name_matches_exactly_one_rule(record_params):
    names = set(spec_shapes())
    with torch.device("meta"):
        names |= {n for n, _ in GPT(record_params.model).named_parameters()}
        full_canon = tiny_model_config(canon=dict(placements="ABCD", bias=True, delta_gate=True, last_n=4))
        names |= {n for n, _ in GPT(full_canon).named_parameters()}
    assert "blocks.3.attn.canon_b.conv.bias" in names and "blocks.3.mlp.canon_d.delta_gate_logit" in names
    for name in names:
        assert sum(rule.matches(name) for rule in PARAM_RULES) == 1, name


def test_record_model_rules():
    assert rule_for("blocks.10.mlp.proj.weight") == ParamRule(
        r"blocks\.\d+\.mlp\.proj\.weight", "matrix", "mlp", "mlp", init="zeros", flops=True)
    assert (naming.param_group("bigram.proj.weight"), naming.quant_category("bigram.proj.weight"),
            naming.init_rule("bigram.proj.weight"), naming.counts_flops("bigram.proj.weight")) == (
        "matrix", "other", "orthogonal_scaled", True)
    assert naming.size_category("blocks.2.attn.canon_b.conv.weight") == "canon"
    assert naming.size_category("blocks.2.attn.q_gain") == "control/other"
    assert all(rule.init in naming.INIT_RULES and rule.size in naming.SIZE_CATEGORIES
               and rule.group in naming.GROUP_NAMES and rule.quant in naming.QUANT_CATEGORIES
               for rule in PARAM_RULES)


@pytest.mark.parametrize("name,shape", [
    ("blocks.0.mlp.gate", (64, 64)),  # 2-D inside a block: once silently Muon + int6
    ("lm_head.weight", (128, 64)),  # untied head: not in the recipe
    ("final_norm_weight", (64,)),  # a top-level vector nobody declared
])
def test_an_unknown_name_raises_in_every_consumer(record_params, name, shape):
    model = _model_with(name, shape)
    refusals = {consumer: _refusal(run) for consumer, run in _consumers(model, record_params).items()}
    expected = f"parameter {name!r} matches no rule; add a ParamRule for it to PARAM_RULES in pipeline/model/naming.py"
    assert refusals == dict.fromkeys(refusals, expected)
    for lookup in (naming.param_group, naming.quant_category, naming.is_control_tensor, naming.size_category,
                   naming.init_rule, naming.counts_flops, tensor_category):
        with pytest.raises(UnknownParameterError, match=name.replace(".", "[.]")):
            lookup(name)
    with pytest.raises(UnknownParameterError):
        choose_scheme(name, torch.zeros(shape), record_params.quant)


def test_a_new_parameter_is_one_table_entry(record_params, monkeypatch):
    """A made-up gated MLP matrix, taught to the pipeline by one ParamRule: every consumer takes it."""
    model = _model_with("blocks.0.mlp.gate", (320, 256))
    monkeypatch.setattr(naming, "PARAM_RULES", PARAM_RULES + (
        ParamRule(r"blocks\.\d+\.mlp\.gate", "matrix", "mlp", "mlp", init="zeros", flops=True),))
    before = matmul_params(model)
    consumers = _consumers(model, record_params)
    split = consumers["optimiser groups"]()
    assert "blocks.0.mlp.gate" in [n for n, _ in split["matrix"]]
    consumers["init"]()
    assert torch.count_nonzero(model.blocks[0].mlp.gate) == 0
    assert parameter_counts(model)["mlp"] == parameter_counts(GPT(tiny_model_config()))["mlp"] + 320 * 256
    assert before == matmul_params(GPT(tiny_model_config())) + 320 * 256
    q = consumers["quantisation"]()
    assert q["blocks.0.mlp.gate"]["scheme"] == record_params.quant.schemes.mlp
