"""FlexAttention route for per-document attention (CUDA without FlashAttention-3): the
BlockMask built from cu_seqlens against FlexAttention's own `create_block_mask`, the flex
path's values and q/k/v gradients against the masked-SDPA path, the GPT's loss and
gradients on a packed row (frontier switches) via flex against via the mask, one BlockMask
per forward, one traced graph for two boundary sets (Dynamo; Inductor's CPU flex forward,
slow), and on CUDA only the compiled GPT on the real route.

On the CPU the product route stays the mask (flex runs only on CUDA under torch.compile),
so these tests force the route with `flex_on_cpu`.  Eager flex_attention on the CPU runs
PyTorch's unfused reference (warning once that it is unfused: silenced here); its backward
is the same reference, refused on the CPU by a device guard that `flex_on_cpu` lifts."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.attention.flex_attention as flex

import pipeline.model.attention as attention
from pipeline.model.attention import CausalSelfAttention, Segments, document_block_mask
from tests.conftest import tiny_model_config
from tests.model.helpers import fill_like_spec
from tests.model.test_document_parity import RECORD_DOCUMENT_LOSS, parity

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

BLOCK = 16  # small tiles, so that short test streams have empty, partial and full tiles

# (starts, total, cut every, max_len bound): segments cut at max_len, a one-token segment, a
# BOS at 0, one unbroken document, a stream not a whole number of tiles, over 64 segments
# (cu_seqlens padded to 128), tile-aligned boundaries.
BOUNDARY_SETS = [
    ([5, 9, 30, 31, 52], 70, 16, 16),
    ([0, 40], 96, 0, 56),
    ([], 64, 0, 64),
    ([17, 18, 19, 50, 51], 83, 24, 24),
    (list(range(2, 140, 2)), 140, 0, 2),
    ([16, 32, 48], 64, 16, 16),
]


@pytest.fixture
def flex_on_cpu(monkeypatch):
    """Segmented attention takes the flex route on the CPU, eagerly, with gradients."""
    monkeypatch.setattr(attention, "flex_applies", lambda ref: True)
    monkeypatch.setattr(attention, "FLEX_BLOCK_SIZE", BLOCK)
    guard = flex._validate_device

    def no_cpu_backward_guard(q, k, v):
        guard(*(t.detach() for t in (q, k, v)))

    monkeypatch.setattr(flex, "_validate_device", no_cpu_backward_guard)


def _segments(starts, total, cut, bound) -> Segments:
    return Segments.from_starts(starts, total, cut, bound=bound)


@pytest.mark.parametrize("starts,total,cut,bound", BOUNDARY_SETS)
def test_block_mask_equals_flex_own_construction(starts, total, cut, bound):
    seg = _segments(starts, total, cut, bound)
    ours = document_block_mask(seg.cu_seqlens, total, BLOCK)
    dense = seg.mask(total)
    theirs = flex.create_block_mask(lambda b, h, q, kv: dense[q, kv], 1, 1, total, total, device="cpu",
                                    BLOCK_SIZE=BLOCK)
    for name in ("kv_num_blocks", "full_kv_num_blocks", "q_num_blocks", "full_q_num_blocks"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), rtol=0, atol=0, msg=name)
    for num, idx in (("kv_num_blocks", "kv_indices"), ("full_kv_num_blocks", "full_kv_indices")):
        cols = getattr(ours, idx).size(-1)
        a = flex._ordered_to_dense(getattr(ours, num), getattr(ours, idx), cols)
        b = flex._ordered_to_dense(getattr(theirs, num), getattr(theirs, idx), cols)
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=idx)
    # the mask_mod itself is the dense mask, padding tiles included
    torch.testing.assert_close(flex.create_mask(ours.mask_mod, 1, 1, total, total, device="cpu")[0, 0], dense)


def _attention(num_kv_heads: int):
    torch.manual_seed(0)
    cfg = tiny_model_config(canon=dict(placements=""), num_kv_heads=num_kv_heads)
    attn = CausalSelfAttention(cfg, use_xsa=False)
    fill_like_spec(attn, 5)
    return attn, cfg


@pytest.mark.parametrize("num_kv_heads", [2, 4], ids=["gqa", "mha"])
@pytest.mark.parametrize("starts,total,cut,bound", BOUNDARY_SETS)
def test_flex_equals_the_mask_values_and_gradients(flex_on_cpu, monkeypatch, starts, total, cut, bound,
                                                  num_kv_heads):
    attn, cfg = _attention(num_kv_heads)
    seg = _segments(starts, total, cut, bound)
    g = torch.Generator().manual_seed(total)
    q = torch.randn(1, total, cfg.num_heads, cfg.head_dim, generator=g, requires_grad=True)
    k, v = (torch.randn(1, total, cfg.num_kv_heads, cfg.head_dim, generator=g, requires_grad=True)
            for _ in range(2))
    w = torch.randn(1, total, cfg.num_heads, cfg.head_dim, generator=g)
    assert attn.segment_route(q) == "flex"
    flexed = attn._attend_segments(q, k, v, seg)
    grads_flex = torch.autograd.grad((flexed * w).sum(), (q, k, v))
    monkeypatch.setattr(attention, "flex_applies", lambda ref: False)
    assert attn.segment_route(q) == "mask"
    masked = attn._attend_segments(q, k, v, seg)
    grads_mask = torch.autograd.grad((masked * w).sum(), (q, k, v))
    torch.testing.assert_close(flexed, masked, rtol=0, atol=2e-6)
    for name, a, b in zip("qkv", grads_flex, grads_mask):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=f"d{name}")


def test_the_cpu_route_stays_the_mask():
    attn, cfg = _attention(2)
    short = torch.zeros(1, 64, cfg.num_heads, cfg.head_dim)
    long = torch.zeros(1, attention.MASK_MAX_TOKENS + 1, cfg.num_heads, cfg.head_dim)
    assert not attention.flex_applies(short)
    assert attn.segment_route(short) == "mask" and attn.segment_route(long) == "loop"
    seg = Segments.from_starts([3], 64, 0)
    assert attn.prepare_segments(seg, short) is seg and seg.block_mask is None


def _frontier_model_and_row():
    case = parity.fp.CASES[0]  # frontier switches, small size, looped
    model, _ = parity.fp.filled(parity.fp.case_config(case), case.seq_len, case.looping)
    x, y, starts = parity.forward_inputs(model.cfg.vocab_size)
    seg = Segments.from_starts(starts, x.size(1), parity.FORWARD_SEQ_LEN, bound=parity.FORWARD_SEQ_LEN)
    return model, x, y, seg


def test_gpt_loss_and_gradients_via_flex_equal_via_the_mask(flex_on_cpu, monkeypatch):
    model, x, y, seg = _frontier_model_and_row()
    assert x.size(1) > 4 * BLOCK and len(seg.bounds) > 5
    builds = []

    def counted(*args):
        builds.append(args[1])
        return document_block_mask(*args)

    monkeypatch.setattr(attention, "document_block_mask", counted)
    params = [p for p in model.parameters() if p.requires_grad]
    loss_flex = model(x, y, segments=seg)
    grads_flex = torch.autograd.grad(loss_flex, params)
    assert builds == [x.size(1)]  # once per forward, shared by every layer
    monkeypatch.setattr(attention, "flex_applies", lambda ref: False)
    loss_mask = model(x, y, segments=seg)
    grads_mask = torch.autograd.grad(loss_mask, params)
    assert abs(loss_flex.item() - RECORD_DOCUMENT_LOSS) < 1e-5  # the record's packed-row loss
    torch.testing.assert_close(loss_flex, loss_mask, rtol=0, atol=2e-6)
    for (name, _), a, b in zip(((n, p) for n, p in model.named_parameters() if p.requires_grad),
                               grads_flex, grads_mask):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


def test_segments_keep_a_prepared_block_mask():
    seg = Segments.from_starts([5, 40], 70, 0)
    prepared = seg.with_block_mask(70)
    assert prepared.block_mask is not None and prepared.block_mask.seq_lengths == (70, 70)
    assert prepared.with_block_mask(70) is prepared and prepared == seg  # equality ignores the mask
    assert prepared.with_block_mask(80).block_mask.seq_lengths == (80, 80)
    assert dataclasses.replace(prepared, block_mask=None).block_mask is None


@pytest.mark.parametrize("route", ["mask", "flex"])
def test_one_traced_graph_serves_different_boundaries(route, request):
    """Dynamo traces the whole model (fullgraph), with the dense mask or the BlockMask built
    inside: two batches with other document boundaries reuse one graph.  The counting
    backend runs the graph eagerly, so no Inductor compile is paid here (~5 s)."""
    from torch._dynamo.testing import CompileCounter

    if route == "flex":
        request.getfixturevalue("flex_on_cpu")

    from pipeline.model import GPT

    torch.manual_seed(0)
    model = GPT(tiny_model_config(canon=dict(placements="")))
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=False)
    g = torch.Generator().manual_seed(1)
    for starts in ([3, 40], [10, 11, 12, 50, 60]):
        ids = torch.randint(2, 64, (1, 65), generator=g)
        seg = Segments.from_starts(starts, 64, 32, bound=32)
        loss = compiled(ids[:, :-1], ids[:, 1:], segments=seg)
        loss.backward()
        torch.testing.assert_close(loss, model(ids[:, :-1], ids[:, 1:], segments=seg), rtol=0, atol=1e-5)
    assert counter.frame_count == 1


@pytest.mark.slow
@pytest.mark.compile
def test_inductor_compiles_flex_with_the_block_mask_in_graph():
    """Inductor's own lowering (CPU flex template, forward only: the CPU has no flex
    backward) of the BlockMask built from cu_seqlens inside the graph: one graph for two
    boundary sets, equal to the dense mask (~15 s)."""
    from torch._dynamo.testing import CompileCounterWithBackend

    n = 256

    def attend(q, k, v, cu):
        return flex.flex_attention(q, k, v, block_mask=document_block_mask(cu, n, 128), enable_gqa=True)

    counter = CompileCounterWithBackend("inductor")
    compiled = torch.compile(attend, backend=counter, fullgraph=True, dynamic=False)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, n, 16, generator=g)
    k, v = (torch.randn(1, 2, n, 16, generator=g) for _ in range(2))
    for starts in ([3, 100, 200], [50, 51, 129, 130, 131]):
        seg = Segments.from_starts(starts, n, 0)
        ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=seg.mask(n), enable_gqa=True)
        torch.testing.assert_close(compiled(q, k, v, seg.cu_seqlens), ref, rtol=0, atol=1e-6)
    assert counter.frame_count == 1


@pytest.mark.slow
@pytest.mark.compile
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the product flex route: CUDA under torch.compile")
def test_compiled_gpt_on_cuda_takes_flex_with_one_graph():
    """The real route (no patches): Inductor compiles the tiny GPT once, flex's loss and
    gradients on two boundary sets equal the eager model's (the dense mask on CUDA)."""
    from torch._dynamo.testing import CompileCounterWithBackend

    from pipeline.model import GPT

    if attention.fa3_available():
        pytest.skip("FlashAttention-3 is installed: segments go to its varlen kernel")
    torch.manual_seed(0)
    model = GPT(tiny_model_config(canon=dict(placements=""))).cuda()
    builds = []
    build = attention.document_block_mask

    def counted(*args):
        builds.append(args[1])
        return build(*args)

    attention.document_block_mask = counted  # no monkeypatch fixture: also runs as a plain call
    try:
        counter = CompileCounterWithBackend("inductor")
        compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=False)
        g = torch.Generator().manual_seed(1)
        n = 8 * attention.FLEX_BLOCK_SIZE
        for starts in ([3, 200, 201, 700], [130, 400, 401, 402, 900, 1000]):
            ids = torch.randint(2, 64, (1, n + 1), generator=g).cuda()
            seg = Segments.from_starts(starts, n, 256, torch.device("cuda"), bound=256)
            loss = compiled(ids[:, :-1], ids[:, 1:], segments=seg)
            grads = torch.autograd.grad(loss, list(model.parameters()))
            ref = model(ids[:, :-1], ids[:, 1:], segments=seg)  # eager: the dense-mask route
            ref_grads = torch.autograd.grad(ref, list(model.parameters()))
            torch.testing.assert_close(loss, ref, rtol=0, atol=1e-4)
            for a, b in zip(grads, ref_grads):
                torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    finally:
        attention.document_block_mask = build
    assert counter.frame_count == 1
    assert builds == [n]  # traced once: the flex route, one BlockMask per forward
