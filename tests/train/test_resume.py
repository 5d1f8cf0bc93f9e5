"""A run killed with SIGTERM and resumed ends with the same weights as an uninterrupted one;
resuming under other params or another world size is refused."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.layout import RunLayout, seed_dir
from pipeline.config import load_params
from pipeline.errors import TrainingError
from pipeline.train.checkpoint import checkpoint_path, load_checkpoint, read_checkpoint
from pipeline.train.curves import read_curves
from tests.conftest import ROOT
from tests.train.helpers import tiny_params, write_params

ITERATIONS = 40


def _train_cmd(params_file: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "stages.cli", "train", "--seed", "7", "--params", str(params_file),
            "--no-progress", *extra]


def _run_dir(tmp_path: Path, name: str) -> Path:
    return seed_dir(tmp_path / name, 7)


STOP_AT = 8  # the periodic checkpoint after which the run receives SIGTERM

# `pgolf train`, with SIGTERM sent to itself right after the checkpoint at step STOP_AT is
# written: the signal always arrives mid-run, at the same step, however fast the machine.
_SIGTERM_AFTER_CHECKPOINT = """
import os, signal, sys
from pipeline.train import loop
from stages.cli import main

original = loop.Trainer.save_checkpoint

def save_then_sigterm(self):
    path = original(self)
    if self.state.step == {step} and not getattr(self, "_signalled", False):
        self._signalled = True
        os.kill(os.getpid(), signal.SIGTERM)
    return path

loop.Trainer.save_checkpoint = save_then_sigterm
sys.argv = ["pgolf", *sys.argv[1:]]
main()
"""


def _killed_cmd(params_file: Path) -> list[str]:
    return [sys.executable, "-c", _SIGTERM_AFTER_CHECKPOINT.format(step=STOP_AT), *_train_cmd(params_file)[3:]]


@pytest.mark.slow
def test_killed_and_resumed_equals_uninterrupted(record_params, embedded_data, tmp_path):
    def params_file(name: str) -> Path:
        p = tiny_params(record_params, embedded_data.layout.root, tmp_path / name,
                        train=dict(iterations=ITERATIONS, warmdown_iters=20, checkpoint_every=4), workspace=tmp_path)
        return write_params(p, tmp_path / f"{name}.yaml")

    straight = params_file("straight")
    subprocess.run(_train_cmd(straight), cwd=ROOT, check=True, capture_output=True, timeout=600)

    killed = params_file("killed")
    run = RunLayout(_run_dir(tmp_path, "killed"))
    proc = subprocess.run(_killed_cmd(killed), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"pgolf: interrupted at step {STOP_AT}; checkpoint written to {checkpoint_path(run.work_dir, 0)} "
        "(resume with --resume)")
    assert read_checkpoint(checkpoint_path(run.work_dir, 0))["loop"]["step"] == STOP_AT
    assert not run.train_dir.exists()  # nothing that looks finished

    # Different params: refused, one line, the checkpoint kept.
    other = tiny_params(record_params, embedded_data.layout.root, tmp_path / "killed",
                        train=dict(iterations=ITERATIONS, warmdown_iters=20, checkpoint_every=4, matrix_lr=0.03),
                        workspace=tmp_path)
    refused = subprocess.run(_train_cmd(write_params(other, tmp_path / "other.yaml"), "--resume"), cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1
    lines = refused.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"pgolf: error: {checkpoint_path(run.work_dir, 0)}: made with different params"), lines
    assert lines[0].endswith("start afresh without --resume")
    assert checkpoint_path(run.work_dir, 0).is_file()
    # Another world size with the same params (torchrun started by hand with another
    # --nproc_per_node): refused, naming both sizes.
    with pytest.raises(TrainingError) as err:
        load_checkpoint(run.work_dir, 0, load_params(killed).stage_digest("train"), world_size=2)
    assert str(err.value) == f"{checkpoint_path(run.work_dir, 0)}: made with world size 1, now 2"

    # Params only later stages read may change between the kill and the resume (DVC re-runs only those).
    later = load_params(killed)
    later = dataclasses.replace(later, eval=dataclasses.replace(later.eval, stride=32),
                                quant=dataclasses.replace(later.quant, zstd_level=3))
    assert later.digest() != load_params(killed).digest()
    assert later.stage_digest("train") == load_params(killed).stage_digest("train")
    subprocess.run(_train_cmd(write_params(later, tmp_path / "later.yaml"), "--resume"), cwd=ROOT, check=True,
                   capture_output=True, timeout=600)
    a = torch.load(RunLayout(_run_dir(tmp_path, "straight")).final_weights, weights_only=True)
    b = torch.load(run.final_weights, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    sa = torch.load(RunLayout(_run_dir(tmp_path, "straight")).snapshots, weights_only=True)
    sb = torch.load(run.snapshots, weights_only=True)
    assert sa["steps"] == sb["steps"] and all(
        torch.equal(x[k], y[k]) for x, y in zip(sa["states"], sb["states"]) for k in x)
    log_a = read_curves(RunLayout(_run_dir(tmp_path, "straight")).live_dir)[0]
    log_b = read_curves(run.live_dir)[0]
    assert [r.train_loss for r in log_a] == [r.train_loss for r in log_b]
    assert not run.work_dir.exists()


def test_resume_without_checkpoint_is_a_clear_error(record_params, embedded_data, tmp_path):
    p = tiny_params(record_params, embedded_data.layout.root, tmp_path / "runs", workspace=tmp_path)
    out = subprocess.run(_train_cmd(write_params(p, tmp_path / "p.yaml"), "--resume"), cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "no checkpoint to resume from" in out.stderr and "Traceback" not in out.stderr
