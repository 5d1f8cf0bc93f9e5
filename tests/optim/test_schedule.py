"""LR multiplier (iteration and wall-clock warm-down) and Muon momentum warm-up."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.config import TrainConfig
from pipeline.optim import lr_multiplier, muon_momentum


@pytest.fixture()
def cfg(record_params) -> TrainConfig:
    return record_params.train


def test_iteration_warmdown(cfg):
    c = dataclasses.replace(cfg, max_wallclock_seconds=0.0, iterations=7000, warmdown_iters=3000)
    expected = {0: 1.0, 3999: 1.0, 4000: 1.0, 5500: 0.5, 6999: 1 / 3000, 7000: 0.0, 7500: 0.0}
    for step, mul in expected.items():
        assert lr_multiplier(step, elapsed_ms=123456.0, cfg=c) == pytest.approx(mul, abs=1e-12), step


def test_iteration_warmdown_longer_than_run(cfg):
    c = dataclasses.replace(cfg, max_wallclock_seconds=0.0, iterations=100, warmdown_iters=200)
    assert lr_multiplier(0, 0.0, c) == pytest.approx(0.5)
    assert lr_multiplier(50, 0.0, c) == pytest.approx(0.25)


def test_wallclock_warmdown(cfg):
    # Cap 600 s, warm-down 3000 steps; 100 ms per step so far -> warm-down lasts 300 s.
    c = dataclasses.replace(cfg, max_wallclock_seconds=600.0, warmdown_iters=3000)
    assert lr_multiplier(0, 0.0, c) == 1.0
    assert lr_multiplier(1000, 100_000.0, c) == 1.0          # 500 s left > 300 s
    assert lr_multiplier(3000, 300_000.0, c) == pytest.approx(1.0)  # exactly at the start
    assert lr_multiplier(4000, 400_000.0, c) == pytest.approx(200_000 / 300_000)
    assert lr_multiplier(5000, 500_000.0, c) == pytest.approx(100_000 / 300_000)
    assert lr_multiplier(6000, 600_000.0, c) == 0.0
    assert lr_multiplier(6100, 650_000.0, c) == 0.0          # past the cap: floored at 0
    # The warm-down length follows the measured step time: 50 ms/step -> 150 s.
    assert lr_multiplier(8000, 400_000.0, c) == 1.0          # 200 s left > 150 s
    assert lr_multiplier(9000, 450_000.0, c) == pytest.approx(150_000 / 150_000)
    assert lr_multiplier(10000, 500_000.0, c) == pytest.approx(100_000 / 150_000)
    # The iteration count plays no part with a cap.
    assert lr_multiplier(4000, 400_000.0, dataclasses.replace(c, iterations=10)) == pytest.approx(2 / 3)


def test_no_warmdown(cfg):
    for cap in (0.0, 600.0):
        c = dataclasses.replace(cfg, max_wallclock_seconds=cap, warmdown_iters=0)
        for step, elapsed in ((0, 0.0), (6999, 599_000.0), (7000, 700_000.0)):
            assert lr_multiplier(step, elapsed, c) == 1.0


def test_muon_momentum_warmup(cfg):
    assert (cfg.muon_momentum_warmup_start, cfg.muon_momentum, cfg.muon_momentum_warmup_steps) == (0.92, 0.99, 1500)
    for step, m in ((0, 0.92), (750, 0.955), (1500, 0.99), (3000, 0.99)):
        assert muon_momentum(step, cfg) == pytest.approx(m, abs=1e-12), step
    assert muon_momentum(0, dataclasses.replace(cfg, muon_momentum_warmup_steps=0)) == 0.99
