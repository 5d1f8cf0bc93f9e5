"""SPEC §7 G1-G3: the reference implementation's losses on SPEC-filled weights, fp32 throughout."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline.model import GPT
from tests.model.helpers import canon_config, fill_like_spec


@pytest.mark.parametrize(
    ("layers", "dim", "xsa", "seq_len", "expected"),
    [
        pytest.param(5, 128, 2, 96, 9.371509, id="G1"),
        pytest.param(2, 128, 1, 1536, 9.305356, id="G2-ntk"),
        pytest.param(3, 256, 1, 64, 11.327649, id="G3"),
    ],
)
def test_golden_loss(record_params, layers, dim, xsa, seq_len, expected):
    cfg = dataclasses.replace(
        record_params.model, num_layers=layers, model_dim=dim, num_heads=4, num_kv_heads=2,
        xsa_last_n=xsa, bigram_buckets=512, bigram_dim=64, rope_dims=16, rope_base=10000.0,
        ln_scale=True, logit_softcap=30.0, vocab_size=1024, mlp_mult=3,
        embed_dtype="fp32",  # SPEC §7: CPU, fp32 throughout (the record stores embeddings in bf16)
    )
    model = GPT(canon_config(cfg, placements="")).eval()
    g = fill_like_spec(model)
    ids = torch.randint(0, 1024, (2, seq_len + 1), generator=g)
    with torch.no_grad():
        loss = model(ids[:, :-1], ids[:, 1:])
    assert loss.dtype == torch.float32
    assert abs(loss.item() - expected) < 2e-5
