"""A tiny causal model for the TTT tests and scripts/parity/ttt_parity.py.

It offers both interfaces: the 1.0611 record's (``forward(x, y, cu_seqlens=,
max_seqlen=)``, ``forward_ttt(x, y, lora)``, and the attributes its
``BatchedTTTLoRA`` reads: ``qo_bank``, ``tok_emb``, ``blocks[i].attn``) and
pgolf's `PhasedModel` (``ttt_adapters``, ``ttt_token_losses``,
``ttt_stream_loss``), computing the same function through either.  The head
adapter and the first block's q adapter act on the hidden state, so both
adapter kinds get gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.config import PhasedTttConfig
from pipeline.evaluate.lora import AdapterShape, DocumentAdapters


class _Attn(nn.Module):
    def __init__(self, heads: int, kv_heads: int) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads = heads, kv_heads


class _Block(nn.Module):
    def __init__(self, heads: int, kv_heads: int) -> None:
        super().__init__()
        self.attn = _Attn(heads, kv_heads)


class ToyTttModel(nn.Module):
    def __init__(self, vocab: int, dim: int = 16, heads: int = 4, kv_heads: int = 2, blocks: int = 2,
                 seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.tok_emb = nn.Embedding(vocab, dim)
        with torch.no_grad():
            self.tok_emb.weight.copy_(torch.randn(vocab, dim, generator=g))
        self.qo_bank = nn.Parameter(torch.randn(2 * blocks, dim, dim, generator=g) / dim ** 0.5)
        self.conv = nn.Parameter(torch.randn(3, dim, generator=g) * 0.5)
        self.blocks = nn.ModuleList(_Block(heads, kv_heads) for _ in range(blocks))
        self.vocab, self.dim = vocab, dim

    def _hidden(self, x: Tensor, q_adapter=None) -> Tensor:
        e = self.tok_emb(x)
        steps = torch.arange(1, x.shape[1] + 1, dtype=e.dtype, device=e.device)[None, :, None]
        mean = e.cumsum(1) / steps
        conv = sum(self.conv[k] * F.pad(e, (0, 0, k, 0))[:, : e.shape[1]] for k in range(3))
        h = torch.tanh(mean + conv) @ self.qo_bank[0]
        if q_adapter is not None:
            h = h + q_adapter(h)
        return h

    def _losses(self, x: Tensor, y: Tensor, head_adapter=None, q_adapter=None) -> Tensor:
        h = self._hidden(x, q_adapter)
        logits = h @ self.tok_emb.weight.T
        if head_adapter is not None:
            logits = logits + head_adapter(h)
        logits = 30.0 * torch.tanh(logits / 30.0)
        return F.cross_entropy(logits.float().reshape(-1, self.vocab), y.reshape(-1), reduction="none").view_as(y)

    # --- the record's interface
    def forward(self, x: Tensor, y: Tensor, cu_seqlens=None, max_seqlen: int = 0) -> Tensor:
        return self._losses(x, y).mean()

    def forward_ttt(self, x: Tensor, y: Tensor, lora) -> Tensor:
        return self._losses(x, y, lora.lm_head_lora, lora.q_loras[0])

    # --- pgolf's PhasedModel
    def ttt_adapters(self, batch: int, cfg: PhasedTttConfig) -> DocumentAdapters:
        attn = self.blocks[0].attn
        shape = AdapterShape(self.dim, attn.num_kv_heads * (self.dim // attn.num_heads), self.vocab, self.dim,
                             len(self.blocks))
        return DocumentAdapters(batch, shape, cfg.lora_rank, cfg.lora_alpha, k=cfg.k_lora, mlp=cfg.mlp_lora,
                                out=cfg.o_lora, warm_start_a=cfg.warm_start_a)

    def ttt_token_losses(self, x: Tensor, y: Tensor, adapters: DocumentAdapters) -> Tensor:
        return self._losses(x, y, adapters.head, adapters.q[0])

    def ttt_stream_loss(self, x: Tensor, y: Tensor, max_segment: int = 0) -> Tensor:  # no attention: no segments
        return self._losses(x[None], y[None]).mean()

    # --- score-first TTT
    def logits(self, x: Tensor) -> Tensor:
        h = self._hidden(x)
        return 30.0 * torch.tanh(h @ self.tok_emb.weight.T / 30.0)


def toy_stream(vocab: int, docs: int, seed: int = 0, bos: int = 1, min_len: int = 5, max_len: int = 160) -> Tensor:
    """BOS-separated random documents of random lengths (ids 4..vocab-1), deterministic."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for _ in range(docs):
        n = int(torch.randint(min_len, max_len, (1,), generator=g))
        parts += [torch.tensor([bos]), torch.randint(4, vocab, (n,), generator=g)]
    return torch.cat(parts).to(torch.int64)
