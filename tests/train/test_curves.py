"""The dvclive curves: what the train stage writes, what pgolf reads back, what DVC reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.atomic import OUTPUT_MARKER
from pipeline.layout import RunLayout
from pipeline.train.curves import SUMMARY_KEYS, read_curves, write_curves
from pipeline.train.steplog import StepRow, ValRow

STEPS = [StepRow(s, 7.0 - s / 10, 1.0 - s / 20, 0.9, 12.5, 1000.0 + s, int(s >= 15), 12.5 * s) for s in range(1, 21)]
VALS = [ValRow(s, 4.0 - s / 10, 2.5 - s / 20, 12.5 * s) for s in (0, 10, 20)]
SUMMARY = {"steps": 20, "train_seconds": 0.25, "mean_step_ms": 12.5, "tokens_per_second": 1000.0,
           "compile_warmup_seconds": 0.0, "peak_memory_bytes": None, "qat_step": 15,
           "final_train_loss": 5.0, "device": "cpu", "snapshot_steps": [18, 20]}


@pytest.fixture
def live(tmp_path):
    run = RunLayout(tmp_path / "runs" / "seed_3")
    run.run_dir.mkdir(parents=True)
    write_curves(run.live_dir, STEPS, VALS, SUMMARY)
    return run.live_dir


def test_the_rows_come_back_as_written(live):
    assert read_curves(live) == (STEPS, VALS)


def test_the_directory_is_dvclives_layout_with_its_own_dvc_yaml(live):
    files = sorted(p.relative_to(live).as_posix() for p in live.rglob("*") if p.is_file())
    assert files == sorted([OUTPUT_MARKER, "dvc.yaml", "metrics.json"]
                           + [f"plots/metrics/train/{n}.tsv" for n in ("train_loss", "lr_mul", "momentum", "step_ms",
                                                                       "tokens_per_s", "qat", "train_time_ms")]
                           + [f"plots/metrics/val/{n}.tsv" for n in ("val_loss", "val_bpb", "train_time_ms")])
    assert yaml.safe_load((live / "dvc.yaml").read_text()) == {"metrics": ["metrics.json"],
                                                              "plots": [{"plots/metrics": {"x": "step"}}]}
    assert (live / "plots/metrics/val/val_bpb.tsv").read_text() == "step\tval_bpb\n0\t2.5\n10\t2.0\n20\t1.5\n"
    metrics = json.loads((live / "metrics.json").read_text())
    # The last value of every curve, the last step, and the summary's numbers (None and strings left out).
    assert metrics["train"]["train_loss"] == 5.0 and metrics["val"]["val_bpb"] == 1.5 and metrics["step"] == 20
    assert {k: metrics[k] for k in SUMMARY_KEYS if k in metrics} == {
        k: v for k, v in SUMMARY.items() if k in SUMMARY_KEYS and v is not None}
    assert "peak_memory_bytes" not in metrics and "device" not in metrics


def test_writing_needs_no_repository_and_changes_none(tmp_path):
    """In a git repository without commits and without DVC (dvclive's own integration would
    fail there, or run `dvc init`): the curves are written, nothing else appears."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    write_curves(tmp_path / "runs" / "dvclive", STEPS, VALS, SUMMARY)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".git", "runs"]
    assert read_curves(tmp_path / "runs" / "dvclive") == (STEPS, VALS)


def test_as_a_dvc_stage_the_dvc_yaml_is_staged_for_the_experiment_commit(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    write_curves(tmp_path / "runs" / "dvclive", STEPS, VALS, SUMMARY)
    staged = subprocess.run(["git", "diff", "--cached", "--name-only"], cwd=tmp_path, check=True,
                            capture_output=True, text=True).stdout.split()
    assert staged == ["runs/dvclive/dvc.yaml"]


def test_as_a_dvc_stage_without_a_git_program_the_curves_are_written_with_a_warning(tmp_path, monkeypatch,
                                                                                   capsys):
    """DVC can run on its own git libraries where no `git` program is installed (a bare GPU image):
    the stage keeps its curves and says what it could not stage, instead of dying."""
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    write_curves(tmp_path / "runs" / "dvclive", STEPS, VALS, SUMMARY)
    assert read_curves(tmp_path / "runs" / "dvclive") == (STEPS, VALS)
    out = capsys.readouterr()
    assert "could not `git add`" in out.out + out.err and "cannot run git" in out.out + out.err


def test_a_run_without_validation_has_no_val_curves(tmp_path):
    live = tmp_path / "dvclive"
    write_curves(live, STEPS, [], SUMMARY)
    assert read_curves(live) == (STEPS, [])
    assert not (live / "plots" / "metrics" / "val").exists()


def test_a_curve_with_a_step_missing_is_refused_naming_the_file(live):
    path = live / "plots/metrics/train/lr_mul.tsv"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(Exception, match=r"plots/metrics/train: step 20 is missing from lr_mul.tsv"):
        read_curves(live)


@pytest.mark.slow
def test_dvc_reads_the_seed_directories_present_whatever_seeds_says(tmp_path):
    """`dvc metrics show` and `dvc plots show` find each seed's curves through dvclive's
    dvc.yaml, with no root declaration naming the seeds (the state after scripts/smoke)."""
    repo = tmp_path / "repo"
    for seed in (1, 2):
        run = RunLayout(repo / "runs" / f"seed_{seed}")
        run.run_dir.mkdir(parents=True)
        write_curves(run.live_dir, STEPS, VALS, SUMMARY)
    (repo / "dvc.yaml").write_text("stages: {}\n")
    (repo / "params.yaml").write_text("seeds: [1337, 1335, 1336]\n")
    dvc = [str(Path(sys.executable).with_name("dvc"))]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    run = lambda *a: subprocess.run(a, cwd=repo, env=env, check=True, capture_output=True, text=True)  # noqa: E731
    run("git", "init", "-q")
    run(*dvc, "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "runs")
    metrics = json.loads(run(*dvc, "metrics", "show", "--json").stdout)
    (workspace,) = metrics.values()  # one revision: the workspace
    found = workspace["data"]
    assert found["runs/seed_1/dvclive/metrics.json"]["data"]["steps"] == 20
    assert found["runs/seed_2/dvclive/metrics.json"]["data"]["val"]["val_bpb"] == 1.5
    plots = json.loads(run(*dvc, "plots", "show", "--json").stdout)
    assert not plots.get("errors"), plots.get("errors")
    ids = set(plots["data"])
    for seed in (1, 2):
        for name in ("train/train_loss", "train/lr_mul", "val/val_bpb"):
            assert f"runs/seed_{seed}/dvclive/plots/metrics/{name}.tsv" in ids
    shutil.rmtree(repo)


def test_the_project_gitignore_lets_dvc_find_each_seeds_dvclive_dvc_yaml(tmp_path):
    """DVC collects a seed's dvclive/dvc.yaml only if its own ignore check (scmrepo) does not
    count runs/seed_N/ as ignored; the cached outputs beside it stay ignored."""
    import shutil
    import subprocess
    from pathlib import Path

    from scmrepo.git import Git

    root = Path(__file__).resolve().parents[2]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy(root / ".gitignore", tmp_path / ".gitignore")
    seed = tmp_path / "runs" / "seed_1"
    (seed / "dvclive").mkdir(parents=True)
    (seed / "train").mkdir()
    git = Git(str(tmp_path))
    assert not git.is_ignored(f"{seed}/")
    assert not git.is_ignored(f"{seed}/dvclive/") and not git.is_ignored(f"{seed}/dvclive/dvc.yaml")
    assert not git.is_ignored(f"{seed}/train_summary.json") and not git.is_ignored(f"{seed}/size.json")
    for cached in ("averaged.pt", "model.int6.ptz", "train/", "work/"):
        assert git.is_ignored(f"{seed}/{cached}"), cached
