"""SPEC §7: G3 after mixed quantisation and dequantisation, through the artifact file."""

from __future__ import annotations

import dataclasses

import torch

from pipeline.model import GPT
from pipeline.quant.artifact import read_artifact, write_artifact


def test_g3_after_quantisation(tmp_path, record_params, fast_quant_cfg):
    m = record_params.model
    cfg = dataclasses.replace(
        m, num_layers=3, model_dim=256, num_heads=4, num_kv_heads=2, xsa_last_n=1, bigram_buckets=512,
        bigram_dim=64, rope_dims=16, rope_base=10000.0, ln_scale=True, logit_softcap=30.0, vocab_size=1024,
        mlp_mult=3, canon=dataclasses.replace(m.canon, placements=""),
        embed_dtype="fp32",  # SPEC §7: fp32 throughout (the record stores embeddings in bf16)
    )
    model = GPT(cfg).eval()
    g = torch.Generator().manual_seed(1234)
    state = model.state_dict()
    with torch.no_grad():
        for key in sorted(state):
            state[key].copy_(torch.randn(state[key].shape, generator=g) * 0.2)
    ids = torch.randint(0, 1024, (2, 65), generator=g)
    stats = write_artifact(tmp_path / "g3.ptz", model.state_dict(), fast_quant_cfg, {})
    assert (stats.counts["int6"], stats.counts["int8"], stats.counts["kept"]) == (6, 1, 29)
    fresh = GPT(cfg).eval()
    state_dict, _ = read_artifact(tmp_path / "g3.ptz")
    fresh.load_state_dict(state_dict)
    with torch.no_grad():
        loss = fresh(ids[:, :-1], ids[:, 1:])
    assert abs(loss.item() - 11.298460) < 2e-5
