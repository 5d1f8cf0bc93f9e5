"""conf/profile/frontier.yaml: the 1.0611 record's training configuration, composed as
`dvc exp run -S profile=frontier` composes it, and its size through `pgolf model-info`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from pipeline.config import Params, load_params
from pipeline.model import GPT
from stages.cli import app
from tests.test_profiles import compose

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def frontier_file(tmp_path_factory) -> Path:
    return compose(tmp_path_factory.mktemp("frontier"), "profile=frontier")


@pytest.fixture(scope="module")
def frontier(frontier_file) -> Params:
    return load_params(frontier_file)


def test_frontier_profile_starts_from_the_record():
    text = (ROOT / "conf" / "profile" / "frontier.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text)["defaults"] == ["record", "_self_"]


def test_frontier_model_is_the_records(frontier: Params):
    # train_seed42.log's hyperparameters, model part.
    m = frontier.model
    assert (m.vocab_size, m.num_layers, m.model_dim, m.num_heads, m.num_kv_heads, m.mlp_mult) == (8192, 11, 512, 8, 4, 4)
    assert (m.mlp_leaky_slope, m.xsa_last_n, m.q_gain_init, m.rope_dims, m.rope_ref_len) == (0.5, 11, 5.0, 16, 2048)
    assert m.skip_gates and m.smear and m.smear_window == 12 and m.smear_bos_mask
    assert (m.attn_gate.enabled, m.attn_gate.window, m.attn_gate.scale) == (True, 12, 0.5)
    assert (m.lanes.start_layer, m.lanes.final) == (8, "mean")
    r = m.recurrence
    assert (r.num_loops, r.loop_start, r.loop_end, r.enable_at) == (2, 3, 5, 0.35)
    assert m.bigram_buckets == 0 and m.canon.placements == ""


def test_frontier_training_is_the_records(frontier: Params):
    t = frontier.train
    assert (t.matrix_lr, t.scalar_lr, t.embed_lr) == (0.026, 0.02, 0.03)
    assert (t.muon_momentum, t.muon_momentum_warmup_start, t.muon_momentum_warmup_steps) == (0.97, 0.92, 1500)
    assert (t.muon_weight_decay, t.adam_weight_decay, t.embed_weight_decay) == (0.095, 0.02, 0.085)
    assert (t.adam_beta1, t.adam_beta2, t.grad_clip_norm) == (0.9, 0.99, 0.3)
    assert (t.warmdown_frac, t.min_lr, t.warmup_steps) == (0.85, 0.1, 20)
    assert (t.ema_enabled, t.ema_decay, t.qat_enabled) == (True, 0.9965, False)
    v = t.muon_variant
    assert (v.ns, v.row_normalize, v.momentum_dtype, t.muon_backend_steps) == ("polar_express", True, "bf16", 5)
    assert t.max_wallclock_seconds == 599.5 and t.train_batch_tokens == 786432
    assert frontier.swa.method == "ema" and not frontier.swa.enabled


def test_frontier_model_info_prints_the_records_parameter_count(frontier_file, frontier: Params):
    # model_params:35945671 in the record's train_seed42.log.
    result = CliRunner().invoke(app, ["model-info", "-p", str(frontier_file)])
    assert result.exit_code == 0, result.output
    total = 35_945_671
    assert result.output.strip().splitlines()[-1].split() == ["total", f"{total:,}"]
    with torch.device("meta"):
        model = GPT(frontier.model)
    assert sum(p.numel() for p in model.parameters()) == total
    # 8 skip weights and gates (the looped order pairs 8 encoder with 9 decoder passes).
    assert model.skip_weights.shape == model.skip_gates.shape == (8, 512)
