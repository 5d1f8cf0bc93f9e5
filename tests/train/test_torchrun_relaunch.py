"""`pgolf train` with train.nproc_per_node > 1, or train.launcher: torchrun, re-launches itself under
torchrun (README, Stages)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from pipeline.layout import RunLayout, seed_dir
from tests.conftest import ROOT
from tests.train.helpers import tiny_params, write_params


@pytest.mark.slow
@pytest.mark.parametrize(("nproc", "launcher"), [(2, "auto"), (1, "torchrun")])
def test_train_relaunches_itself_under_torchrun(record_params, embedded_data, tmp_path, nproc, launcher):
    p = tiny_params(record_params, embedded_data.layout.root, tmp_path / "runs",
                    train=dict(nproc_per_node=nproc, launcher=launcher, iterations=3, warmdown_iters=2),
                    workspace=tmp_path)
    params = write_params(p, tmp_path / "params.yaml")
    # Exactly what DVC runs (`pgolf train --seed N`), from this checkout; torchrun's
    # --standalone rendezvous takes a port the OS picks.
    out = subprocess.run([sys.executable, "-m", "stages.cli", "train", "--seed", "3", "--params", str(params),
                          "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    summary = json.loads(RunLayout(seed_dir(tmp_path / "runs", 3)).train_summary.read_text())
    assert (summary["world_size"], summary["steps"], summary["device"]) == (nproc, 3, "cpu")
    assert summary["process_group"] == "gloo"  # the distributed path, at one process too
    done = [line for line in out.stdout.splitlines() if line.startswith("seed 3: 3 steps in ")]
    assert len(done) == 1, out.stdout  # rank 0 alone reports
    final = torch.load(RunLayout(seed_dir(tmp_path / "runs", 3)).final_weights, weights_only=True)
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())
