"""Per-document attention in training (`train.batch_layout: documents`): pgolf's GPT on a
packed row with Segments against the 1.0611 record's GPT with cu_seqlens (loss pinned from
scripts/parity/document_parity.py), the masked-SDPA path against one causal call per
segment, and one compiled graph for batches with different document boundaries."""

from __future__ import annotations

import torch

from pipeline.model.attention import CausalSelfAttention, Segments
from tests.conftest import tiny_model_config
from tests.model.helpers import fill_like_spec
from tests.scripts import load_script

# The record's loss on the packed row (frontier switches, small size, looped; CPU, fp32),
# printed by scripts/parity/document_parity.py, where pgolf's equals it to 0.00e+00.
RECORD_DOCUMENT_LOSS = 8.046738


parity = load_script("scripts/parity/document_parity.py")


def test_packed_documents_forward_matches_the_record():
    assert abs(parity.pgolf_forward_loss() - RECORD_DOCUMENT_LOSS) < 1e-5


def _attention():
    torch.manual_seed(0)
    cfg = tiny_model_config(canon=dict(placements=""))
    attn = CausalSelfAttention(cfg, use_xsa=True)
    fill_like_spec(attn, 5)
    return attn, cfg


def test_masked_attention_equals_one_causal_call_per_segment():
    attn, cfg = _attention()
    g = torch.Generator().manual_seed(2)
    n, hd = 70, cfg.head_dim
    q = torch.randn(1, n, cfg.num_heads, hd, generator=g, requires_grad=True)
    k = torch.randn(1, n, cfg.num_kv_heads, hd, generator=g, requires_grad=True)
    v = torch.randn(1, n, cfg.num_kv_heads, hd, generator=g, requires_grad=True)
    seg = Segments.from_starts([5, 9, 30, 31, 52], n, 16, bound=16)
    assert seg.bounds == (0, 5, 9, 25, 30, 31, 47, 52, 68, 70)
    masked = attn._attend_segments(q, k, v, seg)
    b = seg.bounds
    looped = torch.cat([attn._attend(q[:, s:e], k[:, s:e], v[:, s:e]) for s, e in zip(b, b[1:])], dim=1)
    torch.testing.assert_close(masked, looped, rtol=0, atol=1e-6)
    w = torch.randn(masked.shape, generator=g)
    grads_masked = torch.autograd.grad((masked * w).sum(), (q, k, v))
    grads_looped = torch.autograd.grad((looped * w).sum(), (q, k, v))
    for a, c in zip(grads_masked, grads_looped):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-5)


def test_a_long_eager_stream_attends_segment_by_segment(monkeypatch):
    import pipeline.model.attention as attention

    attn, cfg = _attention()
    g = torch.Generator().manual_seed(6)
    q = torch.randn(1, 40, cfg.num_heads, cfg.head_dim, generator=g)
    k, v = (torch.randn(1, 40, cfg.num_kv_heads, cfg.head_dim, generator=g) for _ in range(2))
    seg = Segments.from_starts([7, 19], 40, 16)
    masked = attn._attend_segments(q, k, v, seg)
    monkeypatch.setattr(attention, "MASK_MAX_TOKENS", 32)
    monkeypatch.setattr(Segments, "mask", None)  # the loop builds no mask
    torch.testing.assert_close(attn._attend_segments(q, k, v, seg), masked, rtol=0, atol=1e-6)


def test_segments_pad_cu_seqlens_to_the_bucket():
    seg = Segments.from_starts(list(range(1, 80)), 80, 0)
    assert seg.cu_seqlens.numel() == 128 and seg.bounds == tuple(range(81)) and seg.max_len == 1
    assert Segments.from_starts([0, 3], 10, 4).bounds == (0, 3, 7, 10)  # a BOS at 0 is no extra segment
