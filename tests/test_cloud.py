"""The SkyPilot task files (cloud/): what a managed job would rent, mount, set and run.

Two layers: a structural check of the YAML and the scripts that always runs, and
the same task files loaded by SkyPilot's own parser (`sky.Task.from_yaml`) when
skypilot is installed (`pip install -e '.[cloud]'`); no cloud account is needed
for either.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLOUD = ROOT / "cloud"
TASKS = ("record.yaml", "sweep.yaml")
ENVS = {"PGOLF_RUN_NAME", "PGOLF_OVERRIDES", "PGOLF_BUCKET", "PGOLF_GIT_REMOTE", "PGOLF_PUSH"}
CHECKPOINTS = "/pgolf-ckpt"


def task(name: str) -> dict:
    return yaml.safe_load((CLOUD / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", TASKS)
def test_task_rents_8_h100_spot_with_recovery_and_runs_the_experiment_script(name):
    t = task(name)
    res = t["resources"]
    assert res["accelerators"] == "H100:8" and res["use_spot"] is True
    assert res["job_recovery"]["strategy"] == "EAGER_NEXT_REGION"
    assert t["workdir"] == "."
    assert ENVS <= set(t["envs"])
    assert t["secrets"] == {"HF_TOKEN": ""}
    assert t["file_mounts"][CHECKPOINTS] == {"name": "${PGOLF_BUCKET}", "mode": "MOUNT_CACHED"}
    assert "pip install -q -e '.[dvc]'" in t["setup"]
    run = t["run"].strip().splitlines()[-1]
    assert run == f"PGOLF_CHECKPOINTS={CHECKPOINTS}/${{PGOLF_RUN_NAME}} cloud/run-experiment"


def test_record_task_runs_the_record_profile_with_periodic_checkpoints():
    overrides = task("record.yaml")["envs"]["PGOLF_OVERRIDES"].split()
    assert "profile=record" in overrides and "train.checkpoint_every=500" in overrides


def test_the_experiment_script_resumes_runs_pushes_in_that_order():
    text = (CLOUD / "run-experiment").read_text(encoding="utf-8")
    script = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    subprocess.run(["bash", "-n", str(CLOUD / "run-experiment")], check=True)
    steps = ["scripts/compose-params", 'ln -sfn "$PGOLF_CHECKPOINTS/seed_$seed" "$out_dir/seed_$seed/work"',
             "dvc pull prepare", "dvc repro prepare", 'pgolf train --seed "$seed" --resume',
             'dvc commit -f "train@$seed"', 'dvc exp run --name "$PGOLF_RUN_NAME" "${set_args[@]}"',
             'dvc exp push "$PGOLF_GIT_REMOTE" "$PGOLF_RUN_NAME"', "dvc push"]
    positions = [script.index(step) for step in steps]
    assert positions == sorted(positions)
    # The file the resume test looks for is the rank-0 checkpoint pgolf writes.
    from pipeline.train.checkpoint import checkpoint_path
    assert f"work/{checkpoint_path(Path('.'), 0).name}" in script


def test_launch_sweep_starts_one_managed_job_per_experiment():
    out = subprocess.run([str(CLOUD / "launch-sweep"), "--dry-run", "--prefix", "lr",
                          "train.matrix_lr=0.02", "train.matrix_lr=0.03 model.xsa_last_n=3"],
                         check=True, capture_output=True, text=True).stdout
    commands = [shlex.split(line) for line in out.splitlines()]
    assert len(commands) == 2
    for i, (cmd, extra) in enumerate(zip(commands, ["train.matrix_lr=0.02", "train.matrix_lr=0.03 model.xsa_last_n=3"]),
                                     start=1):
        assert cmd[:7] == ["sky", "jobs", "launch", "-y", "-d", "-n", f"lr-{i}"]
        assert cmd[7] == "cloud/sweep.yaml"
        assert cmd[8:] == ["--env", f"PGOLF_RUN_NAME=lr-{i}",
                           "--env", f"PGOLF_OVERRIDES=seeds=[1337] train.checkpoint_every=500 {extra}"]
    assert task("sweep.yaml")["envs"]["PGOLF_OVERRIDES"] == "seeds=[1337] train.checkpoint_every=500"


@pytest.mark.parametrize("name", TASKS)
def test_skypilot_parses_the_task(name, monkeypatch):
    sky = pytest.importorskip("sky", reason="skypilot not installed (pip install -e '.[cloud]')")
    monkeypatch.chdir(ROOT)  # workdir: . is checked against the current directory
    t = sky.Task.from_yaml(str(CLOUD / name))
    (res,) = t.resources
    assert res.accelerators == {"H100": 8} and res.use_spot
    assert res.job_recovery["strategy"] == "EAGER_NEXT_REGION"
    assert ENVS <= set(t.envs) and t.envs["PGOLF_BUCKET"] == "pgolf-checkpoints"
    assert set(t.secrets) == {"HF_TOKEN"}
    # The bucket mount, with the env substituted by SkyPilot.
    storage = t.storage_mounts[CHECKPOINTS]
    assert storage.name == "pgolf-checkpoints" and str(storage.mode.value) == "MOUNT_CACHED"
    assert "cloud/run-experiment" in t.run and "pip install -q -e '.[dvc]'" in t.setup
    assert Path(t.workdir).resolve() == ROOT
