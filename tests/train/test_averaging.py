"""Tight SWA rule, snapshot keeping, EMA and uniform averaging."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from pipeline.optim.schedule import lr_multiplier
from pipeline.train.averaging import EMA, SnapshotKeeper, average_states, snapshot_due


def test_snapshot_steps_for_an_iteration_schedule(record_params):
    # 100 iterations, warmdown over the last 50: the step taken at index s uses
    # lr_mul = (100 - s) / 50, which is < 0.2 for s > 90; snapshots every 5 completed steps.
    train = dataclasses.replace(record_params.train, iterations=100, warmdown_iters=50, max_wallclock_seconds=0.0)
    swa = dataclasses.replace(record_params.swa, every=5, start_lrmul=0.2)
    steps = [s + 1 for s in range(100) if snapshot_due(s + 1, lr_multiplier(s, 0.0, train), swa)]
    assert steps == [95, 100]
    swa_plain = dataclasses.replace(swa, every=200 // 20, start_lrmul=0.5)  # SPEC's plain-SWA shape
    steps = [s + 1 for s in range(100) if snapshot_due(s + 1, lr_multiplier(s, 0.0, train), swa_plain)]
    assert steps == [80, 90, 100]  # lr_mul < 0.5 from index 76 on
    assert not snapshot_due(100, 0.0, dataclasses.replace(swa, enabled=False))


def test_keeper_keeps_the_most_recent_snapshots():
    model = nn.Linear(3, 2)
    keeper = SnapshotKeeper(max_snapshots=2)
    for step in (10, 20, 30):
        with torch.no_grad():
            model.weight.fill_(step)
        keeper.add(step, model)
    assert keeper.steps == [20, 30]
    assert keeper.snapshots[30]["weight"].eq(30).all()
    restored = SnapshotKeeper(0)
    restored.load_state_dict(keeper.state_dict())
    assert restored.steps == [20, 30] and restored.max_snapshots == 2


def test_uniform_average_and_ema():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor([7])}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor([7])}
    avg = average_states([a, b])
    assert torch.equal(avg["w"], torch.tensor([2.0, 4.0])) and torch.equal(avg["n"], torch.tensor([7]))
    with pytest.raises(ValueError):
        average_states([])

    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    ema.update(model)
    # 0 -> 0.1 -> 0.19
    assert ema.shadow["weight"].item() == pytest.approx(0.19)
