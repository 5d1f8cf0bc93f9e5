"""dvc.yaml: each stage reads only its params, depends on its code and its
upstream outputs, writes where pipeline.layout says; and (slow) DVC re-runs
exactly the stages a parameter change touches."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.layout import MetricsLayout, RunLayout, seed_dir
from pipeline.stage_code import stage_code
from pipeline.stage_params import STAGE_PARAMS

ROOT = Path(__file__).resolve().parents[1]
BIN = str(Path(sys.executable).parent)  # dvc and pgolf live next to this interpreter

# The contract of every stage: the params it reads (one list, also behind the stage digests).
PARAMS = {stage: set(keys) for stage, keys in STAGE_PARAMS.items()}
def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = BIN + os.pathsep + e.get("PATH", "")
    e["DVC_NO_ANALYTICS"] = "1"
    for kind in ("AUTHOR", "COMMITTER"):
        e.setdefault(f"GIT_{kind}_NAME", "pgolf test")
        e.setdefault(f"GIT_{kind}_EMAIL", "test@pgolf.invalid")
    return e


def run(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=kw.pop("env", env()), capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def record_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def stages():
    """The resolved stages of dvc.yaml under the committed params (name -> Stage)."""
    from dvc.repo import Repo

    repo = Repo(str(ROOT))
    try:
        return {stage.name: stage for stage in repo.index.stages}
    finally:
        repo.close()


def params_of(stage) -> set[str]:
    from dvc.dependency.param import ParamsDependency

    found = set()
    for dep in stage.deps:
        if isinstance(dep, ParamsDependency):
            assert dep.def_path == "params.yaml"
            found |= set(dep.params)
    return found


def paths(items) -> set[str]:
    from dvc.dependency.param import ParamsDependency

    return {str(i.def_path) for i in items if not isinstance(i, ParamsDependency)}


def group(name: str) -> str:
    return name.split("@")[0]


# --------------------------------------------------------------------------- static


def test_one_instance_per_seed(stages, record_params):
    seeds = record_params["seeds"]
    expected = {"prepare", "report"} | {f"{s}@{seed}" for s in ("train", "swa", "quantize", "evaluate")
                                         for seed in seeds}
    assert set(stages) == expected


def test_each_stage_reads_only_its_params(stages):
    for name, stage in stages.items():
        assert params_of(stage) == PARAMS[group(name)], name


def test_parameter_groups_reach_only_the_stages_that_read_them(stages):
    """What a change re-runs directly (downstream stages follow through their deps)."""
    def readers(key: str) -> set[str]:
        top = key.split(".")[0]
        return {group(n) for n, s in stages.items() if params_of(s) & {key, top}}

    assert readers("eval.stride") == {"evaluate"}
    assert "prepare" not in readers("model.num_layers")
    assert readers("swa.method") == {"swa"} and readers("swa.last_k") == {"swa"}
    assert readers("swa.min_snapshots") == {"swa"}
    assert readers("swa.every") == {"train"}
    assert readers("data.val_docs") == {"prepare"}


def covered(path: str, deps: set[str]) -> bool:
    """`path` is a dependency itself or lies inside a dependency directory."""
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def code_deps(stage) -> set[str]:
    return {p for p in paths(stage.deps) if p == "pipeline" or p.startswith(("pipeline/", "stages/"))}


def test_each_stage_depends_on_the_code_it_imports(stages):
    """dvc.yaml's code deps are the stage's import closure (pipeline/stage_code.py): every module it
    imports is covered, and every code dep holds at least one of them (a directory may stand for
    more than is needed: quantize's `pipeline`)."""
    for name, stage in stages.items():
        deps, needed = code_deps(stage), stage_code(group(name))
        missing = [p for p in needed if not covered(p, deps)]
        assert not missing, f"{name} lacks code deps {missing} (`python -m pipeline.stage_code --write` adds them)"
        stale = sorted(d for d in deps if not any(covered(p, {d}) for p in needed))
        assert not stale, f"{name}: code deps {stale} are not imported by the stage"
        for dep in deps:
            assert (ROOT / dep).exists(), f"{name}: code dependency {dep} does not exist"


def test_stage_code_follows_imports_inside_functions():
    assert {"pipeline/config.py", "pipeline/layout.py", "pipeline/train/averaging.py", "stages/swa.py",
            "stages/common.py"} <= set(stage_code("swa"))
    assert "pipeline/train/qat.py" in stage_code("train") and "pipeline/model/naming.py" in stage_code("train")
    assert "pipeline/export/script.py" in stage_code("quantize")
    assert not any(p.startswith(("pipeline/model/", "pipeline/optim/")) for p in stage_code("prepare"))
    assert "stages/train.py" not in stage_code("evaluate")


def test_quantize_depends_on_every_file_its_size_counts(stages):
    from pipeline.export.closure import code_files

    quantize = next(s for n, s in stages.items() if group(n) == "quantize")
    files = code_files()
    assert files
    for item in files:
        assert covered(item.path, paths(quantize.deps)), item.path


def test_outputs_and_upstream_deps_follow_the_layout(stages, record_params):
    data = record_params["data"]["out_dir"]
    runs = Path(record_params["train"]["out_dir"])
    metrics = MetricsLayout()
    assert paths(stages["prepare"].outs) == {data}
    for seed in record_params["seeds"]:
        run = RunLayout(seed_dir(runs, seed))
        s = lambda name: stages[f"{name}@{seed}"]  # noqa: E731
        assert paths(s("train").outs) == {str(run.train_dir), str(run.train_summary),
                                          str(run.live_dir / "metrics.json"), str(run.live_dir / "plots")}
        assert data in paths(s("train").deps)
        assert paths(s("swa").outs) == {str(run.averaged)}
        assert str(run.train_dir) in paths(s("swa").deps)
        assert paths(s("quantize").outs) == {str(run.artifact), str(run.size_report)}
        assert str(run.averaged) in paths(s("quantize").deps)
        assert paths(s("evaluate").outs) == {str(metrics.seed(seed))}
        # train/ holds the final weights: the pre-quantisation figure of the live weights.
        assert {str(run.artifact), str(run.averaged), str(run.train_dir), str(run.train_summary),
                str(run.size_report), data} <= paths(s("evaluate").deps)
    assert paths(stages["report"].outs) == {str(metrics.summary), str(metrics.summary_table)}
    assert str(metrics.seeds_dir) in paths(stages["report"].deps)


def test_metrics_and_plots_are_uncached_and_typed(stages):
    for name, stage in stages.items():
        for out in stage.outs:
            small = Path(str(out.def_path)).name == "train_summary.json" or "/dvclive/" in str(out.def_path)
            if out.metric or out.plot or small or str(out.def_path).startswith("metrics/"):
                assert not out.use_cache, f"{name}: {out.def_path} should be cache: false"
            else:
                assert out.use_cache, f"{name}: {out.def_path} should be cached"
    train = next(s for n, s in stages.items() if group(n) == "train")
    # The curves and the train metrics are declared by dvclive's own dvc.yaml in each seed's
    # dvclive/ directory (tests/train/test_curves.py), not by the stage.
    assert not [o for o in train.outs if o.metric or o.plot]


def test_uncached_outputs_are_committed_and_cached_ones_ignored(stages):
    uncached = [str(o.def_path) for s in stages.values() for o in s.outs if not o.use_cache]
    cached = [str(o.def_path) for s in stages.values() for o in s.outs if o.use_cache]
    check = lambda p: run(["git", "check-ignore", "-q", "--no-index", p], ROOT).returncode == 0  # noqa: E731
    for path in uncached:
        assert not check(path), f"{path} is git-ignored: experiments would not record it"
    for path in cached:  # a file, or a directory (git matches `/data/` only below it)
        assert check(path) or check(f"{path}/x"), f"{path} is not git-ignored"
    assert check("runs/seed_1337/work/resume.pt")


def test_dvc_config_links_the_cache_and_enables_hydra():
    from dvc.repo import Repo

    repo = Repo(str(ROOT))
    try:
        assert repo.config["cache"]["type"] == ["hardlink", "symlink"]
        assert repo.config["hydra"]["enabled"] is True
    finally:
        repo.close()
    ignore = (ROOT / ".dvcignore").read_text(encoding="utf-8").split()
    assert "__pycache__/" in ignore and "*.pyc" in ignore


def test_stage_list_and_dag(stages, record_params):
    listed = run(["dvc", "stage", "list", "--name-only"], ROOT)
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == set(stages)
    dag = run(["dvc", "dag", "--dot"], ROOT)
    assert dag.returncode == 0, dag.stderr
    edges = set(re.findall(r'"([^"]+)" -> "([^"]+)"', dag.stdout))
    for seed in record_params["seeds"]:
        chain = ["prepare", f"train@{seed}", f"swa@{seed}", f"quantize@{seed}", f"evaluate@{seed}", "report"]
        assert set(zip(chain, chain[1:])) <= edges
        assert ("prepare", f"evaluate@{seed}") in edges  # validation shards and tokenizer
    # Seeds are independent of each other.
    assert not [(a, b) for a, b in edges if "@" in a and "@" in b and a.split("@")[1] != b.split("@")[1]]


# --------------------------------------------------------------------------- dynamic

MICRO = """\
# @package _global_
defaults:
  - smoke
  - _self_
seeds: [7]
model:
  num_layers: 2
  xsa_last_n: 1
  canon:
    last_n: 2
  lanes:
    start_layer: 1     # the smoke profile's lanes and recurrence, within two layers
train:
  iterations: 12
  warmup_steps: 0
  warmdown_iters: 10
  muon_momentum_warmup_steps: 5
  val_loss_every: 6
  val_max_tokens: 1024
swa:
  every: 1
  max_snapshots: 3
eval:
  stride: 64
  max_tokens: 2048
"""


def copy_repo(dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked, not ignored), minus run outputs."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT)
    assert listed.returncode == 0, listed.stderr
    for rel in filter(None, listed.stdout.split("\0")):
        if rel.split("/")[0] in ("data", "runs", "metrics") or rel == "dvc.lock":
            continue
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def micro_repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A committed copy of the project with the micro profile, and the environment that runs the
    copy's code (the code DVC hashes)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repo(repo)
    (repo / "conf" / "profile" / "micro.yaml").write_text(MICRO, encoding="utf-8")
    e = env()
    e["PYTHONPATH"] = str(repo)
    for args in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "micro"]):
        assert run(args, repo, env=e).returncode == 0
    return repo, e


@pytest.mark.slow
def test_dvc_reruns_only_what_a_change_touches(tmp_path):
    repo, e = micro_repo(tmp_path)

    def dvc(*args: str) -> str:
        r = run(["dvc", *args], repo, env=e, timeout=600)
        assert r.returncode == 0, f"dvc {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
        return r.stdout + r.stderr

    everything = {"prepare", "train@7", "swa@7", "quantize@7", "evaluate@7", "report"}

    out = dvc("exp", "run", "-S", "profile=micro")
    assert ran(out) == everything, out
    assert json.loads((repo / "metrics" / "seeds" / "seed_7.json").read_text())
    assert json.loads((repo / "metrics" / "summary.json").read_text())

    # cache.type hardlink,symlink on one filesystem: every cached output in the workspace is a
    # hard link to its cache file (the same inode), not a copy and not a symlink.
    cache = {f.stat().st_ino for f in (repo / ".dvc" / "cache").rglob("*") if f.is_file()}
    run7 = RunLayout(seed_dir(repo / "runs", 7))
    cached = [f for f in (repo / "data").rglob("*") if f.is_file()] + [run7.averaged, run7.artifact]
    assert len(cached) >= 4
    for f in cached:
        assert not f.is_symlink() and f.stat().st_nlink >= 2 and f.stat().st_ino in cache, f

    # Experiment refs are refs/exps/<baseline hash split 2/38>/<name>; refs/exps/exec/* (DVC's
    # bookkeeping, e.g. EXEC_BASELINE: the baseline commit itself) are left out.
    refs = run(["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"], repo, env=e).stdout
    ref = next(obj for name, obj in (line.split() for line in refs.splitlines()) if "/exec/" not in name)

    # Nothing changed: nothing runs.
    assert json.loads(dvc("status", "--json") or "{}") == {}
    out = dvc("exp", "run", "-S", "profile=micro")
    assert ran(out) == set(), out

    # The first experiment's commit (the one whose stages ran) carries the uncached metrics and plots.
    tree = run(["git", "ls-tree", "-r", "--name-only", ref], repo, env=e).stdout.split()
    assert {"metrics/seeds/seed_7.json", "metrics/summary.json", "runs/seed_7/dvclive/metrics.json",
            "runs/seed_7/dvclive/dvc.yaml", "runs/seed_7/dvclive/plots/metrics/train/train_loss.tsv",
            "runs/seed_7/train_summary.json", "dvc.lock", "params.yaml"} <= set(tree)

    # An eval parameter: only evaluate (and report, if the score moved).
    out = dvc("exp", "run", "-S", "profile=micro", "-S", "eval.stride=32")
    assert "evaluate@7" in ran(out) and ran(out) <= {"evaluate@7", "report"}, out

    # Which stages a change reaches directly (`dvc status`: their own params or deps
    # changed; everything downstream of them follows through the DAG).
    def touched(*overrides: str) -> set[str]:
        compose = [sys.executable, str(repo / "scripts" / "compose-params"), "profile=micro", *overrides]
        assert run(compose, repo, env=e).returncode == 0
        return set(json.loads(dvc("status", "--json") or "{}"))

    assert touched("eval.stride=32") == set()  # the state of the last experiment
    assert touched("eval.stride=32", "model.mlp_mult=3") == {"train@7", "quantize@7", "evaluate@7"}  # not prepare
    assert touched("eval.stride=32", "swa.method=ema") == {"swa@7"}  # not train
    assert touched("eval.stride=32", "quant.zstd_level=3") == {"quantize@7"}


def test_stage_code_write_restores_a_removed_code_dep():
    """`python -m pipeline.stage_code --write` puts a missing module back into the stage that imports
    it, and leaves a dvc.yaml whose code deps already match untouched (comments included)."""
    from pipeline.stage_code import rewrite_dvc_yaml

    text = (ROOT / "dvc.yaml").read_text()
    assert rewrite_dvc_yaml(text) == text
    line = "      - pipeline/data/tokenizer.py\n"
    assert line in text
    broken = text.replace(line, "", 1)
    repaired = rewrite_dvc_yaml(broken)
    assert repaired.count(line) == text.count(line)
    assert len(repaired.splitlines()) == len(text.splitlines())
