"""A queued sweep (README "Experiments and sweeps"): `dvc exp run --queue` with a Hydra
choice sweep, `dvc queue start -j 1`, two finished experiments whose metrics differ, and
`dvc exp show --only-changed` as the readable table. Run on a copy of the repository
with the micro profile (the smoke profile at its smallest, tests/test_dvc_pipeline.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.test_dvc_pipeline import micro_repo, run

SWEEP = ["-S", "profile=micro", "-S", "train.matrix_lr=choice(0.02,0.03)"]


def experiments(show: list) -> list[dict]:
    """The experiments of `dvc exp show --json` (the baseline's children)."""
    out = []
    for baseline in show:
        for exp in baseline.get("experiments") or []:
            out += exp.get("revs", [])
    return out


@pytest.mark.slow
def test_a_queued_sweep_runs_two_experiments_with_different_metrics(tmp_path):
    repo, e = micro_repo(tmp_path)

    def dvc(*args: str) -> str:
        r = run(["dvc", *args], repo, env=e, timeout=900)
        assert r.returncode == 0, f"dvc {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
        return r.stdout

    dvc("exp", "run", "--queue", *SWEEP)
    status = dvc("queue", "status")
    assert status.count("Queued") == 2, status
    dvc("queue", "start", "-j", "1")
    deadline = time.monotonic() + 900
    while True:
        status = dvc("queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        assert time.monotonic() < deadline, f"the queue did not finish:\n{status}"
        time.sleep(5)
    assert status.count("Success") == 2, status

    exps = experiments(json.loads(dvc("exp", "show", "--json")))
    assert len(exps) == 2, exps
    for exp in exps:
        tree = run(["git", "ls-tree", "-r", "--name-only", exp["rev"]], repo, env=e).stdout.split()
        assert "runs/seed_7/dvclive/dvc.yaml" in tree, (sorted(exp["data"]["metrics"]), tree)
    lrs, scores, curves = set(), set(), set()
    for exp in exps:
        data = exp["data"]
        lrs.add(data["params"]["params.yaml"]["data"]["train"]["matrix_lr"])
        metrics = data["metrics"]
        scores.add(metrics["metrics/seeds/seed_7.json"]["data"]["sliding_bpb"])
        # The dvclive metrics of the seed, found through its own dvc.yaml in the experiment commit.
        curves.add(metrics["runs/seed_7/dvclive/metrics.json"]["data"]["final_train_loss"])
    assert lrs == {0.02, 0.03}
    assert len(scores) == 2 and len(curves) == 2, (scores, curves)

    # `dvc plots diff exp1 exp2`: the seed's curves of both experiments, no error.
    names = [exp["name"] for exp in exps]
    diff = json.loads(dvc("plots", "diff", *names, "--json"))
    assert not diff.get("errors"), diff["errors"]
    for curve in ("train/train_loss", "train/lr_mul", "val/val_bpb"):
        plot = diff["data"][f"runs/seed_7/dvclive/plots/metrics/{curve}.tsv"]
        assert set(plot[0]["revisions"]) == set(names), plot[0]["revisions"]

    table = dvc("exp", "show", "--only-changed", "--no-pager", "--md")
    assert "train.matrix_lr" in table and "0.02" in table and "0.03" in table, table
    header = table.splitlines()[0]
    # Params equal in every row (the baseline commit's record params included) are left out.
    assert "data.hub_repo" not in header and "train.iterations" in header, header
    Path(tmp_path / "table.md").write_text(table)
