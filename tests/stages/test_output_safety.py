"""No user file is deleted, a killed prepare leaves old-or-new, one prepare per data directory.

Each case is caused the way a user would (a params file, the CLI) and checks the
exact one-line message and that nothing else on disk changed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.atomic import OUTPUT_MARKER
from stages.cli import app
from tests.data.helpers import SMALL_VOCAB, data_config, pydoc_paragraphs, small_tokenizer, write_jsonl, write_params
from tests.stages.disk_state import disk_state, killed_at, one_line_error, stop_at

runner = CliRunner()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Path:
    return small_tokenizer(tmp_path_factory.mktemp("tok") / "sp.model")


@pytest.fixture()
def workspace(tmp_path, monkeypatch) -> Path:
    """A workspace with code-like folders of its own, so a refusal can be seen to spare them."""
    for name in ("pipeline", "stages", "conf", ".git", ".dvc"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "keep.txt").write_text(f"{name} of the user\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def params_with(workspace: Path, tokenizer: Path, docs: int = 300, **keys: str) -> Path:
    """A params file of the files source (prepare takes about a second); `keys`: dotted key -> value."""
    corpus = write_jsonl(workspace / "corpus" / f"c{docs}.jsonl", pydoc_paragraphs(docs))
    cfg = data_config(source="files", files=[corpus], out_dir="data", val_docs=5, shard_tokens=10_000,
                      tokenizer={"vocab_size": SMALL_VOCAB, "model_path": str(tokenizer)})
    path = write_params(workspace / "params.yaml", cfg)
    raw = yaml.safe_load(path.read_text())
    for dotted, value in keys.items():
        group, key = dotted.split(".")
        raw[group][key] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def prepare(params: Path):
    return runner.invoke(app, ["prepare", "--params", str(params)])


INSIDE = ("must be a directory inside the workspace {ws} (the directory of the params file), "
          "not the workspace itself or outside it (got {value!r})")
PROTECTED = "must not be or lie inside {name}/, which holds pgolf's code or repository metadata (got {value!r})"


@pytest.mark.parametrize(("key", "value", "why"), [
    ("data.out_dir", "", INSIDE),
    ("data.out_dir", ".", INSIDE),
    ("data.out_dir", "..", INSIDE),
    ("data.out_dir", "data/../..", INSIDE),
    ("data.out_dir", "../elsewhere", INSIDE),
    ("data.out_dir", "{outside}", INSIDE),
    ("data.out_dir", "{ws}", INSIDE),
    ("data.out_dir", "pipeline", PROTECTED.replace("{name}", "pipeline")),
    ("data.out_dir", "stages/data", PROTECTED.replace("{name}", "stages")),
    ("data.out_dir", "conf", PROTECTED.replace("{name}", "conf")),
    ("data.out_dir", ".git", PROTECTED.replace("{name}", ".git")),
    ("data.out_dir", "{ws}/.dvc/cache", PROTECTED.replace("{name}", ".dvc")),
    ("data.out_dir", "mine/.git", PROTECTED.replace("{name}", ".git")),
    ("train.out_dir", ".", INSIDE),
    ("train.out_dir", "{outside}", INSIDE),
    ("train.out_dir", "pipeline/runs", PROTECTED.replace("{name}", "pipeline")),
])
def test_output_dirs_outside_the_workspace_or_over_its_code_are_refused_at_load(
        workspace, tokenizer, key, value, why):
    value = value.format(ws=workspace, outside=workspace.parent / "outside")
    params = params_with(workspace, tokenizer, **{key: value})
    before = disk_state(workspace)
    for command in (["prepare"], ["train", "--seed", "1"], ["report"]):
        result = runner.invoke(app, [*command, "--params", str(params)])
        assert result.exit_code == 1, result.output
        line = one_line_error(result.stderr)
        assert line == f"pgolf: error: {params}: {key}: " + why.format(ws=workspace, value=value)
    assert disk_state(workspace) == before
    assert not (workspace.parent / "outside").exists()


def test_overlapping_output_dirs_are_refused(workspace, tokenizer):
    params = params_with(workspace, tokenizer, **{"train.out_dir": "data/runs"})
    before = disk_state(workspace)
    result = prepare(params)
    assert result.exit_code == 1
    assert one_line_error(result.stderr) == (f"pgolf: error: {params}: train.out_dir: must not overlap data.out_dir "
                                             "(got 'data/runs' and 'data')")
    assert disk_state(workspace) == before


def test_a_folder_of_the_user_is_never_replaced(workspace, tokenizer):
    (workspace / "mine").mkdir()
    (workspace / "mine" / "thesis.tex").write_text("years of work\n")
    params = params_with(workspace, tokenizer, **{"data.out_dir": "mine"})
    before = disk_state(workspace)
    result = prepare(params)
    assert result.exit_code == 1
    assert one_line_error(result.stderr) == ("pgolf: error: mine: exists and was not written by pgolf "
                                             f"(no {OUTPUT_MARKER} marker inside); refusing to replace it")
    assert disk_state(workspace) == before

    (workspace / "mine" / "thesis.tex").unlink()  # an empty folder holds nothing to lose: it is used
    assert prepare(params).exit_code == 0
    assert (workspace / "mine" / OUTPUT_MARKER).read_text().startswith("pgolf-output: data\n")


def test_a_second_run_replaces_its_own_output(workspace, tokenizer):
    params = params_with(workspace, tokenizer)
    assert prepare(params).exit_code == 0
    first = disk_state(workspace / "data")
    assert first[OUTPUT_MARKER] and "manifest.json" in first
    params = params_with(workspace, tokenizer, docs=200)
    assert prepare(params).exit_code == 0
    assert disk_state(workspace / "data") != first
    assert sorted(p.name for p in workspace.iterdir() if p.name.startswith(".data")) == []


# --------------------------------------------------------------------------- kills


def _leftovers(workspace: Path) -> list[str]:
    """Temp names next to data/ (a killed prepare also leaves its lock file, taken over by the next)."""
    return sorted(p.name for p in workspace.iterdir() if p.name.startswith(".data.") and p.name != LOCK)


LOCK = ".data.pgolf-lock"


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_prepare_killed_before_the_swap_keeps_the_old_output_then_cleans_up(workspace, tokenizer, exchange):
    params = params_with(workspace, tokenizer)
    assert prepare(params).exit_code == 0
    old = disk_state(workspace / "data")
    new_params = params_with(workspace, tokenizer, docs=200)
    killed_at("dir-built:data", "prepare", "--params", str(new_params), cwd=workspace, exchange=exchange)
    assert disk_state(workspace / "data") == old
    (left,) = _leftovers(workspace)
    assert left.startswith(".data.") and left.endswith(".tmp")

    assert (workspace / LOCK).is_file()  # the killed holder's; the kernel released its lock
    assert prepare(new_params).exit_code == 0  # the next run removes what the killed one left
    assert _leftovers(workspace) == [] and disk_state(workspace / "data") != old
    assert not (workspace / LOCK).exists()


def test_prepare_killed_right_after_the_exchange_has_the_new_output(workspace, tokenizer):
    params = params_with(workspace, tokenizer)
    assert prepare(params).exit_code == 0
    old = disk_state(workspace / "data")
    new_params = params_with(workspace, tokenizer, docs=200)
    killed_at("dir-exchanged:data", "prepare", "--params", str(new_params), cwd=workspace)
    new = disk_state(workspace / "data")
    assert new != old and "manifest.json" in new
    assert len(_leftovers(workspace)) == 1  # the old output, under a temp name
    assert prepare(new_params).exit_code == 0
    assert _leftovers(workspace) == [] and disk_state(workspace / "data") == new  # same input, same bytes


def test_prepare_killed_between_the_two_renames_is_recovered(workspace, tokenizer):
    """Without renameat2 the old directory is set aside first: a kill there leaves no data/ at all,
    and the next run puts the old one back before anything else."""
    params = params_with(workspace, tokenizer)
    assert prepare(params).exit_code == 0
    old = disk_state(workspace / "data")
    new_params = params_with(workspace, tokenizer, docs=200)
    killed_at("dir-old-aside:data", "prepare", "--params", str(new_params), cwd=workspace, exchange=False)
    assert not (workspace / "data").exists()
    assert sorted(name.rsplit(".", 1)[1] for name in _leftovers(workspace)) == ["old", "tmp"]
    # the next run restores the old output, then (killed again before its own swap) leaves it there
    killed_at("dir-built:data", "prepare", "--params", str(new_params), cwd=workspace, exchange=False)
    assert disk_state(workspace / "data") == old


# --------------------------------------------------------------------------- lock


def test_a_second_prepare_of_the_same_data_directory_exits_at_once(workspace, tokenizer):
    params = params_with(workspace, tokenizer)
    first = stop_at("pause", "dir-built:data", "prepare", "--params", str(params), cwd=workspace)
    try:
        assert first.stdout.readline() == "paused at dir-built:data\n"
        before = disk_state(workspace)
        result = prepare(params)
        assert result.exit_code == 1
        assert one_line_error(result.stderr) == (
            f"pgolf: error: data: in use by another pgolf process (pid {first.pid}, lock file "
            ".data.pgolf-lock); wait for it to finish")
        assert disk_state(workspace) == before
    finally:
        first.stdin.close()
    assert first.wait(timeout=300) == 0
    assert not (workspace / ".data.pgolf-lock").exists()  # released and removed
    assert (workspace / "data" / "manifest.json").is_file()
