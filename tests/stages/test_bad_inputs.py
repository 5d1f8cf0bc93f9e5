"""Bad inputs a user can cause, through the CLI: one line on stderr, exit 1, nothing changed on disk.

One tiny seed is taken through train, swa, quantize and evaluate once; every
test works on a copy of that workspace, damages one thing the way a user (or
a crash, or a bad disk) would, runs the stage, and checks the exact message
and that every file is as it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pipeline.data.layout import DataLayout
from pipeline.data.shards import read_shard, write_shard
from pipeline.layout import MetricsLayout, RunLayout, seed_dir
from stages.cli import app
from tests.conftest import ROOT
from tests.train.helpers import tiny_params, write_params

runner = CliRunner()
SEED = 3


def invoke(*args: str):
    return runner.invoke(app, list(args))


def one_line(result) -> str:
    """The single stderr line of a failed command (exit 1), without the `pgolf: error: ` prefix."""
    assert result.exit_code == 1, (result.exit_code, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pgolf: error: "), lines[0]
    return lines[0][len("pgolf: error: "):]


def tree(root: Path) -> dict[str, str]:
    """Every file and directory under `root`: its sha256, or 'dir'."""
    return {p.relative_to(root).as_posix(): ("dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def trained(record_params, embedded_data, tmp_path_factory):
    """A workspace (data/, runs/, metrics/, params.yaml with relative paths) after one seed's stages."""
    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(embedded_data.layout.root, root / "data")
    p = tiny_params(record_params, Path("data"), Path("runs"), seeds=(SEED,),
                    train=dict(iterations=8, warmdown_iters=4))
    write_params(p, root / "params.yaml")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    for stage in ("train", "swa", "quantize", "evaluate"):
        result = invoke(stage, "--seed", str(SEED), "--params", "params.yaml")
        assert result.exit_code == 0, (stage, result.output)
    mp.undo()
    assert not [p for p in root.rglob(".pgolf-probe.*")]  # the checks before each stage leave nothing behind
    return root, p


@pytest.fixture()
def ws(trained, tmp_path, monkeypatch):
    """A private copy of the trained workspace, as the working directory: (root, params, run layout)."""
    root, p = trained
    copy = tmp_path / "ws"
    shutil.copytree(root, copy)
    monkeypatch.chdir(copy)
    return copy, p, RunLayout(seed_dir(Path("runs"), SEED))


def params_with(ws_root: Path, p, name: str = "alt.yaml", **groups) -> str:
    """Write `p` with some groups replaced (`train={"out_dir": ...}`) to `name`; return its path."""
    changed = {g: dataclasses.replace(getattr(p, g), **v) for g, v in groups.items()}
    write_params(dataclasses.replace(p, **changed), ws_root / name)
    return name


# --------------------------------------------------------------------------- fail before the work


def test_evaluate_out_on_a_directory_fails_before_scoring(ws):
    root, _, _ = ws
    (root / "reports").mkdir()
    before = tree(root)
    message = one_line(invoke("evaluate", "--seed", str(SEED), "--params", "params.yaml", "--out", "reports"))
    assert message == "--out: reports is a directory, expected a file path"
    assert tree(root) == before


def test_train_out_dir_under_a_file_fails_before_training(ws):
    root, p, _ = ws
    (root / "notes.txt").write_text("mine\n")
    params = params_with(root, p, train={"out_dir": "notes.txt/runs"})
    before = tree(root)
    message = one_line(invoke("train", "--seed", str(SEED), "--params", params))
    assert message == f"train.out_dir: cannot create notes.txt/runs/seed_{SEED}/train_summary.json: notes.txt is not a directory"
    assert tree(root) == before


def test_unwritable_train_out_dir_fails_before_training(ws):
    root, p, _ = ws
    locked = root / "locked"
    locked.mkdir()
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i unavailable: no way to make a directory unwritable for this user")
    try:
        params = params_with(root, p, train={"out_dir": "locked/runs"})
        before = tree(root)
        message = one_line(invoke("train", "--seed", str(SEED), "--params", params))
        assert message == (f"train.out_dir: cannot create locked/runs/seed_{SEED}/train_summary.json: "
                           "locked is not writable (Operation not permitted)")
        assert tree(root) == before
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)


def test_quantize_into_a_directory_named_like_its_output(ws):
    root, _, run = ws
    run.size_report.unlink()
    run.size_report.mkdir()
    before = tree(root)
    message = one_line(invoke("quantize", "--seed", str(SEED), "--params", "params.yaml"))
    assert message == f"train.out_dir: {run.size_report} is a directory, expected a file path"
    assert tree(root) == before


def test_missing_earlier_stage_output_names_the_command(ws):
    root, _, run = ws
    run.train_summary.unlink()
    before = tree(root)
    message = one_line(invoke("evaluate", "--seed", str(SEED), "--params", "params.yaml"))
    assert message == f"{run.train_summary}: missing (run `pgolf train --seed {SEED}` first)"
    assert tree(root) == before


def test_prepare_with_data_out_dir_on_a_file(ws):
    root, p, _ = ws
    (root / "data.bin").write_bytes(b"x")
    params = params_with(root, p, data={"out_dir": "data.bin"})
    before = tree(root)
    assert one_line(invoke("prepare", "--params", params)) == "data.out_dir: data.bin is a file, expected a directory"
    assert tree(root) == before


# --------------------------------------------------------------------------- guarded readers


class Holder:
    """A class: pickled inside a .pt, only code could rebuild it."""


@pytest.mark.parametrize("damage, expected", [
    ("truncate", "{path}: truncated or corrupt: not a complete torch archive"),
    ("empty", "{path}: truncated: the file ends early"),
    ("list", "{path}: the file is list, expected a state dict (parameter name -> tensor)"),
    ("object", "{path}: refused: it holds {holder}, which only code could rebuild "
               "(pgolf loads weights only)"),
])
def test_damaged_averaged_weights(ws, damage, expected):
    root, _, run = ws
    path = run.averaged
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:300])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "list":
        torch.save([torch.zeros(1)], path)
    else:
        torch.save({"w": Holder()}, path)
    before = tree(root)
    holder = f"{Holder.__module__}.Holder"
    assert one_line(invoke("quantize", "--seed", str(SEED), "--params", "params.yaml")) == expected.format(
        path=path, holder=holder)
    assert tree(root) == before


def test_snapshots_without_states(ws):
    root, p, run = ws
    torch.save({"steps": [2, 4]}, run.snapshots)
    before = tree(root)
    message = one_line(invoke("swa", "--seed", str(SEED), "--params", "params.yaml"))
    assert message == f"{run.snapshots}: expected a dict with 'steps' and 'states' (SWA snapshots)"
    assert tree(root) == before


@pytest.mark.parametrize("content, expected", [
    ('{"size": {"model_bytes": 1, "code_bytes": 2}}', "{path}: no 'size.total_bytes' field"),
    ('{"size": {"model_bytes": 1, "code_bytes": "2", "total_bytes": 3}}',
     "{path}: 'size.code_bytes' is \"2\", expected an integer"),
    ("[1, 2]", "{path}: expected a JSON object, got list"),
    ('{"size": ', "{path}: not valid JSON (Expecting value at line 1, column 10)"),
])
def test_damaged_size_report_fails_before_scoring(ws, content, expected):
    root, _, run = ws
    run.size_report.write_text(content)
    before = tree(root)
    message = one_line(invoke("evaluate", "--seed", str(SEED), "--params", "params.yaml"))
    assert message == expected.format(path=run.size_report)
    assert tree(root) == before


def test_train_summary_with_a_string_step_count(ws):
    root, _, run = ws
    summary = json.loads(run.train_summary.read_text())
    summary["steps"] = "8"
    run.train_summary.write_text(json.dumps(summary))
    before = tree(root)
    message = one_line(invoke("evaluate", "--seed", str(SEED), "--params", "params.yaml"))
    assert message == f"{run.train_summary}: 'steps' is \"8\", expected an integer"
    assert tree(root) == before


@pytest.mark.parametrize("content, expected", [
    ('{"seed": 3}', "{path}: no 'sliding_bpb' field"),
    ('{"seed": 3, "sliding_bpb": NaN}', "{path}: 'sliding_bpb' is nan, expected a finite number"),
    ('{"seed": 4, "sliding_bpb": 1.2}', "{path}: holds the metrics of seed 4, not 3"),
    (b"\xff\xfe{}", "{path}: not UTF-8 text (byte 0)"),
])
def test_damaged_seed_metrics_in_report(ws, content, expected):
    root, _, _ = ws
    path = MetricsLayout().seed(SEED)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = tree(root)
    assert one_line(invoke("report", "--params", "params.yaml")) == expected.format(path=path)
    assert tree(root) == before


def test_manifest_prepared_for_another_vocab(ws):
    root, p, _ = ws
    manifest = DataLayout(Path("data")).manifest
    data = json.loads(manifest.read_text())
    data["tokenizer"]["vocab_size"] = 512
    manifest.write_text(json.dumps(data))
    before = tree(root)
    message = one_line(invoke("evaluate", "--seed", str(SEED), "--params", "params.yaml"))
    assert message == (f"{manifest}: the data was prepared with vocab 512 but model.vocab_size is "
                       f"{p.model.vocab_size} (run `pgolf prepare` again)")
    assert tree(root) == before


def test_token_id_beyond_the_vocab_names_the_shard(ws):
    root, p, _ = ws
    shard = DataLayout(Path("data")).val_files()[0]
    tokens = np.array(read_shard(shard))
    tokens[10] = p.model.vocab_size + 5
    write_shard(shard, tokens)
    before = tree(root)
    message = one_line(invoke("evaluate", "--seed", str(SEED), "--params", "params.yaml"))
    assert message == f"{shard}: holds token id {p.model.vocab_size + 5}, not below model.vocab_size={p.model.vocab_size}"
    assert tree(root) == before


def test_byte_flipped_tokenizer(ws):
    """A flipped byte inside a piece's text: SentencePiece loads the model, then fails to decode the piece."""
    import sentencepiece as spm

    root, _, _ = ws
    path = DataLayout(Path("data")).tokenizer
    good = path.read_bytes()
    for index in range(len(good)):
        flipped = bytearray(good)
        flipped[index] ^= 0xFF
        path.write_bytes(bytes(flipped))
        try:
            sp = spm.SentencePieceProcessor(model_file=str(path))
            [sp.id_to_piece(i) for i in range(sp.vocab_size())]
        except UnicodeDecodeError as exc:
            reason = f"UnicodeDecodeError: {exc}"
            break
        except RuntimeError:
            continue
    else:
        pytest.fail("no single byte flip gives a UnicodeDecodeError")
    before = tree(root)
    message = one_line(invoke("evaluate", "--seed", str(SEED), "--params", "params.yaml"))
    assert message == f"{path}: not a SentencePiece model ({reason})"
    assert tree(root) == before


# --------------------------------------------------------------------------- garbage refused


def test_nan_weights_are_refused_by_quantize_and_evaluate(ws):
    root, _, run = ws
    state = torch.load(run.averaged, weights_only=True)
    state["blocks.1.mlp.proj.weight"][0, 3] = float("nan")
    torch.save(state, run.averaged)
    before = tree(root)
    expected = f"{run.averaged}: tensor 'blocks.1.mlp.proj.weight' holds 1 non-finite value(s) (NaN or inf)"
    assert one_line(invoke("quantize", "--seed", str(SEED), "--params", "params.yaml")) == expected
    assert one_line(invoke("evaluate", "--seed", str(SEED), "--params", "params.yaml")) == expected
    assert tree(root) == before


def test_weights_of_another_shape_are_refused(ws):
    root, p, run = ws
    state = torch.load(run.averaged, weights_only=True)
    state["tok_emb.weight"] = torch.zeros(p.model.vocab_size, 32)
    torch.save(state, run.averaged)
    before = tree(root)
    message = one_line(invoke("quantize", "--seed", str(SEED), "--params", "params.yaml"))
    assert message == (f"{run.averaged}: weights do not fit the configured model (params `model`): tensor "
                       f"'tok_emb.weight' has shape [{p.model.vocab_size}, 32], expected "
                       f"[{p.model.vocab_size}, {p.model.model_dim}]")
    assert tree(root) == before


def test_checkpoint_with_an_extra_tensor_is_refused(ws):
    root, _, run = ws
    state = torch.load(run.final_weights, weights_only=True)
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, root / "mine.pt")
    before = tree(root)
    message = one_line(invoke("evaluate", "--checkpoint", "mine.pt", "--out", "mine.json", "--params", "params.yaml"))
    assert message == ("mine.pt: weights do not fit the configured model (params `model`): tensor 'extra.weight' "
                       "is not one of its parameters")
    assert tree(root) == before


# --------------------------------------------------------------------------- several processes, one line


def test_a_user_error_under_torchrun_is_one_line(ws):
    """nproc_per_node 2 on CPU (gloo): the launcher re-runs the stage under torchrun; NaN weights are
    found by both ranks after the launch, and the user sees rank 0's line only, no torchrun report."""
    root, p, run = ws
    params = params_with(root, p, train={"nproc_per_node": 2})
    state = torch.load(run.averaged, weights_only=True)
    state["skip_weights"][0, 0] = float("inf")
    torch.save(state, run.averaged)
    (root / "mine.pt").write_bytes(run.averaged.read_bytes())
    before = tree(root)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OMP_NUM_THREADS", None)
    result = subprocess.run([sys.executable, "-m", "stages.cli", "evaluate", "--checkpoint", "mine.pt",
                             "--out", "mine.json", "--params", params],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        "pgolf: error: mine.pt: tensor 'skip_weights' holds 1 non-finite value(s) (NaN or inf)"]
    assert result.stdout == ""
    assert tree(root) == before
