"""The model compiles with fullgraph=True, and late QAT switches inside the compiled graph."""

from __future__ import annotations

import copy

import pytest
import torch
from torch._dynamo.utils import counters

from pipeline.model.layers import CastedLinear
from pipeline.quant.rowwise import fake_quant_int6
from tests.model.helpers import fill_like_spec, random_tiny_model


@pytest.mark.slow
@pytest.mark.compile
def test_compiled_forward_backward_and_qat_switch():
    torch._dynamo.reset()
    # Two blocks (one encoder, one decoder with a skip), every Canon placement on the last.
    model = random_tiny_model(num_layers=2, xsa_last_n=1, canon={"placements": "ABCD", "last_n": 1}).train()
    eager = copy.deepcopy(model)
    ids, targets = torch.randint(0, 1024, (2, 16)), torch.randint(0, 1024, (2, 16))
    compiled = torch.compile(model, fullgraph=True, dynamic=False)

    plain = compiled(ids, targets)
    plain.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    torch.testing.assert_close(plain.detach(), eager(ids, targets).detach(), atol=1e-5, rtol=1e-5)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1

    model.set_qat(True)
    quantised = compiled(ids, targets).detach()
    hand = copy.deepcopy(eager)
    with torch.no_grad():
        for module in hand.modules():
            if isinstance(module, CastedLinear):
                module.weight.copy_(fake_quant_int6(module.weight))
    want = hand(ids, targets).detach()
    assert (quantised - plain.detach()).abs() > 1e-4  # the switch really changed the graph's arithmetic
    torch.testing.assert_close(quantised, want, atol=1e-5, rtol=1e-5)

    model.set_qat(False)
    torch.testing.assert_close(compiled(ids, targets).detach(), plain.detach(), atol=0, rtol=0)
    assert counters["stats"]["unique_graphs"] == graphs  # flipping the switch did not recompile


@pytest.mark.slow
@pytest.mark.compile
def test_depth_recurrence_switches_with_one_extra_graph():
    # model.recurrence flips once in training: the compiled model gets exactly one more
    # graph (the looped order), and flipping back and forth again compiles nothing.
    from tests.model.test_frontier_components import frontier_tiny

    torch._dynamo.reset()
    # 4 layers: block 1 looped (encoder [0, 1, 1], decoder [1, 2, 3]), lanes on block 3.
    model = frontier_tiny(4, lanes=dict(start_layer=3), recurrence=dict(num_loops=2, loop_start=1, loop_end=1)).train()
    fill_like_spec(model)
    eager = copy.deepcopy(model)
    ids = torch.randint(0, 1024, (2, 16))
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    model.set_looping(False)
    eager.set_looping(False)
    plain = compiled(ids, ids)
    graphs = counters["stats"]["unique_graphs"]
    torch.testing.assert_close(plain.detach(), eager(ids, ids).detach(), atol=1e-5, rtol=1e-5)
    model.set_looping(True)
    eager.set_looping(True)
    looped = compiled(ids, ids)
    torch.testing.assert_close(looped.detach(), eager(ids, ids).detach(), atol=1e-5, rtol=1e-5)
    assert counters["stats"]["unique_graphs"] == graphs + 1
    for flag in (False, True, False, True):
        model.set_looping(flag)
        compiled(ids, ids)
    assert counters["stats"]["unique_graphs"] == graphs + 1
