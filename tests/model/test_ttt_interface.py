"""The GPT's phased-TTT interface (ttt_adapters, ttt_token_losses, ttt_stream_loss) on every
switch set: fresh adapters change nothing, every adapter is wired and trains its own row,
the global phase's packed stream attends within documents only.  Parity of the whole
phased evaluation with the record: tests/evaluate/test_ttt.py (gpt_* cases)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline.config import PhasedTttConfig
from pipeline.model import GPT
from pipeline.model.attention import Segments
from tests.conftest import tiny_model_config
from tests.evaluate.ttt_cases import gpt_config

TTT = PhasedTttConfig(lora_rank=4, lora_alpha=8.0)


def _model(cfg) -> GPT:
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return model


CONFIGS = {
    # Canon A+C on the last two blocks, BigramHash, SmearGate, XSA: the record profile's components.
    "record-components": lambda: tiny_model_config(),
    # Every frontier switch, looped (layers 1-2 twice more in the forward).
    "frontier-looped": lambda: gpt_config("gpt_looped"),
    # Canon on every block with Canon-B (on q|k|v) and D, the frontier's lanes and gates too.
    "canon-abcd-frontier": lambda: dataclasses.replace(
        gpt_config("gpt_looped"), canon=dataclasses.replace(tiny_model_config().canon, placements="ABCD",
                                                            first_n=0, last_n=0)),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fresh_adapters_leave_the_model_unchanged(name):
    """B starts at zero, so the adapted losses are the plain forward's, bit for bit."""
    model = _model(CONFIGS[name]())
    vocab = model.cfg.vocab_size
    g = torch.Generator().manual_seed(1)
    x, y = torch.randint(2, vocab, (3, 24), generator=g), torch.randint(2, vocab, (3, 24), generator=g)
    x[:, 7] = 1
    adapters = model.ttt_adapters(3, TTT)
    assert len(adapters.q) == model.ttt_slots()
    with torch.no_grad():
        assert torch.equal(model.ttt_token_losses(x, y, adapters), model(x, y, reduction="none"))


def test_slots_follow_the_looped_order():
    model = _model(gpt_config("gpt_looped"))
    assert model.ttt_slots() == 7  # 5 blocks, layers 1-2 once more
    model.set_looping(False)
    assert model.ttt_slots() == 5


def test_every_adapter_is_wired_and_rows_stay_apart():
    """After one nudge of every B, each adapter kind moves the loss; row 1's adapters never
    reach row 0's losses; the adapters are not parameters of the model."""
    model = _model(gpt_config("gpt_looped"))
    x = torch.randint(2, 48, (2, 16), generator=torch.Generator().manual_seed(2))
    y = torch.roll(x, -1, dims=1)
    adapters = model.ttt_adapters(2, TTT)
    model_ids = {id(p) for p in model.parameters()}
    assert not any(id(p) in model_ids for p in adapters.parameters())
    with torch.no_grad():
        for module in adapters.modules():
            if hasattr(module, "B"):
                module.B.normal_(0.0, 0.05)
    base = model.ttt_token_losses(x, y, adapters)
    base.sum().backward()
    for kind in ("head", "q", "k", "v", "mlp", "out"):
        group = getattr(adapters, kind)
        loras = [group] if kind == "head" else list(group)
        for lora in loras:
            assert lora.B.grad is not None and lora.B.grad[0].abs().sum() > 0, kind
    with torch.no_grad():
        for module in adapters.modules():
            if hasattr(module, "B"):
                module.B[1].mul_(3.0)
        moved = model.ttt_token_losses(x, y, adapters)
    assert torch.equal(moved[0], base[0].detach()) and not torch.equal(moved[1], base[1].detach())


def test_segments_follow_the_records_cu_seqlens_rule():
    ids = torch.tensor([1, 5, 5, 5, 5, 5, 1, 5, 5, 1, 5])
    assert Segments.at_documents(ids, 1, 4).bounds == (0, 4, 6, 9, 11)
    assert Segments.at_documents(ids, 1, 0).bounds == (0, 6, 9, 11)
    assert Segments.at_documents(ids[1:], 1, 0).bounds == (0, 5, 8, 10)  # a stream that starts mid-document


def test_stream_loss_attends_within_documents_only():
    """The packed stream's loss is the mean of each document run on its own (the frontier model
    masks the smear at BOS, so nothing else crosses a document boundary)."""
    model = _model(gpt_config("gpt_looped"))
    g = torch.Generator().manual_seed(3)
    docs = [torch.cat((torch.tensor([1]), torch.randint(2, 48, (n,), generator=g))) for n in (9, 20, 5)]
    stream = torch.cat(docs + [torch.tensor([1])])
    with torch.no_grad():
        packed = model.ttt_stream_loss(stream[:-1], stream[1:], max_segment=32)
        pieces, start = [], 0
        for doc in docs:
            n = doc.numel()
            pieces.append(model(stream[None, start:start + n], stream[None, start + 1:start + n + 1],
                                reduction="none")[0])
            start += n
        alone = torch.cat(pieces).mean()
        crossing = model(stream[None, :-1], stream[None, 1:])
    assert packed.item() == pytest.approx(alone.item(), abs=1e-5)
    assert abs(packed.item() - crossing.item()) > 1e-3  # without the segments the documents would mix
