"""`pgolf bench` at a tiny size: its figures are consistent with each other."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipeline.bench import matmul_params, train_flops_per_token
from pipeline.model import GPT
from stages.cli import app
from tests.train.helpers import tiny_params, write_params


@pytest.fixture()
def params_file(record_params, tmp_path):
    p = tiny_params(record_params, tmp_path / "data", tmp_path / "runs")
    return p, write_params(p, tmp_path / "params.yaml")


def test_train_bench_figures_are_consistent(params_file, tmp_path):
    p, path = params_file
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--params", str(path), "--steps", "3", "--warmup", "1",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    fig = json.loads(out.read_text())
    batch = p.train.train_batch_tokens // (8 * p.train.seq_len)
    assert (fig["mode"], fig["device"], fig["batch_seqs"], fig["steps"]) == ("train", "cpu", batch, 3)
    assert fig["tokens"] == 3 * batch * p.train.seq_len
    assert fig["tokens_per_s"] * fig["seconds"] == pytest.approx(fig["tokens"], rel=1e-9)
    assert fig["ms_per_step"] == pytest.approx(1000 * fig["seconds"] / 3, rel=1e-9)
    assert fig["achieved_tflops"] == pytest.approx(fig["flops_per_token"] * fig["tokens_per_s"] / 1e12, rel=1e-9)
    assert fig["mfu"] is None and fig["compiled"] is False  # no known peak for a CPU; tiny params don't compile


def test_eval_bench_scores_every_token(params_file, tmp_path):
    p, path = params_file
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--params", str(path), "--eval", "--eval-tokens", "1000",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    fig = json.loads(out.read_text())
    assert fig["mode"] == "eval" and fig["tokens"] == 1000
    assert fig["tokens_per_s"] * fig["seconds"] == pytest.approx(1000, rel=1e-9)


def test_flops_per_token_counts_the_matmuls(record_params):
    model = GPT(record_params.model)
    m = record_params.model
    per_block = (m.model_dim * m.model_dim * 2  # c_q, proj
                 + 2 * m.model_dim * (m.num_kv_heads * m.head_dim)  # c_k, c_v
                 + 2 * m.model_dim * m.mlp_hidden)  # fc, proj
    expected = m.num_layers * per_block + m.vocab_size * m.model_dim + m.model_dim * m.bigram_dim
    assert matmul_params(model) == expected
    assert train_flops_per_token(model, m, 2048) == 6 * expected + 6 * m.num_layers * 2048 * m.model_dim


def test_memory_bench_figures_are_consistent(params_file, tmp_path):
    p, path = params_file
    out = tmp_path / "memory.json"
    result = CliRunner().invoke(app, ["bench", "--params", str(path), "--memory", "--out", str(out)])
    assert result.exit_code == 0, result.output
    fig = json.loads(out.read_text())
    batch = p.train.train_batch_tokens // (8 * p.train.seq_len)
    assert (fig["batch_seqs"], fig["seq_len"], fig["autocast_dtype"]) == (batch, p.train.seq_len, "bfloat16")
    assert fig["saved_bytes"] == fig["saved_bytes_fixed"] + batch * fig["saved_bytes_per_seq"]
    assert fig["total_bytes"] == fig["state_bytes"] + fig["saved_bytes"]
    assert sum(fig["saved_per_seq_by_dtype"].values()) == fig["saved_bytes_per_seq"]
    assert "GiB" in result.output


def test_memory_and_eval_modes_are_exclusive(params_file):
    _, path = params_file
    result = CliRunner().invoke(app, ["bench", "--params", str(path), "--memory", "--eval"])
    assert result.exit_code == 2 and "--memory" in result.output
