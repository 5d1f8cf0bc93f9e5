"""Standard and sliding-window scoring against brute force with the same contexts."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from pipeline.evaluate.bytes import build_byte_luts, stream_bytes
from pipeline.evaluate.scoring import (
    EvalSums,
    evaluate_sliding_window,
    evaluate_standard,
    per_token_losses,
    score_windows,
)
from pipeline.evaluate.windows import plan_sliding, plan_standard

from .conftest import ToyLM, ToyLMWithLoss, english_docs

SEQ_LEN, STRIDE = 32, 8


@pytest.fixture(scope="module")
def val_tokens(sp_model) -> torch.Tensor:
    ids: list[int] = []
    for doc in english_docs()[:3]:
        ids += [sp_model.bos_id()] + sp_model.encode(doc)
    return torch.tensor(ids[:400], dtype=torch.int64)


@pytest.fixture(scope="module")
def luts(sp_model):
    return build_byte_luts(sp_model)


@pytest.fixture()
def eval_cfg(record_params):
    # The whole stream (eval.stream: full); the truncated stream has its own test below.
    return dataclasses.replace(record_params.eval, seq_len=SEQ_LEN, stride=STRIDE, batch_seqs=4, max_tokens=0,
                               stream="full")


def sliding_context_start(i: int, n: int, seq_len: int, stride: int) -> int:
    """Where target i's context starts under the documented sliding rule (derived independently)."""
    if n <= seq_len or i < seq_len:
        return 0
    start = ((i - seq_len) // stride + 1) * stride
    return start if start + seq_len <= n else n - seq_len


def brute_force(model, tokens: torch.Tensor, targets: range, context_start) -> float:
    """Sum of per-target losses, each from its own forward pass over exactly its context."""
    total = 0.0
    with torch.no_grad():
        for i in targets:
            c = context_start(i)
            logits = model.logits(tokens[c : i + 1][None])[0, -1]
            total += F.cross_entropy(logits[None].float(), tokens[i + 1 : i + 2]).item()
    return total


@pytest.mark.parametrize("n", [SEQ_LEN + 10 * STRIDE, SEQ_LEN + 10 * STRIDE + 5, 20, SEQ_LEN])
def test_sliding_equals_brute_force(n, val_tokens, luts, cpu_rt, sp_model):
    tokens = val_tokens[: n + 1]
    model = ToyLM(sp_model.vocab_size())
    plan = plan_sliding(n, SEQ_LEN, STRIDE)
    sums = score_windows(model, tokens, plan, luts, cpu_rt, batch_seqs=3)
    expected = brute_force(model, tokens, range(n), lambda i: sliding_context_start(i, n, SEQ_LEN, STRIDE))
    assert sums.tokens == n
    assert sums.bytes == stream_bytes(tokens, luts)
    assert sums.loss_sum == pytest.approx(expected, rel=1e-5)


def test_standard_equals_brute_force(val_tokens, luts, cpu_rt, eval_cfg, sp_model):
    model = ToyLM(sp_model.vocab_size())
    sums = evaluate_standard(model, val_tokens, luts, eval_cfg, cpu_rt)
    scored = (val_tokens.numel() - 1) // SEQ_LEN * SEQ_LEN
    expected = brute_force(model, val_tokens, range(scored), lambda i: i // SEQ_LEN * SEQ_LEN)
    assert sums.tokens == scored
    assert sums.bytes == stream_bytes(val_tokens[: scored + 1], luts)
    assert sums.loss_sum == pytest.approx(expected, rel=1e-5)


def test_both_model_protocols_agree(val_tokens, luts, cpu_rt, eval_cfg, sp_model):
    a = evaluate_sliding_window(ToyLM(sp_model.vocab_size()), val_tokens, luts, eval_cfg, cpu_rt)
    b = evaluate_sliding_window(ToyLMWithLoss(sp_model.vocab_size()), val_tokens, luts, eval_cfg, cpu_rt)
    assert a.tokens == b.tokens and a.bytes == b.bytes
    assert a.loss_sum == pytest.approx(b.loss_sum, rel=1e-6)
    with pytest.raises(TypeError, match="neither"):
        per_token_losses(torch.nn.Linear(2, 2), val_tokens[None, :4], val_tokens[None, 1:5])


@pytest.mark.parametrize("planner", ["sliding", "standard"])
def test_two_ranks_sum_to_one(planner, val_tokens, luts, cpu_rt, sp_model):
    model = ToyLM(sp_model.vocab_size())
    n = val_tokens.numel() - 1
    plan = plan_sliding(n, SEQ_LEN, STRIDE) if planner == "sliding" else plan_standard(n, SEQ_LEN)
    whole = score_windows(model, val_tokens, plan, luts, cpu_rt, batch_seqs=5)
    parts = [score_windows(model, val_tokens, plan, luts, cpu_rt, batch_seqs=3, rank=r, world_size=2) for r in (0, 1)]
    assert parts[0].tokens > 0 and parts[1].tokens > 0
    total = parts[0] + parts[1]
    assert (total.tokens, total.bytes) == (whole.tokens, whole.bytes)
    assert total.loss_sum == pytest.approx(whole.loss_sum, rel=1e-9)


def test_max_tokens_caps_the_stream(val_tokens, luts, cpu_rt, eval_cfg, sp_model):
    model = ToyLM(sp_model.vocab_size())
    capped = dataclasses.replace(eval_cfg, max_tokens=100)
    sums = evaluate_sliding_window(model, val_tokens, luts, capped, cpu_rt)
    assert sums.tokens == 100 and sums.bytes == stream_bytes(val_tokens[:101], luts)
    prefix = evaluate_sliding_window(model, val_tokens[:101], luts, eval_cfg, cpu_rt)
    assert sums == prefix
    # numpy uint16 streams (as read from shards) are accepted too.
    as_numpy = evaluate_sliding_window(model, val_tokens.numpy().astype("uint16"), luts, capped, cpu_rt)
    assert as_numpy == sums


def test_bpb_formula_and_mode_restored(val_tokens, luts, cpu_rt, eval_cfg, sp_model):
    model = ToyLM(sp_model.vocab_size()).train()
    seen: list[tuple[int, int]] = []
    sums = evaluate_sliding_window(model, val_tokens, luts, eval_cfg, cpu_rt, progress=lambda d, t: seen.append((d, t)))
    assert model.training
    assert seen[-1][0] == seen[-1][1] and len(seen) == math.ceil(seen[-1][1] / eval_cfg.batch_seqs)
    assert sums.loss == pytest.approx(sums.loss_sum / sums.tokens)
    assert sums.bpb == pytest.approx(sums.loss_sum / math.log(2) / sums.bytes)
    assert set(sums.to_dict()) == {"loss", "bpb", "tokens", "bytes"}
    assert EvalSums(1.0, 2, 3) + EvalSums(0.5, 1, 1) == EvalSums(1.5, 3, 4)


def test_sliding_with_the_gpt(val_tokens, luts, cpu_rt, eval_cfg):
    """The real model through its forward(reduction="none"); brute force runs one pass per
    context start (the GPT is causal: a prefix's outputs do not depend on what follows)."""
    from pipeline.model import GPT
    from tests.conftest import tiny_model_config

    torch.manual_seed(0)
    model = GPT(tiny_model_config(vocab_size=512)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    n = SEQ_LEN + 3 * STRIDE + 3
    tokens = val_tokens[: n + 1]
    sums = evaluate_sliding_window(model, tokens, luts, eval_cfg, cpu_rt)
    by_start: dict[int, list[int]] = {}
    for i in range(n):
        by_start.setdefault(sliding_context_start(i, n, SEQ_LEN, STRIDE), []).append(i)
    expected = 0.0
    with torch.no_grad():
        for c, targets in by_start.items():
            logits = model.logits(tokens[c : targets[-1] + 1][None])[0]
            rows = torch.tensor(targets) - c
            expected += F.cross_entropy(logits[rows].float(), tokens[torch.tensor(targets) + 1], reduction="sum").item()
    assert sums.tokens == n
    assert sums.loss_sum == pytest.approx(expected, rel=1e-5)


def test_truncated_stream_scores_whole_windows_only(val_tokens, luts, cpu_rt, eval_cfg, sp_model):
    # The reference cuts the validation tokens to a multiple of seq_len targets for every
    # evaluation, the sliding window included: 399 targets -> 12 x 32 = 384.
    model = ToyLM(sp_model.vocab_size())
    truncated = dataclasses.replace(eval_cfg, stream="truncated")
    n = val_tokens.numel() - 1
    assert n == 399
    sums = evaluate_sliding_window(model, val_tokens, luts, truncated, cpu_rt)
    assert sums.tokens == 384 and sums.bytes == stream_bytes(val_tokens[:385], luts)
    assert sums == evaluate_sliding_window(model, val_tokens[:385], luts, eval_cfg, cpu_rt)
    full = evaluate_sliding_window(model, val_tokens, luts, eval_cfg, cpu_rt)
    assert full.tokens == 399 and full.loss_sum > sums.loss_sum
    # Standard windows drop the partial tail either way; max_tokens caps before the cut.
    assert evaluate_standard(model, val_tokens, luts, truncated, cpu_rt) == evaluate_standard(
        model, val_tokens, luts, eval_cfg, cpu_rt)
    capped = dataclasses.replace(truncated, max_tokens=100)
    assert evaluate_sliding_window(model, val_tokens, luts, capped, cpu_rt).tokens == 96
    with pytest.raises(ValueError, match="fewer than eval.seq_len=32"):
        evaluate_sliding_window(model, val_tokens[:20], luts, truncated, cpu_rt)
