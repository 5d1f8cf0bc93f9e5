"""The training loop on the embedded corpus, one CPU process: loss, schedule, QAT, SWA, errors."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from pipeline.errors import DataError, TrainingError
from pipeline.layout import RunLayout, seed_dir
from pipeline.optim.schedule import lr_multiplier
from pipeline.runtime import detect_runtime
from pipeline.train.loop import Trainer, train
from pipeline.train.curves import read_curves, write_curves
from tests.train.helpers import tiny_params


@pytest.fixture(scope="module")
def sixty_step_run(record_params, embedded_data, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    p = tiny_params(record_params, embedded_data.layout.root, runs,
                    train=dict(iterations=60, warmdown_iters=30, val_loss_every=20, qat_threshold=0.1))
    summary = train(p, 1, embedded_data.layout.root, seed_dir(runs, 1), detect_runtime(), progress=False,
                    curves=write_curves)
    return p, summary, RunLayout(seed_dir(runs, 1))


@pytest.mark.slow
def test_loss_falls_in_a_sixty_step_run(sixty_step_run):
    _, summary, layout = sixty_step_run
    rows, val = read_curves(layout.live_dir)
    assert [r.step for r in rows] == list(range(1, 61))
    first = sum(r.train_loss for r in rows[:5]) / 5
    last = sum(r.train_loss for r in rows[-5:]) / 5
    assert first > math.log(1024) - 0.5  # starts near uniform over the vocabulary
    assert last < first - 1.0
    assert [r.step for r in val] == [0, 20, 40, 60]
    assert val[-1].val_loss < val[0].val_loss - 0.5 and val[-1].val_bpb > 0
    assert summary.steps == 60 and summary.stopped_by == "iterations"
    assert summary.tokens_seen == 60 * 8 * 2 * 64


@pytest.mark.slow
def test_qat_switches_on_where_the_multiplier_falls_below_the_threshold(sixty_step_run):
    p, summary, layout = sixty_step_run
    expected = next(s for s in range(60) if lr_multiplier(s, 0.0, p.train) < p.train.qat_threshold)
    assert summary.qat_step == expected == 58  # (60 - s) / 30 < 0.1  <=>  s > 57
    qat_column = [r.qat for r in read_curves(layout.live_dir)[0]]
    assert qat_column == [0] * expected + [1] * (60 - expected)


@pytest.mark.slow
def test_swa_snapshots_are_the_expected_steps_and_outputs_exist(sixty_step_run):
    p, summary, layout = sixty_step_run
    # lr_mul(s) = (60 - s) / 30 < 0.5 for s > 45; every 2 completed steps; keep the last 3.
    assert summary.snapshot_steps == [56, 58, 60]
    bundle = torch.load(layout.snapshots, weights_only=True)
    assert bundle["steps"] == [56, 58, 60] and len(bundle["states"]) == 3
    final = torch.load(layout.final_weights, weights_only=True)
    assert torch.equal(bundle["states"][-1]["tok_emb.weight"], final["tok_emb.weight"])
    assert not layout.ema_weights.exists()
    assert json.loads(layout.train_summary.read_text())["steps"] == 60
    assert not layout.work_dir.exists()


@pytest.mark.slow
def test_compile_warmup_steps_leave_no_trace(record_params, embedded_data, tmp_path):
    """Warm-up steps run, then weights, optimiser state and data position are restored."""
    def final_weights(warmup: int) -> dict:
        runs = tmp_path / f"w{warmup}"
        p = tiny_params(record_params, embedded_data.layout.root, runs, train=dict(iterations=4, warmup_steps=warmup))
        train(p, 3, embedded_data.layout.root, seed_dir(runs, 3), detect_runtime(), progress=False)
        return torch.load(RunLayout(seed_dir(runs, 3)).final_weights, weights_only=True)

    plain, warmed = final_weights(0), final_weights(2)
    assert all(torch.equal(plain[k], warmed[k]) for k in plain)


class _StepClock:
    """A fake perf_counter that advances exactly 0.125 s per training step, never otherwise
    (binary fractions: every elapsed time below is exact)."""

    def __init__(self) -> None:
        self.now = 1024.0

    def perf_counter(self) -> float:
        return self.now


def test_wallclock_cap_stops_training(record_params, embedded_data, tmp_path, monkeypatch):
    """At 125 ms a step, a 1.5 s cap stops after step 12; the warm-down (4 mean step times = 500 ms)
    begins at 1 s: lr_mul = (1500 - 125 k) / 500 for the step from k >= 8 (SPEC §3)."""
    import pipeline.train.clock as clock_module

    fake = _StepClock()
    monkeypatch.setattr(clock_module, "time", fake)
    real_step = Trainer._train_step

    def step_taking_125_ms(self, lr_mul, momentum):
        fake.now += 0.125
        return real_step(self, lr_mul, momentum)

    monkeypatch.setattr(Trainer, "_train_step", step_taking_125_ms)
    p = tiny_params(record_params, embedded_data.layout.root, tmp_path,
                    train=dict(iterations=100_000, max_wallclock_seconds=1.5, warmdown_iters=4))
    summary = train(p, 1, embedded_data.layout.root, seed_dir(tmp_path, 1), detect_runtime(), progress=False,
                    curves=write_curves)
    assert summary.stopped_by == "wallclock"
    assert summary.steps == 12
    assert summary.train_seconds == 1.5
    rows = read_curves(RunLayout(seed_dir(tmp_path, 1)).live_dir)[0]
    assert [r.step for r in rows] == list(range(1, 13))
    # Row `step` logs the multiplier of the step from k = step - 1, taken at k x 125 ms.
    expected = [1.0 if k < 8 else (1500 - 125 * k) / 500 for k in range(12)]
    assert [r.lr_mul for r in rows] == pytest.approx(expected, abs=1e-6)


def test_non_finite_loss_stops_with_the_step_and_writes_nothing(record_params, embedded_data, tmp_path):
    p = tiny_params(record_params, embedded_data.layout.root, tmp_path)
    layout = RunLayout(seed_dir(tmp_path, 1))
    trainer = Trainer(p, 1, embedded_data.layout.root, layout.run_dir, detect_runtime(), progress=False)
    with torch.no_grad():
        trainer.model.tok_emb.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match=r"non-finite training loss at step 1\b"):
        trainer.run()
    assert not layout.train_dir.exists() and not layout.train_summary.exists()


def test_tokenizer_vocab_mismatch_is_refused(record_params, embedded_data, tmp_path):
    p = tiny_params(record_params, embedded_data.layout.root, tmp_path)
    bigger = dataclasses.replace(p.model, vocab_size=2048)
    p = dataclasses.replace(p, model=bigger, data=dataclasses.replace(
        p.data, tokenizer=dataclasses.replace(p.data.tokenizer, vocab_size=2048)))
    with pytest.raises(DataError, match=r"has vocab 1024 but model\.vocab_size is 2048$") as err:
        Trainer(p, 1, embedded_data.layout.root, tmp_path / "r", detect_runtime(), progress=False)
    assert "\n" not in str(err.value)  # printed as the one line `pgolf: error: ...`


def test_depth_recurrence_switches_on_at_its_training_fraction(record_params, embedded_data, tmp_path):
    # model.recurrence: unlooped until step / iterations >= enable_at, looped after, every
    # frontier switch on (lanes, skip gates, token smear, attention gate, Polar-Express Muon).
    p = tiny_params(record_params, embedded_data.layout.root, tmp_path / "runs", train=dict(iterations=8))
    model = dataclasses.replace(
        p.model, num_layers=4, mlp_leaky_slope=0.5, skip_gates=True, smear_window=8, smear_bos_mask=True,
        attn_gate=dataclasses.replace(p.model.attn_gate, enabled=True, window=8, scale=0.5),
        lanes=dataclasses.replace(p.model.lanes, start_layer=3),
        recurrence=dataclasses.replace(p.model.recurrence, num_loops=1, loop_start=1, loop_end=1, enable_at=0.5))
    variant = dataclasses.replace(p.train.muon_variant, ns="polar_express", row_normalize=True, momentum_dtype="bf16")
    p = dataclasses.replace(p, model=model, train=dataclasses.replace(p.train, muon_variant=variant, min_lr=0.1,
                                                                        warmdown_frac=0.5))
    trainer = Trainer(p, 1, embedded_data.layout.root, seed_dir(tmp_path / "runs", 1), detect_runtime(),
                      progress=False)
    assert not trainer.model.looping_active
    summary = trainer.run()
    assert summary.loop_step == 4 and trainer.model.looping_active
    assert math.isfinite(summary.final_train_loss)
