"""A real (tiny) SentencePiece model trained on English text, and toy causal language models."""

from __future__ import annotations

import pydoc_data.topics
import pytest
import sentencepiece as spm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.runtime import Runtime

# Text the tokenizer has never seen (accents, typographic quotes, CJK, emoji, NFKC-folded forms),
# so byte fallback and normalisation are exercised.
EXOTIC_DOCS = [
    "Café naïve — “quoted” text, 日本語のテキスト and an emoji 🙂 here.",
    "Ligatures ﬁ and ﬂ, full-width ＡＢＣ, a circled ① and ½ fold under NFKC.",
    "   Leading   spaces,\ttabs\n\nand blank lines   collapse.   ",
    "Digits 1234567890 split one by one; 3.14159 too.",
]


def english_docs() -> list[str]:
    return [text for _, text in sorted(pydoc_data.topics.topics.items())]


@pytest.fixture(scope="session")
def sp_model(tmp_path_factory) -> spm.SentencePieceProcessor:
    """SPEC §1 settings at vocab 512, trained on the paragraphs of Python's pydoc topics."""
    paragraphs = [p for doc in english_docs() for p in doc.split("\n\n") if p.strip()]
    prefix = tmp_path_factory.mktemp("spm") / "tok"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(paragraphs), model_prefix=str(prefix), model_type="bpe", vocab_size=512,
        character_coverage=0.999, byte_fallback=True, split_digits=True, normalization_rule_name="nmt_nfkc",
        add_dummy_prefix=False, pad_id=0, bos_id=1, eos_id=2, unk_id=3, hard_vocab_limit=False,
        num_threads=1, minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_file=f"{prefix}.model")


@pytest.fixture()
def cpu_rt() -> Runtime:
    return Runtime(torch.device("cpu"), "gloo", None)


class ToyLM(nn.Module):
    """Causal toy: h_t = tanh(mean(e_s..e_t) + causal conv of e_{t-2..t}), soft-capped linear head.

    The running mean starts at the window's first token and the conv pads
    with zeros there, so every output depends on where its window starts:
    any mistake in the contexts changes the loss.
    """

    def __init__(self, vocab: int, dim: int = 16, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = nn.Parameter(torch.randn(vocab, dim, generator=g))
        self.conv = nn.Parameter(torch.randn(3, dim, generator=g) * 0.5)
        self.head = nn.Parameter(torch.randn(vocab, dim, generator=g))

    def logits(self, ids: Tensor) -> Tensor:
        e = self.emb[ids]
        steps = torch.arange(1, ids.shape[1] + 1, dtype=e.dtype)[None, :, None]
        mean = e.cumsum(1) / steps
        conv = sum(self.conv[k] * F.pad(e, (0, 0, k, 0))[:, : e.shape[1]] for k in range(3))
        z = torch.tanh(mean + conv) @ self.head.T
        return 30.0 * torch.tanh(z / 30.0)


class ToyLMWithLoss(ToyLM):
    """The same model seen through forward(ids, targets, reduction=...)."""

    def forward(self, ids: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
        logits = self.logits(ids)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction=reduction)
        return loss if reduction == "mean" else loss.view_as(targets)
