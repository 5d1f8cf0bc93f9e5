"""Train, swa and quantize under attack and under kills: no code runs from a checkpoint, a kill
cannot pair new outputs with old ones, and one command per seed at a time.

Each case is caused the way a user would (the CLI, real files) and checks the exact
one-line message and that nothing else on disk changed.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipeline.atomic import OUTPUT_MARKER
from pipeline.layout import RunLayout, seed_dir
from pipeline.quant.pairing import artifact_sha256
from pipeline.train.checkpoint import MAGIC, checkpoint_path
from stages.cli import app
from tests.conftest import ROOT
from tests.stages.disk_state import disk_state, killed_at, one_line_error, stop_at
from tests.train.helpers import tiny_params, write_params

runner = CliRunner()
SEED = 7


class Payload:
    """What a hostile checkpoint would run when unpickled: here, create a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (builtins.open, (str(self.marker), "w"))


@pytest.fixture()
def workspace(record_params, embedded_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tiny_params(record_params, embedded_data.layout.root, tmp_path / "runs", train=dict(iterations=4),
                    workspace=tmp_path)
    return tmp_path, p, write_params(p, tmp_path / "params.yaml"), RunLayout(seed_dir(tmp_path / "runs", SEED))


def _without_dead_lock(state: dict[str, str]) -> dict[str, str]:
    """The state minus the lock file a killed command leaves (the next one takes it over and removes it)."""
    assert f"runs/seed_{SEED}/.pgolf-lock" in state
    return {k: v for k, v in state.items() if k != f"runs/seed_{SEED}/.pgolf-lock"}


def invoke(*args: str):
    return runner.invoke(app, [*args])


def _with_header(payload: bytes, digest: bytes | None = None) -> bytes:
    digest = hashlib.sha256(payload).digest() if digest is None else digest
    return struct.pack("<8sIQ32s", MAGIC, 1, len(payload), digest) + payload


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize("form", ["bare pickle", "framed torch archive", "wrong digest"])
def test_a_tampered_resume_checkpoint_is_refused_and_its_code_never_runs(workspace, form):
    root, _, params, run = workspace
    marker = root / "payload-ran"
    path = checkpoint_path(run.work_dir, 0)
    path.parent.mkdir(parents=True)
    evil = {"params_digest": "x", "model": Payload(marker)}
    blob = {"bare pickle": pickle.dumps(evil),
            "framed torch archive": _with_header(_torch_bytes(evil)),
            "wrong digest": _with_header(_torch_bytes(evil), digest=b"\0" * 32)}[form]
    path.write_bytes(blob)
    before = disk_state(root)
    result = invoke("train", "--seed", str(SEED), "--params", str(params), "--resume", "--no-progress")
    assert result.exit_code == 1, result.output
    expected = {
        "bare pickle": f"not a pgolf resume checkpoint (magic {blob[:8]!r}, expected {MAGIC!r}); refusing to load it",
        "framed torch archive": "refused: holds more than tensors and plain data (it references io.open); "
                                "nothing in it was run",
        "wrong digest": "corrupt: payload sha256 does not match the header; refusing to load it",
    }[form]
    assert one_line_error(result.stderr) == f"pgolf: error: {path}: {expected}"
    assert not marker.exists()
    assert disk_state(root) == before


def test_a_train_folder_of_the_user_is_refused_before_training(workspace):
    root, _, params, run = workspace
    run.train_dir.mkdir(parents=True)
    (run.train_dir / "notes.txt").write_text("mine\n")
    before = disk_state(root)
    result = invoke("train", "--seed", str(SEED), "--params", str(params), "--no-progress")
    assert result.exit_code == 1
    assert one_line_error(result.stderr) == (f"pgolf: error: {run.train_dir}: exists and was not written by pgolf "
                                             f"(no {OUTPUT_MARKER} marker inside); refusing to replace it")
    assert disk_state(root) == before


@pytest.mark.slow
def test_a_second_train_of_the_same_seed_exits_at_once_naming_the_holder(workspace):
    root, _, params, run = workspace
    first = stop_at("pause", "dir-built:dvclive", "train", "--seed", str(SEED), "--params", str(params),
                    "--no-progress", cwd=root)
    try:
        assert first.stdout.readline() == "paused at dir-built:dvclive\n"
        before = disk_state(root)
        for command in ("train", "swa", "quantize"):
            result = invoke(command, "--seed", str(SEED), "--params", str(params))
            assert result.exit_code == 1
            assert one_line_error(result.stderr) == (
                f"pgolf: error: {run.run_dir}: in use by another pgolf process (pid {first.pid}, "
                f"lock file {run.run_dir / '.pgolf-lock'}); wait for it to finish")
        assert disk_state(root) == before
    finally:
        first.kill()  # SIGKILL: no cleanup runs, the kernel drops the lock
        first.communicate(timeout=60)
    left = sorted(p.name for p in run.run_dir.iterdir())
    assert any(n.startswith(".dvclive.") and n.endswith(".tmp") for n in left), left
    assert any(n.startswith(".train.") and n.endswith(".tmp") for n in left), left

    result = invoke("train", "--seed", str(SEED), "--params", str(params), "--no-progress")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in run.run_dir.iterdir()) == ["dvclive", "train", "train_summary.json"]


@pytest.mark.slow
@pytest.mark.parametrize(("point", "stale"), [("dir-built:train", "train/final.pt"),
                                              ("file:train_summary.json", "dvclive/metrics.json")])
def test_a_train_killed_between_its_outputs_cannot_pair_new_with_old(workspace, point, stale):
    root, p, params, run = workspace
    assert invoke("train", "--seed", str(SEED), "--params", str(params), "--no-progress").exit_code == 0
    longer = write_params(dataclasses.replace(p, train=dataclasses.replace(p.train, iterations=6)),
                          root / "longer.yaml")
    killed_at(point, "train", "--seed", str(SEED), "--params", str(longer), "--no-progress", cwd=root)
    before = _without_dead_lock(disk_state(root))
    result = invoke("swa", "--seed", str(SEED), "--params", str(longer))
    assert result.exit_code == 1
    assert one_line_error(result.stderr) == (
        f"pgolf: error: {run.train_summary}: does not belong with {run.run_dir / stale} (sha256 differs; "
        f"a train run was interrupted while writing?); run `pgolf train --seed {SEED}` again")
    assert disk_state(root) == before

    again = invoke("train", "--seed", str(SEED), "--params", str(longer), "--no-progress")
    assert again.exit_code == 0, again.output
    assert invoke("swa", "--seed", str(SEED), "--params", str(longer)).exit_code == 0
    assert not [n for n in (x.name for x in run.run_dir.iterdir()) if n.endswith((".tmp", ".old"))]


@pytest.mark.slow
def test_a_quantize_killed_between_its_outputs_is_refused_by_evaluate(workspace):
    root, p, params, run = workspace
    for stage in ("train", "swa", "quantize"):
        assert invoke(stage, "--seed", str(SEED), "--params", str(params)).exit_code == 0, stage
    old_sha = artifact_sha256(run.artifact)
    other = write_params(dataclasses.replace(p, quant=dataclasses.replace(p.quant, zstd_level=3)), root / "q.yaml")
    killed_at(f"file:{run.artifact.name}", "quantize", "--seed", str(SEED), "--params", str(other), cwd=root)
    new_sha = json.loads(run.size_report.read_text())["artifact"]["sha256"]
    assert new_sha != old_sha and artifact_sha256(run.artifact) == old_sha
    before = disk_state(root)
    result = invoke("evaluate", "--seed", str(SEED), "--params", str(other))
    assert result.exit_code == 1
    assert one_line_error(result.stderr) == (
        f"pgolf: error: {run.size_report}: describes another artifact than {run.artifact} (sha256 {new_sha[:12]} "
        f"vs {old_sha[:12]}; a quantize run was interrupted?); run `pgolf quantize --seed {SEED}` again")
    assert disk_state(root) == before

    assert any(x.name.startswith(f".{run.artifact.name}.") for x in run.run_dir.iterdir())
    assert invoke("quantize", "--seed", str(SEED), "--params", str(other)).exit_code == 0
    assert not any(x.name.endswith(".tmp") for x in run.run_dir.iterdir())  # the killed run's temp file is gone
    assert invoke("evaluate", "--seed", str(SEED), "--params", str(other)).exit_code == 0


@pytest.mark.slow
def test_under_torchrun_the_launcher_holds_the_lock_and_the_workers_run(workspace):
    """nproc_per_node 2 re-launches under torchrun while the launcher holds the run lock:
    the workers (told by --lock-held) must not refuse it, and the lock goes with the launcher."""
    root, p, _, run = workspace
    two = write_params(dataclasses.replace(p, train=dataclasses.replace(p.train, nproc_per_node=2, iterations=2)),
                       root / "two.yaml")
    done = subprocess.run([sys.executable, "-m", "stages.cli", "train", "--seed", str(SEED), "--params", str(two),
                           "--no-progress"], cwd=root, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"seed {SEED}: 2 steps")
    assert (run.train_dir / "final.pt").is_file() and not (run.run_dir / ".pgolf-lock").exists()


def test_training_removes_only_its_own_files_from_work(workspace):
    """At the end of training pgolf removes its checkpoints and the temp files of killed checkpoint
    writes (a pid that is gone); a file of the user's in work/ stays, and so does work/."""
    root, _, params, run = workspace
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    run.work_dir.mkdir(parents=True)
    (run.work_dir / "notes.txt").write_text("mine\n")
    (run.work_dir / f".resume.rank0.pt.{dead.stdout.strip()}.abcd1234.tmp").write_bytes(b"half a checkpoint")
    (run.work_dir / f".notes.txt.{dead.stdout.strip()}.abcd1234.tmp").write_text("not pgolf's pattern here\n")
    result = invoke("train", "--seed", str(SEED), "--params", str(params), "--no-progress")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in run.work_dir.iterdir()) == [f".notes.txt.{dead.stdout.strip()}.abcd1234.tmp",
                                                              "notes.txt"]
