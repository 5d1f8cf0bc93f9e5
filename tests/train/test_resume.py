"""A run killed with SIGTERM and resumed ends with the same weights as an uninterrupted one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from pipeline.layout import RunLayout, seed_dir
from pipeline.train.checkpoint import checkpoint_path, read_checkpoint
from pipeline.train.steplog import read_tsv
from tests.conftest import ROOT
from tests.train.helpers import tiny_params, write_params

ITERATIONS = 40


def _train_cmd(params_file: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "stages.cli", "train", "--seed", "7", "--params", str(params_file),
            "--no-progress", *extra]


def _run_dir(tmp_path: Path, name: str) -> Path:
    return seed_dir(tmp_path / name, 7)


def test_killed_and_resumed_equals_uninterrupted(record_params, embedded_data, tmp_path):
    def params_file(name: str) -> Path:
        p = tiny_params(record_params, embedded_data.layout.root, tmp_path / name,
                        train=dict(iterations=ITERATIONS, warmdown_iters=20, checkpoint_every=4), workspace=tmp_path)
        return write_params(p, tmp_path / f"{name}.yaml")

    straight = params_file("straight")
    subprocess.run(_train_cmd(straight), cwd=ROOT, check=True, capture_output=True, timeout=600)

    killed = params_file("killed")
    run = RunLayout(_run_dir(tmp_path, "killed"))
    proc = subprocess.Popen(_train_cmd(killed), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not checkpoint_path(run.work_dir, 0).exists():  # a periodic checkpoint: training is under way
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err
    assert "interrupted at step" in err and "--resume" in err
    stopped_at = read_checkpoint(checkpoint_path(run.work_dir, 0))["loop"]["step"]
    assert 0 < stopped_at < ITERATIONS
    assert not run.train_dir.exists()  # nothing that looks finished

    subprocess.run(_train_cmd(killed, "--resume"), cwd=ROOT, check=True, capture_output=True, timeout=600)
    a = torch.load(RunLayout(_run_dir(tmp_path, "straight")).final_weights, weights_only=True)
    b = torch.load(run.final_weights, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    sa = torch.load(RunLayout(_run_dir(tmp_path, "straight")).snapshots, weights_only=True)
    sb = torch.load(run.snapshots, weights_only=True)
    assert sa["steps"] == sb["steps"] and all(
        torch.equal(x[k], y[k]) for x, y in zip(sa["states"], sb["states"]) for k in x)
    log_a = read_tsv(RunLayout(_run_dir(tmp_path, "straight")).train_log)
    log_b = read_tsv(run.train_log)
    assert [r["train_loss"] for r in log_a] == [r["train_loss"] for r in log_b]
    assert not run.work_dir.exists()


def test_resume_without_checkpoint_is_a_clear_error(record_params, embedded_data, tmp_path):
    p = tiny_params(record_params, embedded_data.layout.root, tmp_path / "runs", workspace=tmp_path)
    out = subprocess.run(_train_cmd(write_params(p, tmp_path / "p.yaml"), "--resume"), cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "no checkpoint to resume from" in out.stderr and "Traceback" not in out.stderr
