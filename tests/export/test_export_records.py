"""`pgolf export` at the smoke profile: the exported train_gpt.py, run on its own outside the
checkout, ends bitwise where `pgolf train/swa/quantize/evaluate` ends; sizes count its bytes."""

from __future__ import annotations

import base64
import dataclasses
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipeline.config import Params, load_params
from pipeline.errors import ArtifactError
from pipeline.export.script import SCRIPT_NAME, exported_script, modules_sha256, script_source
from pipeline.layout import MetricsLayout, RunLayout, seed_dir
from pipeline.quant.packing import pack_run, write_packed
from stages.cli import app
from tests.test_profiles import _compose_params_module
from tests.train.helpers import link_data, write_params

ROOT = Path(__file__).resolve().parents[2]
SEED = 1
runner = CliRunner()
# Modules the script must not need; the guard below makes the first two unimportable.
ABSENT = ("pipeline", "stages")
NOT_LOADED = ("yaml", "typer", "dvc", "tqdm", "huggingface_hub", "scipy")

SITECUSTOMIZE = '''
import atexit, os, sys

class _Absent:
    """This repository's packages do not exist for this interpreter."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {absent!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _Absent())

@atexit.register
def _dump():
    with open(os.environ["MODULES_OUT"], "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
'''


def _smoke(tmp: Path, data_dir: Path, runs: Path, *extra: str) -> Params:
    """The smoke profile, shrunk to a few steps (every feature still on)."""
    out = tmp / "smoke.yaml"
    _compose_params_module().compose(out, [
        "profile=smoke", "seeds=[1]", f"data.out_dir={data_dir}", f"train.out_dir={runs}",
        "train.iterations=6", "train.warmdown_iters=12", "train.warmup_steps=1", "train.val_loss_every=3",
        "train.val_max_tokens=1024", "swa.every=1", "eval.max_tokens=2048", "eval.stride=64", *extra])
    return load_params(out)


def _challenge_dir(tmp: Path, data_dir: Path) -> Path:
    """The challenge's layout, outside the checkout, plus the import guard."""
    base = tmp / "challenge"
    shards = base / "data" / "datasets" / "fineweb10B_sp1024"
    shards.mkdir(parents=True)
    for f in sorted((data_dir / "shards").glob("fineweb_*.bin")):
        shutil.copyfile(f, shards / f.name)
    (base / "data" / "tokenizers").mkdir()
    shutil.copyfile(data_dir / "tokenizer.model", base / "data" / "tokenizers" / "fineweb_1024_bpe.model")
    guard = tmp / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(SITECUSTOMIZE.format(absent=set(ABSENT)))
    assert ROOT not in base.resolve().parents
    return base


def _run_script(cwd: Path, script: str, modules_out: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEED", "RUN_ID", "DATA_PATH",
                                                                 "TOKENIZER_PATH")}
    clean.update(PYTHONPATH=str(modules_out.parent / "guard"), MODULES_OUT=str(modules_out),
                 OMP_NUM_THREADS=str(torch.get_num_threads()), **env)
    return subprocess.run([sys.executable, script], cwd=cwd, env=clean, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def exported(embedded_data, tmp_path_factory):
    """The pipeline's four stages for one seed, `pgolf export`, then the exported script on its own."""
    tmp = tmp_path_factory.mktemp("export")
    work = tmp / "workspace"
    work.mkdir()
    p = _smoke(tmp, link_data(embedded_data.layout.root, work), work / "runs")
    params = write_params(p, work / "params.yaml")
    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    try:
        for stage in ("train", "swa", "quantize", "evaluate"):
            result = runner.invoke(app, [stage, "--seed", str(SEED), "--params", str(params)])
            assert result.exit_code == 0, (stage, result.output)
        result = runner.invoke(app, ["export", "--out", str(work / "records"), "--params", str(params),
                                     "--author", "t", "--github-id", "t-gh"])
        assert result.exit_code == 0, result.output
    finally:
        mp.undo()
    base = _challenge_dir(tmp, embedded_data.layout.root)
    shutil.copyfile(work / "records" / SCRIPT_NAME, base / SCRIPT_NAME)
    proc = _run_script(base, SCRIPT_NAME, tmp / "modules.txt", SEED=str(SEED))
    assert proc.returncode == 0, proc.stderr[-3000:]
    subprocess.run([sys.executable, "-c", "import numpy, sentencepiece, torch, zstandard"], cwd=base, check=True,
                   env={**os.environ, "PYTHONPATH": str(tmp / "guard"), "MODULES_OUT": str(tmp / "baseline.txt")})
    return {"p": p, "params": params, "work": work, "base": base, "proc": proc, "tmp": tmp,
            "pipe": RunLayout(seed_dir(work / "runs", SEED)), "script": RunLayout(base / "runs" / f"seed_{SEED}")}


@pytest.mark.slow
def test_script_ends_bitwise_where_the_pipeline_ends(exported):
    pipe, script = exported["pipe"], exported["script"]
    a = torch.load(pipe.final_weights, weights_only=True)
    b = torch.load(script.final_weights, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    a, b = torch.load(pipe.averaged, weights_only=True), torch.load(script.averaged, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert pipe.artifact.read_bytes() == script.artifact.read_bytes()
    ours = json.loads((exported["work"] / MetricsLayout().seed(SEED)).read_text())
    theirs = json.loads((script.run_dir / "metrics.json").read_text())
    for key in ("sliding_bpb", "sliding_loss", "int6_standard_bpb", "prequant_final_standard_bpb",
                "prequant_averaged_standard_bpb", "steps",
                "model_bytes", "code_bytes", "total_bytes"):
        assert theirs[key] == ours[key], key
    assert ours["steps"] == 6


@pytest.mark.slow
def test_script_log_follows_the_record_formats_and_matches_the_exported_log(exported):
    out = exported["proc"].stdout
    lines = out.splitlines()
    ours = json.loads((exported["work"] / MetricsLayout().seed(SEED)).read_text())
    assert re.search(r"^step:6/6 train_loss:\d+\.\d{4} train_time:\d+ms step_avg:\d+\.\d{2}ms$", out, re.M)
    assert re.search(r"^step:3/6 val_loss:\d+\.\d{4} val_bpb:\d+\.\d{4} train_time:\d+ms step_avg:", out, re.M)
    assert f"final_int6_sliding_window_exact val_loss:{ours['sliding_loss']:.8f} val_bpb:{ours['sliding_bpb']:.8f}" in lines
    assert re.search(r"^final_int6_sliding_window val_loss:\d+\.\d{4} val_bpb:\d+\.\d{4} stride:64 eval_time:\d+ms$",
                     out, re.M)
    code = (exported["base"] / SCRIPT_NAME).stat().st_size
    assert f"Code size: {code} bytes" in lines
    assert f"Serialized model int6+zstd: {ours['model_bytes']} bytes" in lines
    assert any(line.startswith(f"Total submission size int6+zstd: {ours['model_bytes'] + code} bytes") for line in lines)
    assert (exported["base"] / "logs" / f"seed_{SEED}.txt").read_text().splitlines() == lines

    # The folder's log (rendered from the pipeline's records) says what the script printed, timings aside.
    def untimed(text: str) -> list[str]:
        keep = re.compile(r"^(step:|Serialized|Code size|Total submission|final_)")
        return [re.sub(r" (train_time|step_avg|eval_time):[\d.]+ms", "", line)
                for line in text.splitlines() if keep.match(line)]

    exported_log = (exported["work"] / "records" / f"train_seed{SEED}.log").read_text()
    assert untimed(exported_log) == untimed(out)


@pytest.mark.slow
def test_script_imports_nothing_from_this_repository(exported):
    loaded = set((exported["tmp"] / "modules.txt").read_text().split())
    baseline = set((exported["tmp"] / "baseline.txt").read_text().split())
    tops = {m.split(".")[0] for m in loaded}
    assert not tops & set(ABSENT)
    assert not {m.split(".")[0] for m in loaded - baseline} & set(NOT_LOADED)
    assert "_pgolf.export.run" in loaded and "_pgolf.model.gpt" in loaded
    text = (exported["base"] / SCRIPT_NAME).read_text()
    assert not re.search(r"^\s*(from|import)\s+(pipeline|stages)\b", text, re.M)


@pytest.mark.slow
def test_submission_counts_the_exported_file(exported):
    records = exported["work"] / "records"
    sub = json.loads((records / "submission.json").read_text())
    size = (records / SCRIPT_NAME).stat().st_size
    pipe_size = json.loads(exported["pipe"].size_report.read_text())["size"]
    assert sub["bytes_code"] == size == pipe_size["code_bytes"] == len(exported_script(exported["p"]))
    assert sub["bytes_total"] == pipe_size["model_bytes"] + size == pipe_size["total_bytes"]
    assert sub["seed_results"][str(SEED)]["artifact_bytes"] == sub["bytes_total"]
    for key in ("author", "github_id", "name", "blurb", "date", "track", "val_loss", "val_bpb", "val_loss_std",
                "val_bpb_std", "seeds", "seed_results", "comparison_baseline_bpb", "delta_vs_leaderboard_bpb",
                "delta_vs_leaderboard_nats"):
        assert key in sub, key
    assert set(sub["seed_results"][str(SEED)]) == {"val_loss", "val_bpb", "artifact_bytes", "steps",
                                                   "step_avg_ms", "eval_time_s"}
    assert (records / "requirements.txt").read_text().startswith("zstandard==")
    readme = (records / "README.md").read_text()
    assert f"({size:,} bytes, plain Python)" in readme and "**Verdict:" in readme and "seed 1: commit" in readme


@pytest.mark.slow
def test_the_cap_counts_the_script_and_nothing_is_written_past_it(exported, tmp_path):
    p, src = exported["p"], exported["pipe"]
    run = RunLayout(tmp_path / "run")
    run.run_dir.mkdir()
    shutil.copyfile(src.averaged, run.averaged)
    code = exported_script(p)
    fits = pack_run(run, p, SEED, code)
    assert fits.size.within_cap and fits.size.code_bytes == len(code)
    assert fits.size.total_bytes == fits.size.model_bytes + len(code)
    # A cap that the model alone fits but model + train_gpt.py does not.
    over = dataclasses.replace(p, quant=dataclasses.replace(p.quant, cap_bytes=len(code) + 1000))
    packed = pack_run(run, over, SEED, code)
    assert 1000 < packed.size.model_bytes < over.quant.cap_bytes and not packed.size.within_cap
    with pytest.raises(ArtifactError, match=f"{packed.size.model_bytes:,} model \\+ {len(code):,} code"):
        write_packed(run, packed, over.quant)
    assert not run.artifact.exists() and not run.size_report.exists()


@pytest.mark.slow
def test_compressed_script_refuses_to_run_past_the_cap(exported, tmp_path):
    """A cap below the code alone: the self-extracting script counts its own (wrapper) size and stops."""
    p = dataclasses.replace(exported["p"], quant=dataclasses.replace(exported["p"].quant, cap_bytes=20_000))
    wrapper = exported_script(p, compress=True)
    head, blob = wrapper.decode().split('b85decode("')
    assert lzma.decompress(base64.b85decode(blob.split('"')[0])).decode() == script_source(p)
    base = exported["base"]
    (base / "small_cap.py").write_bytes(wrapper)
    proc = _run_script(base, "small_cap.py", tmp_path / "modules.txt", RUN_ID="small_cap")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"train_gpt.py: error: small_cap.py is {len(wrapper):,} bytes: at or over the 20,000-byte cap "
        "(quant.cap_bytes) before any model byte; refusing to train"]
    assert not (base / "runs" / "small_cap").exists()


@pytest.mark.slow
def test_export_flags(exported):
    work, params = exported["work"], exported["params"]
    records = work / "records"
    mp = pytest.MonkeyPatch()
    mp.chdir(work)
    try:
        result = runner.invoke(app, ["export", "--out", str(records), "--params", str(params)])
        assert result.exit_code == 0, result.output  # an earlier export (its marker says so) is replaced
        mine = work / "mine"
        mine.mkdir()
        (mine / "notes.txt").write_text("kept\n")
        result = runner.invoke(app, ["export", "--out", str(mine), "--params", str(params)])
        assert result.exit_code == 1 and "refusing to replace it (--force replaces it)" in result.output
        assert (mine / "notes.txt").read_text() == "kept\n"
        shutil.rmtree(mine)
        result = runner.invoke(app, ["export", "--out", str(records), "--params", str(params), "--force",
                                     "--compress-code", "--track", "non_record_16mb"])
        assert result.exit_code == 0, result.output
        sub = json.loads((records / "submission.json").read_text())
        size = (records / SCRIPT_NAME).stat().st_size
        assert sub["bytes_code"] == size < len(exported_script(exported["p"])) // 2
        assert sub["track"] == "non_record_16mb" and "self-extracting" in (records / "README.md").read_text()
        # An eval-only change (DVC re-runs evaluate and report, not quantize) still exports, the cap
        # counted with the file written.
        other = dataclasses.replace(exported["p"], eval=dataclasses.replace(exported["p"].eval, stride=32))
        result = runner.invoke(app, ["export", "--out", str(work / "other"), "--params",
                                     str(write_params(other, work / "other.yaml"))])
        assert result.exit_code == 0, result.output
        assert json.loads((work / "other" / "submission.json").read_text())["bytes_code"] == len(exported_script(other))
        shutil.rmtree(work / "other")
        # A run packed by other code (as an older pgolf's quantize would record it) is refused.
        size_json = exported["pipe"].size_report
        original = size_json.read_text()
        assert json.loads(original)["size"]["modules_sha256"] == modules_sha256()
        tampered = json.loads(original)
        tampered["size"]["modules_sha256"] = "0" * 64
        size_json.write_text(json.dumps(tampered))
        try:
            result = runner.invoke(app, ["export", "--out", str(work / "other"), "--params", str(params)])
        finally:
            size_json.write_text(original)
        assert result.exit_code == 1 and "was packed by other pgolf code" in result.output
        assert not (work / "other").exists()
        # Params of a stage that shaped the artifact changed since quantize ran: refused, naming the stage.
        changed = dataclasses.replace(exported["p"], train=dataclasses.replace(exported["p"].train, matrix_lr=0.03))
        result = runner.invoke(app, ["export", "--out", str(work / "other"), "--params",
                                     str(write_params(changed, work / "changed.yaml"))])
        assert result.exit_code == 1 and "made with other params for the train stage(s)" in result.output
        assert not (work / "other").exists()
    finally:
        mp.undo()
