"""The frontier switches through train -> swa -> quantize -> evaluate (CLI, one tiny seed):
the new control tensors are averaged, packed and restored, the evaluated model runs looped,
and evaluate's phased TTT (eval.ttt.mode: phased) writes the ttt_* figures."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from typer.testing import CliRunner

from pipeline.layout import MetricsLayout
from stages.cli import app
from tests.train.helpers import tiny_params, write_params

pytestmark = pytest.mark.slow  # trains a seed and runs every post-training stage


def frontier_switches(p):
    m = p.model
    model = dataclasses.replace(
        m, num_layers=4, mlp_leaky_slope=0.5, skip_gates=True, smear_window=8, smear_bos_mask=True,
        attn_gate=dataclasses.replace(m.attn_gate, enabled=True, window=8, scale=0.5),
        lanes=dataclasses.replace(m.lanes, start_layer=3),
        recurrence=dataclasses.replace(m.recurrence, num_loops=1, loop_start=1, loop_end=1, enable_at=0.5))
    variant = dataclasses.replace(p.train.muon_variant, ns="polar_express", row_normalize=True, momentum_dtype="bf16")
    train = dataclasses.replace(p.train, muon_variant=variant, min_lr=0.05, ema_enabled=True, batch_layout="documents")
    # Training on packed documents (train.batch_layout); phased TTT as the frontier scores
    # (per-document LoRA on the looped model, one global phase).
    phased = dataclasses.replace(p.eval.ttt.phased, chunk_size=16, batch_docs=4, lora_rank=4, prefix_docs=4,
                                 global_chunk_tokens=256, global_batch_seqs=2)
    ttt = dataclasses.replace(p.eval.ttt, mode="phased", phased=phased)
    return dataclasses.replace(p, model=model, train=train, eval=dataclasses.replace(p.eval, ttt=ttt),
                               quant=dataclasses.replace(p.quant, keep_float_max_numel=1024))


def test_frontier_switches_run_every_stage(record_params, embedded_data, tmp_path, monkeypatch):
    p = tiny_params(record_params, embedded_data.layout.root, tmp_path / "runs", seeds=(3,),
                    train=dict(iterations=8, warmdown_iters=4), swa=dict(every=1, start_lrmul=0.9),
                    workspace=tmp_path)
    p = frontier_switches(p)
    params = write_params(p, tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    for stage in ("train", "swa", "quantize", "evaluate"):
        result = CliRunner().invoke(app, [stage, "--seed", "3", "--params", str(params)])
        assert result.exit_code == 0, (stage, result.output)
    m = json.loads((tmp_path / MetricsLayout().seed(3)).read_text())
    for key in ("prequant_averaged_standard_bpb", "int6_standard_bpb", "sliding_bpb"):
        assert math.isfinite(m[key]), key
    # The int6 round trip kept the frontier's control tensors exact: the score moves only a little.
    assert abs(m["int6_standard_bpb"] - m["prequant_averaged_standard_bpb"]) < 0.1
    # Phased TTT scored every target of the evaluated stream once, within its budget.
    assert math.isfinite(m["ttt_bpb"]) and math.isfinite(m["ttt_loss"]) and m["ttt_tokens"] == m["sliding_tokens"]
    assert 0 < m["ttt_seconds"] and m["ttt_within_budget"] is True
