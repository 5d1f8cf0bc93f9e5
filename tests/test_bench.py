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


class _Clock:
    """A fake perf_counter: each reading is 1.25 s after the one before."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        self.now += 1.25
        return self.now


def _tiny_train_flops_per_token(m, seq_len: int) -> int:
    """6 FLOPs per matrix weight per token (forward + backward: blocks, tied head, bigram projection)
    plus attention's 6 x layers x seq_len x model_dim."""
    kv = m.num_kv_heads * m.head_dim
    weights = m.num_layers * (2 * m.model_dim**2 + 2 * m.model_dim * kv + 2 * m.model_dim * m.mlp_hidden)
    weights += m.vocab_size * m.model_dim + m.model_dim * m.bigram_dim
    return 6 * weights + 6 * m.num_layers * seq_len * m.model_dim


def test_train_bench_figures(params_file, tmp_path, monkeypatch):
    """With a clock that reads 1.25 s later each time, the 3 timed steps took exactly 1.25 s."""
    import pipeline.bench

    monkeypatch.setattr(pipeline.bench, "time", _Clock())
    p, path = params_file
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--params", str(path), "--steps", "3", "--warmup", "1",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    fig = json.loads(out.read_text())
    batch = p.train.train_batch_tokens // (8 * p.train.seq_len)  # one of 8 GPUs' share
    tokens = 3 * batch * p.train.seq_len
    assert (fig["mode"], fig["device"], fig["batch_seqs"], fig["steps"], fig["tokens"]) == (
        "train", "cpu", batch, 3, tokens)
    assert (fig["seconds"], fig["compile_seconds"]) == (1.25, 1.25)
    assert fig["tokens_per_s"] == pytest.approx(tokens / 1.25, rel=1e-12)
    assert fig["ms_per_step"] == pytest.approx(1250 / 3, rel=1e-12)
    flops = _tiny_train_flops_per_token(p.model, p.train.seq_len)
    assert fig["flops_per_token"] == flops
    assert fig["achieved_tflops"] == pytest.approx(flops * tokens / 1.25 / 1e12, rel=1e-12)
    assert fig["mfu"] is None and fig["compiled"] is False  # no known peak for a CPU; tiny params don't compile
    assert f"tokens_per_s: {tokens / 1.25:,.4g}" in result.output  # the printed figure


def test_eval_bench_scores_every_token(params_file, tmp_path, monkeypatch):
    import pipeline.bench

    monkeypatch.setattr(pipeline.bench, "time", _Clock())
    p, path = params_file
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["bench", "--params", str(path), "--eval", "--eval-tokens", "1000",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    fig = json.loads(out.read_text())
    assert fig["mode"] == "eval" and fig["tokens"] == 1000 and fig["seconds"] == 1.25
    assert fig["tokens_per_s"] == pytest.approx(800.0, rel=1e-12)
    assert fig["steps"] == -(-1000 // p.eval.stride)  # one window per stride of scored tokens


@pytest.mark.slow
def test_flops_per_token_counts_the_matmuls(record_params):
    model = GPT(record_params.model)
    m = record_params.model
    per_block = (m.model_dim * m.model_dim * 2  # c_q, proj
                 + 2 * m.model_dim * (m.num_kv_heads * m.head_dim)  # c_k, c_v
                 + 2 * m.model_dim * m.mlp_hidden)  # fc, proj
    expected = m.num_layers * per_block + m.vocab_size * m.model_dim + m.model_dim * m.bigram_dim
    assert matmul_params(model) == expected
    assert train_flops_per_token(model, m, 2048) == 6 * expected + 6 * m.num_layers * 2048 * m.model_dim


@pytest.mark.slow
def test_memory_bench_figures_are_consistent(params_file, tmp_path):
    p, path = params_file
    out = tmp_path / "memory.json"
    result = CliRunner().invoke(app, ["bench", "--params", str(path), "--memory", "--out", str(out)])
    assert result.exit_code == 0, result.output
    fig = json.loads(out.read_text())
    batch = p.train.train_batch_tokens // (8 * p.train.seq_len)
    assert (fig["batch_seqs"], fig["seq_len"], fig["autocast_dtype"]) == (batch, p.train.seq_len, "bfloat16")
    # What a training step at that batch really saves, traced directly (not extrapolated).
    import torch

    from pipeline.activation_memory import trace_saved_bytes

    torch.manual_seed(0)
    traced = trace_saved_bytes(GPT(p.model), batch, p.train.seq_len, torch.bfloat16, torch.device("cpu"))
    assert fig["saved_bytes"] == sum(traced.values())
    m = p.model
    kv = m.num_kv_heads * m.head_dim
    matrices = m.num_layers * (2 * m.model_dim**2 + 2 * m.model_dim * kv + 2 * m.model_dim * m.mlp_hidden)
    matrices += m.model_dim * m.bigram_dim
    total = sum(x.numel() for x in GPT(m).parameters())
    assert fig["state_bytes"] == 4 * (3 * matrices + 4 * (total - matrices))  # weights, grads, optimiser moments
    assert fig["total_bytes"] == fig["state_bytes"] + sum(traced.values())
    assert "GiB" in result.output


def test_memory_and_eval_modes_are_exclusive(params_file):
    _, path = params_file
    result = CliRunner().invoke(app, ["bench", "--params", str(path), "--memory", "--eval"])
    assert result.exit_code == 2 and "--memory" in result.output
