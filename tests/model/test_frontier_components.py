"""The frontier switches one by one: shapes, init behaviour, block order, FLOPs, the
optimiser variant's edges and the schedule (docs/frontier.md).  Parity with the
1.0611 record is tests/model/test_frontier_parity.py."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from pipeline.bench import block_passes, matmul_params
from pipeline.config import RecurrenceConfig
from pipeline.model import GPT, split_param_groups
from pipeline.model.embeddings import TokenSmearGate
from pipeline.model.gpt import MLP, layer_order
from pipeline.optim.muon import POLAR_EXPRESS_COEFFS, Muon, polar_express, row_normalize
from pipeline.optim.schedule import lr_multiplier, training_frac
from tests.conftest import tiny_model_config
from tests.model.helpers import fill_like_spec


def frontier_tiny(num_layers: int = 6, **nested) -> GPT:
    cfg = tiny_model_config(num_layers=num_layers, mlp_leaky_slope=0.5, skip_gates=True, smear_window=8,
                            smear_bos_mask=True, bigram_buckets=0, canon={"placements": ""})
    groups = dict(attn_gate=dict(enabled=True, window=8, scale=0.5), lanes=dict(start_layer=4),
                  recurrence=dict(num_loops=2, loop_start=1, loop_end=2))
    groups.update(nested)
    for name, fields in groups.items():
        cfg = dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **fields)})
    torch.manual_seed(0)
    return GPT(cfg)


def test_layer_order_is_the_records_logged_order():
    # train_seed42.log: "layer_loop:enabled ... encoder:[0, 1, 2, 3, 4, 5, 3, 4] decoder:[5, 3, 4, 5, 6, 7, 8, 9, 10]"
    rec = RecurrenceConfig(num_loops=2, loop_start=3, loop_end=5, enable_at=0.35)
    assert layer_order(11, rec, True) == ([0, 1, 2, 3, 4, 5, 3, 4], [5, 3, 4, 5, 6, 7, 8, 9, 10])
    assert layer_order(11, rec, False) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10])


def test_recurrence_flag_starts_looped_and_switches():
    model = frontier_tiny()
    assert model.looping_active  # built from params: the trained (looped) model
    assert model.skip_weights.shape[0] == 5 == model.skip_gates.shape[0]  # min(len(enc), len(dec)) looped
    model.set_looping(False)
    assert model.layer_order() == ([0, 1, 2], [3, 4, 5])
    off = frontier_tiny(recurrence=dict(num_loops=0))
    off.set_looping(True)
    assert not off.looping_active and off.skip_weights.shape[0] == 3


def test_every_parameter_gets_a_gradient_in_both_orders():
    # DDP without find_unused_parameters needs every parameter in the graph, looped or not.
    for looping in (False, True):
        model = frontier_tiny()
        fill_like_spec(model)
        model.set_looping(looping)
        ids = torch.randint(0, 1024, (2, 16))
        model(ids, ids).backward()
        assert all(p.grad is not None for p in model.parameters())


def test_new_parameters_have_an_optimiser_group():
    groups = split_param_groups(frontier_tiny())
    scalar = {n for n, _ in groups.scalar}
    assert {"skip_gates", "parallel_post_lambdas", "parallel_resid_lambdas", "smear.gate", "smear.lam",
            "blocks.0.attn.attn_gate_w"} <= scalar
    assert "blocks.0.attn.attn_gate_w" not in {n for n, _ in groups.matrix}


def test_lane_lambdas_have_the_records_shapes_and_init():
    model = frontier_tiny()
    assert model.parallel_post_lambdas.shape == (6, 2, 2) and bool((model.parallel_post_lambdas == 1).all())
    assert model.parallel_resid_lambdas.shape == (6, 2)
    assert torch.allclose(model.parallel_resid_lambdas, torch.full((6, 2), 1.1))


def test_zero_init_gates_start_as_the_record_says():
    # Token smear starts as the identity; the attention gate at sigmoid(0) = 1/2 of each head.
    smear = TokenSmearGate(4, bos_mask=True)
    x = torch.randn(2, 5, 8)
    assert torch.equal(smear(x, torch.ones(2, 5, dtype=torch.long)), x)
    model = frontier_tiny()
    assert bool((model.blocks[0].attn.attn_gate_w == 0).all())
    assert bool((model.skip_gates == 0).all())


def test_token_smear_mask_blocks_the_previous_document():
    smear = TokenSmearGate(2, bos_mask=True)
    with torch.no_grad():
        smear.lam.fill_(1.0)
    x = torch.randn(1, 4, 3)
    ids = torch.tensor([[5, 1, 7, 8]])  # BOS at position 1
    out = smear(x, ids)
    assert torch.equal(out[0, 1], x[0, 1])  # nothing from position 0
    g = torch.sigmoid(torch.zeros(()))
    torch.testing.assert_close(out[0, 2], x[0, 2] + g * x[0, 1])


def test_leaky_relu_square_mlp():
    mlp = MLP(8, 16, leaky_slope=0.5)
    x = torch.randn(3, 8)
    want = F.linear(F.leaky_relu(F.linear(x, mlp.fc.weight), 0.5).square(), mlp.proj.weight)
    torch.testing.assert_close(mlp(x), want)


def test_bench_counts_each_looped_pass():
    model = frontier_tiny()
    looped = matmul_params(model)
    model.set_looping(False)
    plain = matmul_params(model)
    per_block = sum(p.numel() for n, p in model.blocks[1].named_parameters() if p.ndim == 2 and "resid_mix" not in n)
    # Blocks 1 and 2 run three times instead of once.
    assert looped - plain == 2 * 2 * per_block
    model.set_looping(True)
    assert block_passes(model, model.cfg) == 10


def test_polar_express_uses_each_tuple_once():
    G = torch.randn(16, 32)
    X = G / (G.norm() + 1e-7)
    for a, b, c in POLAR_EXPRESS_COEFFS[:2]:
        A = X @ X.mT
        X = a * X + (b * A + c * (A @ A)) @ X
    torch.testing.assert_close(polar_express(G, 2, dtype=torch.float32), X)
    # Past five steps the list ends: 7 steps is 5 steps.
    assert torch.equal(polar_express(G, 7), polar_express(G, 5))


def test_row_normalize_gives_unit_rows():
    u = torch.randn(6, 10) * torch.arange(1, 7)[:, None]
    torch.testing.assert_close(row_normalize(u).norm(dim=-1), torch.ones(6))


def test_bf16_momentum_survives_a_state_dict_round_trip():
    p = torch.nn.Parameter(torch.randn(8, 16))
    p.grad = torch.randn(8, 16)
    opt = Muon([p], lr=0.02, momentum=0.95, momentum_dtype=torch.bfloat16)
    opt.step()
    state = opt.state_dict()
    again = Muon([p], lr=0.02, momentum=0.95, momentum_dtype=torch.bfloat16)
    again.load_state_dict(state)  # casts the buffer to fp32 (the parameter's dtype)
    again.step()
    assert again.state[p]["momentum_buffer"].dtype == torch.bfloat16


def _train(**kw):
    from pipeline.config import load_params

    t = load_params("params.yaml").train
    return dataclasses.replace(t, **kw)


def test_warmdown_fraction_with_floor():
    # The record's lr_mul(frac): 1 until 1 - warmdown_frac, then max((1 - frac) / warmdown_frac, min_lr).
    cfg = _train(max_wallclock_seconds=0.0, iterations=1000, warmdown_frac=0.85, min_lr=0.1)
    assert lr_multiplier(100, 0.0, cfg) == 1.0
    assert lr_multiplier(150, 0.0, cfg) == pytest.approx(1.0)
    assert lr_multiplier(575, 0.0, cfg) == pytest.approx(0.5)
    assert lr_multiplier(990, 0.0, cfg) == 0.1
    timed = dataclasses.replace(cfg, max_wallclock_seconds=100.0)
    assert training_frac(3, 35_000.0, timed) == pytest.approx(0.35)
    assert lr_multiplier(3, 50_000.0, timed) == pytest.approx(0.5 / 0.85)
    assert lr_multiplier(3, 92_000.0, timed) == 0.1  # (1 - 0.92) / 0.85 < 0.1


def test_min_lr_floors_the_iteration_schedule():
    cfg = _train(max_wallclock_seconds=0.0, iterations=1000, warmdown_iters=500, min_lr=0.25)
    assert lr_multiplier(900, 0.0, cfg) == 0.25
    assert lr_multiplier(600, 0.0, cfg) == pytest.approx(0.8)
