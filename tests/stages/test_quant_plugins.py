"""A storage scheme, a rounding method and a compressor registered by a test, through `pgolf quantize`
and `pgolf evaluate` on a tiny trained seed; unknown names refused when params load."""

from __future__ import annotations

import bz2
import dataclasses
import io
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pipeline.layout import MetricsLayout, RunLayout, seed_dir
from pipeline.model import GPT
from pipeline.quant.artifact import HEADER_BYTES, MAGIC_PREFIX, read_artifact
from pipeline.quant.rowwise import dequantize_rows
from stages.cli import app
from tests.quant import plugins
from tests.train.helpers import tiny_params, write_params

runner = CliRunner()
SEED = 5


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def swa_done(record_params, embedded_data, tmp_path_factory):
    """A workspace after train and swa of one tiny seed (small enough tensors get quantised)."""
    root = tmp_path_factory.mktemp("plugins")
    shutil.copytree(embedded_data.layout.root, root / "data")
    p = tiny_params(record_params, Path("data"), Path("runs"), seeds=(SEED,), train=dict(iterations=8, warmdown_iters=4))
    p = dataclasses.replace(p, quant=dataclasses.replace(p.quant, keep_float_max_numel=1024))
    write_params(p, root / "params.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for stage in ("train", "swa"):
            result = invoke(stage, "--seed", str(SEED), "--params", "params.yaml")
            assert result.exit_code == 0, (stage, result.output)
    return root, p


def test_registered_plugins_work_through_quantize_and_evaluate(swa_done, monkeypatch):
    root, p = swa_done
    monkeypatch.chdir(root)
    run = RunLayout(seed_dir(Path("runs"), SEED))
    plugged = dataclasses.replace(p.quant, method=plugins.METHOD, compressor=plugins.COMPRESSOR,
                                  schemes=dataclasses.replace(p.quant.schemes, mlp=plugins.SCHEME))
    write_params(dataclasses.replace(p, quant=plugged), root / "plugged.yaml")
    averaged = torch.load(run.averaged, weights_only=True)
    with plugins.registered() as method:
        result = invoke("quantize", "--seed", str(SEED), "--params", "plugged.yaml")
        assert result.exit_code == 0, result.output

        # The method got the model it declared it needs: the configured GPT holding the averaged weights.
        assert method.models and all(m is method.models[0] for m in method.models)
        model = method.models[0]
        assert isinstance(model, GPT) and not model.training
        assert all(torch.equal(t, averaged[k]) for k, t in model.state_dict().items())

        # The header records the compressor; the payload is a bz2 stream of the plain-data archive.
        blob = run.artifact.read_bytes()
        assert blob[:7] == MAGIC_PREFIX and blob[7] == plugins.BZ2_CODE
        archive = torch.load(io.BytesIO(bz2.decompress(blob[HEADER_BYTES:])), weights_only=True)
        mlp = {k: e for k, e in archive["tensors"].items() if ".mlp." in k and len(e["shape"]) == 2}
        assert mlp and {e["scheme"] for e in mlp.values()} == {plugins.SCHEME}
        for key, entry in mlp.items():  # 3-bit codes, rounded down
            assert int(entry["data"].min()) >= -4 and int(entry["data"].max()) <= 3
            step = entry["scale"].float()[:, None]
            assert torch.equal(entry["data"].float(), torch.clamp(torch.floor(averaged[key].float() / step), -4, 3)), key
        assert archive["tensors"]["blocks.0.attn.c_q.weight"]["scheme"] == "int6"
        size = json.loads(run.size_report.read_text())
        assert (size["artifact"]["method"], size["artifact"]["compressor"]) == (plugins.METHOD, plugins.COMPRESSOR)
        assert size["artifact"]["counts"][plugins.SCHEME] == len(mlp)

        # evaluate reads the compressor from the header: the params it runs with name zstd.
        result = invoke("evaluate", "--seed", str(SEED), "--params", "params.yaml")
        assert result.exit_code == 0, result.output
        state, _ = read_artifact(run.artifact)
    key = "blocks.1.mlp.fc.weight"
    entry = archive["tensors"][key]
    assert torch.equal(state[key], dequantize_rows(entry["data"], entry["scale"]).reshape(averaged[key].shape))
    metrics = json.loads((root / MetricsLayout().seed(SEED)).read_text())
    assert math.isfinite(metrics["int6_standard_bpb"]) and math.isfinite(metrics["sliding_bpb"])
    # Rounding every mlp weight down costs more than the tiny run's rtn int6 round trip ever moves the score.
    assert metrics["int6_standard_bpb"] > metrics["prequant_averaged_standard_bpb"]


def test_without_the_registration_the_artifact_is_refused(swa_done, monkeypatch):
    root, p = swa_done
    monkeypatch.chdir(root)
    run = RunLayout(seed_dir(Path("runs"), SEED))
    plugged = dataclasses.replace(p.quant, compressor=plugins.COMPRESSOR)
    write_params(dataclasses.replace(p, quant=plugged), root / "bz2.yaml")
    with plugins.registered():
        assert invoke("quantize", "--seed", str(SEED), "--params", "bz2.yaml").exit_code == 0
    result = invoke("evaluate", "--seed", str(SEED), "--params", "params.yaml")
    assert result.exit_code == 1
    assert result.stderr == (f"pgolf: error: {run.artifact}: compressed with compressor code {plugins.BZ2_CODE}, "
                             f"which no registered compressor has\n")


@pytest.mark.parametrize(("key", "value", "why"), [
    ("method", "awq", "not a registered method (rtn, gptq)"),
    ("compressor", "snappy", "not a registered compressor (zstd, lzma, brotli, lrzip, zstd-shuffle, lzma-shuffle, "
                             "brotli-shuffle, pergroup-brotli, pergroup-lzma, pergroup-lrzip)"),
    ("non_matrix_scheme", "int4", "not a registered storage scheme (int6, int8, fp16, fp32, raw, int5, int7, int8row)"),
    ("schemes.attn", "int9", "not a registered storage scheme (int6, int8, fp16, fp32, raw, int5, int7, int8row)"),
    ("control_matrix_scheme", "int3", "not a registered storage scheme (int6, int8, fp16, fp32, raw, int5, int7, "
                                      "int8row)"),
])
def test_unknown_names_are_refused_when_params_load(record_params, tmp_path, key, value, why):
    raw = record_params.to_dict()
    node = raw["quant"]
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps(raw))  # JSON is YAML
    result = invoke("quantize", "--seed", "1", "--params", str(path))
    assert result.exit_code == 1
    assert result.stderr == f"pgolf: error: {path}: quant.{key}: {why} (got {value!r})\n"


def test_gptq_lqer_and_per_group_brotli_through_quantize_and_evaluate(swa_done, monkeypatch):
    """The frontier's post-training on the tiny seed: GPTQ calibrated on train batches, LQER on the two worst
    matrices, per-row int8 gates, per-group brotli; quantize reports each category and evaluate reads it."""
    root, p = swa_done
    monkeypatch.chdir(root)
    run = RunLayout(seed_dir(Path("runs"), SEED))
    frontier = dataclasses.replace(
        p.quant, method="gptq", compressor="pergroup-brotli", control_matrix_scheme="int8row",
        schemes=dataclasses.replace(p.quant.schemes, embed="int7", mlp="int5"),
        gptq=dataclasses.replace(p.quant.gptq, calibration_batches=2, calibration_batch_tokens=256),
        lqer=dataclasses.replace(p.quant.lqer, top_k=2),
        codec=dataclasses.replace(p.quant.codec, brotli_quality=5))
    write_params(dataclasses.replace(p, quant=frontier), root / "frontier.yaml")
    result = invoke("quantize", "--seed", str(SEED), "--params", "frontier.yaml")
    assert result.exit_code == 0, result.output
    assert "method gptq, compressor pergroup-brotli; GPTQ calibration 2 batches in" in result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("  ")}
    assert set(lines) == {"embed", "mlp", "attn", "other", "control"}, result.output
    assert "int8row (8 bits)" in lines["control"]  # the gates, per-row int8 (quant.control_matrix_scheme)
    assert "int5 (5 bits)" in lines["mlp"] and "relative error" in lines["mlp"] and "LQER on" in result.output
    size = json.loads(run.size_report.read_text())["artifact"]
    assert (size["method"], size["compressor"], size["format_version"]) == ("gptq", "pergroup-brotli", 2)
    assert size["calibration_batches"] == 2 and size["calibration_seconds"] > 0
    cats = size["categories"]
    assert cats["embed"]["schemes"] == {"int7": 7} and cats["mlp"]["schemes"] == {"int5": 5}
    assert sum(c["lqer_tensors"] for c in cats.values()) == 2
    assert all(0 < c["rel_error"] < 0.5 for name, c in cats.items() if name != "other")
    assert cats["other"]["rel_error"] == 0  # bigram.proj is small enough to stay fp16
    state, _ = read_artifact(run.artifact)
    averaged = torch.load(run.averaged, weights_only=True)
    assert state.keys() == averaged.keys()
    gates = [k for k in averaged if "resid_mix" in k]
    assert gates and all(not torch.equal(state[k], averaged[k]) for k in gates)  # int8row, not kept exact
    result = invoke("evaluate", "--seed", str(SEED), "--params", "params.yaml")
    assert result.exit_code == 0, result.output
    metrics = json.loads((root / MetricsLayout().seed(SEED)).read_text())
    assert math.isfinite(metrics["int6_standard_bpb"])
