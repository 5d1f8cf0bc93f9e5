"""The model compiles with fullgraph=True, and late QAT switches inside the compiled graph."""

from __future__ import annotations

import copy

import pytest
import torch
from torch._dynamo.utils import counters

from pipeline.model.layers import CastedLinear
from pipeline.quant.rowwise import fake_quant_int6
from tests.model.helpers import random_tiny_model


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
