"""conf/profile/pr312.yaml: PR #312's run as its repro command states it, composed the
way `dvc exp run -S profile=pr312` composes it, and its size through `pgolf model-info`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from pipeline.config import Params, load_params
from pipeline.model import GPT
from pipeline.model.canon import canon_blocks
from stages.cli import app
from tests.test_profiles import compose

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pr312_file(tmp_path_factory) -> Path:
    return compose(tmp_path_factory.mktemp("pr312"), "profile=pr312")


@pytest.fixture(scope="module")
def pr312(pr312_file) -> Params:
    return load_params(pr312_file)


def test_pr312_profile_starts_from_the_record():
    text = (ROOT / "conf" / "profile" / "pr312.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text)["defaults"] == ["record", "_self_"]


def test_pr312_holds_the_repro_command(pr312: Params):
    # The environment of pr_report_canon_acd_k3.md's command, key by key.
    m, t, s, q, e = pr312.model, pr312.train, pr312.swa, pr312.quant, pr312.eval
    assert pr312.seeds == (1337,)
    assert (m.vocab_size, m.num_layers, m.model_dim, m.num_heads, m.num_kv_heads, m.mlp_mult) == (1024, 9, 512, 8, 4, 3)
    assert (t.train_batch_tokens, t.seq_len, t.iterations, t.warmup_steps, t.warmdown_iters) == (524288, 2048, 7200, 20, 3000)
    assert t.max_wallclock_seconds == 600.0 and t.nproc_per_node == 8
    assert (t.matrix_lr, t.scalar_lr, t.embed_lr) == (0.025, 0.025, 0.035)
    assert (t.muon_momentum, t.muon_momentum_warmup_start, t.muon_momentum_warmup_steps) == (0.99, 0.92, 1500)
    assert (t.muon_weight_decay, t.adam_weight_decay) == (0.04, 0.04)
    assert s.enabled and (s.every, s.start_lrmul, s.max_snapshots, s.method) == (200, 0.5, 0, "snapshots")
    assert (q.schemes.mlp, q.schemes.attn, q.schemes.embed, q.schemes.other) == ("int6", "int6", "int8", "int8")
    assert (e.seq_len, e.stride, e.batch_seqs) == (2048, 64, 32)
    c = m.canon
    assert (c.placements, c.kernel, c.residual, c.activation, c.bias) == ("ACD", 3, True, False, False)
    assert (m.bigram_buckets, m.bigram_dim) == (2048, 128)


def test_pr312_takes_the_pr_scripts_defaults_for_the_rest(pr312: Params):
    m, t, s = pr312.model, pr312.train, pr312.swa
    assert canon_blocks(m.canon, m.num_layers) == frozenset(range(9))  # Canon on every block
    assert not m.canon.delta_gate and m.canon.d_after_relu
    assert (m.rope_dims, m.rope_ref_len, m.ln_scale, m.xsa_last_n) == (64, 1024, False, 0)
    assert m.embed_dtype == "bf16" and m.smear and not m.smear_bos_mask
    assert t.grad_clip_norm == 0.0 and not t.qat_enabled and not t.ema_enabled
    assert s.min_snapshots == 2 and pr312.eval.stream == "truncated"


def test_pr312_model_info_prints_its_parameter_count(pr312_file, pr312: Params):
    result = CliRunner().invoke(app, ["model-info", "-p", str(pr312_file)])
    assert result.exit_code == 0, result.output
    total = 22_175_817
    assert result.output.strip().splitlines()[-1].split() == ["total", f"{total:,}"]
    with torch.device("meta"):
        model = GPT(pr312.model)
    assert sum(p.numel() for p in model.parameters()) == total
    # 9 blocks x (A 512 + C 512 + D 1536 channels) x kernel 3, no gates, no bias.
    canon = sum(p.numel() for n, p in model.named_parameters() if ".canon_" in n)
    assert canon == 9 * (512 + 512 + 1536) * 3
    # The PR's artifact (13,196,032 bytes, int6 mlp+attn, int8 embeddings, zstd-22)
    # holds these parameters at under 0.6 bytes each.
    assert 13_196_032 / total == pytest.approx(0.595, abs=0.001)


def test_readme_lists_both_seed_profiles_with_their_scores():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines()
            if line.startswith("| `record` |") or line.startswith("| `pr312` |")}
    assert "1.1296" in rows["`record`"] and "PR #400" in rows["`record`"] and "26,845,283" in rows["`record`"]
    assert "1.1668" in rows["`pr312`"] and "PR #312" in rows["`pr312`"] and "22,175,817" in rows["`pr312`"]
    assert "dvc exp run -S profile=pr312" in readme
