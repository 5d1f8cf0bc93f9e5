"""train -> swa -> quantize -> evaluate -> report (--export) through the CLI, on two tiny seeds."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipeline.layout import MetricsLayout, RunLayout, seed_dir
from stages.cli import app
from tests.train.helpers import link_data, tiny_params, write_params

runner = CliRunner()
pytestmark = pytest.mark.slow  # the module fixture trains two seeds through every stage
SEEDS = (11, 12)


def invoke(*args: str):
    return runner.invoke(app, [*args])


@pytest.fixture(scope="module")
def workspace(record_params, embedded_data, tmp_path_factory):
    """Two seeds through every stage, in a directory of their own (metrics/ is relative to it)."""
    root = tmp_path_factory.mktemp("workspace")
    p = tiny_params(record_params, embedded_data.layout.root, root / "runs", seeds=SEEDS,
                    train=dict(iterations=16, warmdown_iters=8), workspace=root)
    p = dataclasses.replace(p, quant=dataclasses.replace(p.quant, keep_float_max_numel=1024),
                            model=dataclasses.replace(p.model, embed_dtype="bf16"))  # the record's storage
    params = write_params(p, root / "params.yaml")
    with pytest.MonkeyPatch.context() as mp:  # only while the stages run: each test sets its own
        mp.chdir(root)
        for seed in SEEDS:
            for stage in ("train", "swa", "quantize", "evaluate"):
                result = invoke(stage, "--seed", str(seed), "--params", str(params))
                assert result.exit_code == 0, (stage, result.output)
        result = invoke("report", "--params", str(params), "--export", str(root / "submission"), "--author", "t")
        assert result.exit_code == 0, result.output
    return root, p, params


def test_every_seed_has_the_spec_figures_and_provenance(workspace):
    root, p, _ = workspace
    for seed in SEEDS:
        m = json.loads((root / MetricsLayout().seed(seed)).read_text())
        for key in ("prequant_final_standard_bpb", "prequant_averaged_standard_bpb", "int6_standard_bpb", "sliding_bpb", "sliding_loss", "steps",
                    "train_seconds", "model_bytes", "code_bytes", "total_bytes", "sliding_seconds"):
            assert isinstance(m[key], (int, float)) and math.isfinite(m[key]), key
        assert m["steps"] == 16 and m["seed"] == seed
        assert m["total_bytes"] == m["model_bytes"] + m["code_bytes"]
        assert m["total_bytes"] == json.loads((root / RunLayout(seed_dir(root / "runs", seed)).size_report)
                                              .read_text())["size"]["total_bytes"]
        prov = m["provenance"]
        assert prov["params_digest"] == p.digest() and prov["world_size"] == 1 and prov["device"] == "cpu"
        assert {"git", "torch", "cuda", "device_count"} <= prov.keys()
        # int6 really happened: the round trip moves the score, a little.
        assert m["int6_standard_bpb"] != m["prequant_averaged_standard_bpb"]
        assert abs(m["int6_standard_bpb"] - m["prequant_averaged_standard_bpb"]) < 0.1
        # Two pre-quantisation figures: the live final weights and the SWA average of >= 2 snapshots.
        assert m["prequant_final_standard_bpb"] != m["prequant_averaged_standard_bpb"]
        assert m["prequant_final_standard_tokens"] == m["prequant_averaged_standard_tokens"]


def test_summary_and_export_hold_exactly_the_seeds(workspace):
    root, _, _ = workspace
    summary = json.loads((root / MetricsLayout().summary).read_text())
    assert summary["seeds"] == [str(s) for s in SEEDS]
    assert summary["significance"]["n"] == 2 and summary["significance"]["verdict"] == "fail"
    assert not any(k.startswith(("provenance.", "eval.")) for k in summary["figures"])
    table = (root / MetricsLayout().summary_table).read_text()
    assert table.startswith("| seed | sliding_bpb | sliding_loss | int6_standard_bpb | prequant_averaged_standard_bpb "
                            "| prequant_final_standard_bpb |")
    export = root / "submission"
    assert sorted(p.name for p in export.iterdir()) == sorted(
        [".pgolf-output", "README.md", "submission.json", "train_gpt.py", "requirements.txt"]
        + [f"train_seed{s}.log" for s in SEEDS])
    sub = json.loads((export / "submission.json").read_text())
    assert sub["seeds"] == list(SEEDS) and sub["author"] == "t"
    assert sub["val_bpb"] == pytest.approx(summary["figures"]["sliding_bpb"]["mean"])
    assert sub["bytes_code"] == (export / "train_gpt.py").stat().st_size
    for seed in SEEDS:
        m = json.loads((root / MetricsLayout().seed(seed)).read_text())
        assert f"final_int6_sliding_window_exact val_loss:{m['sliding_loss']:.8f} val_bpb:{m['sliding_bpb']:.8f}" \
            in (export / f"train_seed{seed}.log").read_text()
    readme = (export / "README.md").read_text()
    assert all(f"seed {s}:" in readme for s in SEEDS) and "commit" in readme


def test_swa_methods(workspace, monkeypatch):
    root, p, params = workspace
    monkeypatch.chdir(root)
    run = RunLayout(seed_dir(root / "runs", SEEDS[0]))
    snaps = torch.load(run.snapshots, weights_only=True)
    assert len(snaps["states"]) >= 2
    averaged = torch.load(run.averaged, weights_only=True)
    k = "blocks.0.mlp.fc.weight"
    assert torch.allclose(averaged[k], sum(s[k] for s in snaps["states"]) / len(snaps["states"]), atol=1e-7)

    # One snapshot: the reference's rule (min_snapshots 2) takes the final weights instead ...
    last = dataclasses.replace(p, swa=dataclasses.replace(p.swa, last_k=1))
    alt = write_params(last, root / "last_k.yaml")
    result = invoke("swa", "--seed", str(SEEDS[0]), "--params", str(alt))
    assert result.exit_code == 0 and "fewer than swa.min_snapshots=2" in result.output
    final_weights = torch.load(run.final_weights, weights_only=True)
    fallback = torch.load(run.averaged, weights_only=True)
    assert all(torch.equal(fallback[key], final_weights[key]) for key in final_weights)
    # ... and min_snapshots 0 uses it alone.
    alone = dataclasses.replace(p, swa=dataclasses.replace(p.swa, last_k=1, min_snapshots=0))
    alt = write_params(alone, root / "alone.yaml")
    assert invoke("swa", "--seed", str(SEEDS[0]), "--params", str(alt)).exit_code == 0
    assert torch.equal(torch.load(run.averaged, weights_only=True)[k], snaps["states"][-1][k])
    final = dataclasses.replace(p, swa=dataclasses.replace(p.swa, method="final"))
    alt = write_params(final, root / "final.yaml")
    assert invoke("swa", "--seed", str(SEEDS[0]), "--params", str(alt)).exit_code == 0
    assert torch.equal(torch.load(run.averaged, weights_only=True)[k],
                       torch.load(run.final_weights, weights_only=True)[k])
    assert invoke("swa", "--seed", str(SEEDS[0]), "--params", str(params)).exit_code == 0  # restore


def test_embeddings_are_trained_averaged_and_exported_in_bf16(workspace):
    root, _, _ = workspace
    run = RunLayout(seed_dir(root / "runs", SEEDS[0]))
    for path in (run.final_weights, run.averaged):
        state = torch.load(path, weights_only=True)
        assert state["tok_emb.weight"].dtype == state["bigram.embed.weight"].dtype == torch.bfloat16
        assert state["blocks.0.mlp.fc.weight"].dtype == state["smear.gate"].dtype == torch.float32
    snaps = torch.load(run.snapshots, weights_only=True)["states"]
    assert all(s["tok_emb.weight"].dtype == torch.bfloat16 for s in snaps)
    from pipeline.quant.artifact import read_artifact

    restored, _ = read_artifact(run.artifact)
    assert restored["tok_emb.weight"].dtype == torch.bfloat16


def test_oversize_artifact_fails_the_stage_and_writes_nothing(workspace, tmp_path, monkeypatch):
    root, p, _ = workspace
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    src = RunLayout(seed_dir(root / "runs", SEEDS[0]))
    dst = RunLayout(seed_dir(runs, SEEDS[0]))
    dst.run_dir.mkdir(parents=True)
    shutil.copyfile(src.averaged, dst.averaged)
    small = dataclasses.replace(p, data=dataclasses.replace(p.data, out_dir=str(link_data(Path(p.data.out_dir), tmp_path))),
                                train=dataclasses.replace(p.train, out_dir=str(runs)),
                                quant=dataclasses.replace(p.quant, cap_bytes=50_000))
    result = invoke("quantize", "--seed", str(SEEDS[0]), "--params", str(write_params(small, tmp_path / "p.yaml")))
    assert result.exit_code == 1
    assert "artifact too large" in result.output and "quant.allow_oversize" in result.output
    assert not dst.artifact.exists() and not dst.size_report.exists()
    allowed = dataclasses.replace(small, quant=dataclasses.replace(small.quant, allow_oversize=True))
    result = invoke("quantize", "--seed", str(SEEDS[0]), "--params", str(write_params(allowed, tmp_path / "a.yaml")))
    assert result.exit_code == 0 and "OVER" in result.output and dst.artifact.exists()


def test_evaluate_scores_a_reference_named_checkpoint_and_rejects_a_corrupt_artifact(workspace, tmp_path,
                                                                                    monkeypatch):
    root, _, params = workspace
    monkeypatch.chdir(tmp_path)
    run = RunLayout(seed_dir(root / "runs", SEEDS[0]))
    out = tmp_path / "ref.json"
    result = invoke("evaluate", "--checkpoint", str(run.final_weights), "--out", str(out), "--params", str(params))
    assert result.exit_code == 0, result.output
    m = json.loads(out.read_text())
    assert math.isfinite(m["standard_bpb"]) and math.isfinite(m["sliding_bpb"])

    broken = tmp_path / "broken.ptz"
    blob = bytearray(run.artifact.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    broken.write_bytes(bytes(blob))
    result = invoke("evaluate", "--checkpoint", str(broken), "--out", str(tmp_path / "b.json"), "--params", str(params))
    assert result.exit_code == 1 and "pgolf: error:" in result.output and str(broken) in result.output
    assert not (tmp_path / "b.json").exists()

    alien = tmp_path / "alien.pt"
    torch.save({"not.a.param": torch.zeros(2)}, alien)
    result = invoke("evaluate", "--checkpoint", str(alien), "--out", str(tmp_path / "c.json"), "--params", str(params))
    assert result.exit_code == 1 and "do not fit the configured model" in result.output


def test_export_never_replaces_a_folder_pgolf_did_not_write(workspace, monkeypatch):
    from pipeline.atomic import OUTPUT_MARKER
    from tests.stages.disk_state import disk_state, one_line_error

    root, _, params = workspace
    monkeypatch.chdir(root)
    mine = root / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's\n")
    train_dir = RunLayout(seed_dir(root / "runs", SEEDS[0])).train_dir
    refusals = {
        mine: f"{mine}: exists and was not written by pgolf (no {OUTPUT_MARKER} marker inside); refusing to "
              "replace it (--force replaces it)",
        train_dir: f"{train_dir}: holds a pgolf train output, not a submission output; refusing to replace it "
                   "(--force replaces it)",
        root / "data": f"{root / 'data'}: exists and is not a directory written by pgolf; refusing to replace it "
                       "(--force replaces it)",
    }
    before = disk_state(root)
    for target, message in refusals.items():
        result = invoke("report", "--params", str(params), "--export", str(target))
        assert result.exit_code == 1
        assert one_line_error(result.stderr) == f"pgolf: error: {message}"
    assert disk_state(root) == before

    result = invoke("report", "--params", str(params), "--export", str(mine), "--force")
    assert result.exit_code == 0, result.output
    assert not (mine / "notes.txt").exists() and (mine / OUTPUT_MARKER).is_file()
    assert (mine / "submission.json").is_file()
    assert invoke("report", "--params", str(params), "--export", str(mine)).exit_code == 0  # its own: replaced
    shutil.rmtree(mine)


class _OpensAFileWhenUnpickled:
    """A pickled object whose loading would run code: it creates `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_evaluate_refuses_a_pt_holding_a_pickled_object(workspace, tmp_path, monkeypatch):
    root, _, params = workspace
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"tok_emb.weight": torch.zeros(2), "payload": _OpensAFileWhenUnpickled(marker)}, evil)
    result = invoke("evaluate", "--checkpoint", str(evil), "--out", str(tmp_path / "e.json"), "--params", str(params))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines == [f"pgolf: error: {evil}: refused: it holds io.open, which only code could rebuild "
                     "(pgolf loads weights only)"], lines
    assert not marker.exists(), "loading the checkpoint ran the pickled code"
    assert not (tmp_path / "e.json").exists()


def test_export_holds_only_the_seeds_in_the_table(workspace, tmp_path, monkeypatch):
    """Both seeds trained, only the first in params `seeds`: the export leaves the other out."""
    root, p, _ = workspace
    monkeypatch.chdir(tmp_path)
    for seed in SEEDS:  # every seed's metrics are there, as after a wider run
        (tmp_path / MetricsLayout().seed(seed)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / MetricsLayout().seed(seed), tmp_path / MetricsLayout().seed(seed))
    for name in ("runs", "data"):  # the same runs and data, inside this workspace
        (tmp_path / name).symlink_to((root / name).resolve(), target_is_directory=True)
    narrowed = dataclasses.replace(p, seeds=SEEDS[:1], data=dataclasses.replace(p.data, out_dir=str(tmp_path / "data")),
                                   train=dataclasses.replace(p.train, out_dir=str(tmp_path / "runs")))
    one = write_params(narrowed, tmp_path / "one.yaml")
    result = invoke("report", "--params", str(one), "--export", str(tmp_path / "sub"))
    assert result.exit_code == 0, result.output
    table = (tmp_path / MetricsLayout().summary_table).read_text()
    assert f"| {SEEDS[0]} |" in table and f"| {SEEDS[1]} |" not in table
    assert sorted(x.name for x in (tmp_path / "sub").iterdir()) == sorted([
        ".pgolf-output", "README.md", "requirements.txt", "submission.json", "train_gpt.py",
        f"train_seed{SEEDS[0]}.log"])
    assert json.loads((tmp_path / "sub" / "submission.json").read_text())["seeds"] == [SEEDS[0]]
    assert f"seed {SEEDS[1]}" not in (tmp_path / "sub" / "README.md").read_text()


def test_swa_method_ema_writes_the_exponential_average_of_every_step(record_params, embedded_data, tmp_path,
                                                                     monkeypatch):
    """`swa.method: ema`: averaged.pt is the EMA, which is ema <- d*ema + (1-d)*w after every step from
    the initial weights, recomputed here in fp64 from the weights after each step (snapshots)."""
    from pipeline.runtime import detect_runtime
    from pipeline.train.loop import Trainer

    monkeypatch.chdir(tmp_path)
    decay, steps = 0.6, 4
    p = tiny_params(record_params, embedded_data.layout.root, tmp_path / "runs", seeds=(21,),
                    train=dict(iterations=steps, warmdown_iters=steps + 1, ema_enabled=True, ema_decay=decay),
                    swa=dict(every=1, start_lrmul=1.0, max_snapshots=0, method="ema"),  # lr_mul < 1 from step 0
                    workspace=tmp_path)
    run = RunLayout(seed_dir(tmp_path / "runs", 21))
    trainer = Trainer(p, 21, embedded_data.layout.root, run.run_dir, detect_runtime(), progress=False)
    initial = {k: v.detach().double().clone() for k, v in trainer.model.state_dict().items()}
    trainer.write_outputs(trainer.run())
    snaps = torch.load(run.snapshots, weights_only=True)
    assert snaps["steps"] == list(range(1, steps + 1))  # the weights after every step
    result = invoke("swa", "--seed", "21", "--params", str(write_params(p, tmp_path / "ema.yaml")))
    assert result.exit_code == 0, result.output
    averaged = torch.load(run.averaged, weights_only=True)
    final = torch.load(run.final_weights, weights_only=True)
    for k in ("blocks.0.mlp.fc.weight", "tok_emb.weight"):
        expected = initial[k]
        for state in snaps["states"]:
            expected = decay * expected + (1 - decay) * state[k].double()
        assert torch.allclose(averaged[k].double(), expected, rtol=0, atol=1e-6), k
        assert not torch.equal(averaged[k], final[k])
