"""Input-side token mixing: BigramHash and SmearGate (SPEC §2).

BigramHash gives every (previous, current) token pair a learned vector through
a hashed table, so the first layer already sees a bigram feature.  SmearGate
blends each position with the one before it through a per-channel gate.
Both only look backwards, so they keep the model causal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.model.layers import CastedLinear

# Odd multipliers of the reference hash; the products stay inside int32 for any
# id below 2**15, and the arithmetic is done in int32 like the reference.
HASH_MUL_CURRENT = 36313
HASH_MUL_PREVIOUS = 27191

# SPEC §1's fixed ids: every document starts with bos = 1.
BOS_ID = 1


def bigram_buckets(ids: Tensor, num_buckets: int) -> Tensor:
    """Bucket of each position: xor(36313 id[t], 27191 id[t-1]) mod (buckets-1);
    position 0 (no previous token) gets the reserved last bucket."""
    t = ids.to(torch.int32)
    mod = num_buckets - 1
    pair = torch.bitwise_xor(HASH_MUL_CURRENT * t[..., 1:], HASH_MUL_PREVIOUS * t[..., :-1]) % mod
    first = torch.full_like(t[..., :1], mod)
    return torch.cat((first, pair), dim=-1).long()


class BigramHash(nn.Module):
    """scale * proj(embed(bucket)).  `embed` and `proj` start at zero here;
    init.py then gives `proj` its scaled orthogonal init (as the reference
    does), so only `embed` stays zero.  When bigram_dim equals model_dim the
    reference has no projection, and neither does this module."""

    def __init__(self, num_buckets: int, bigram_dim: int, model_dim: int, scale_init: float) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.embed = nn.Embedding(num_buckets, bigram_dim)
        nn.init.zeros_(self.embed.weight)
        self.proj = CastedLinear(bigram_dim, model_dim) if bigram_dim != model_dim else None
        if self.proj is not None:
            nn.init.zeros_(self.proj.weight)
        self.scale = nn.Parameter(torch.tensor(float(scale_init), dtype=torch.float32))

    def forward(self, ids: Tensor) -> Tensor:
        h = self.embed(bigram_buckets(ids, self.num_buckets)).float()  # bf16 storage computes like fp32
        if self.proj is not None:
            h = self.proj(h)
        return h * self.scale.to(h.dtype)


class SmearGate(nn.Module):
    """out_t = (1 - g) x_t + g x_{t-1} with g = sigmoid(gate) per channel, x_{-1} = 0.

    In a packed stream position t-1 may be the last token of the previous
    document.  With `bos_mask` a BOS position sees x_{t-1} = 0, exactly as the
    stream's first position does, so nothing leaks across documents (the later
    records' `not_bos` fix); without it the reference's behaviour is kept.
    """

    def __init__(self, dim: int, bos_mask: bool = False) -> None:
        super().__init__()
        self.bos_mask = bos_mask
        self.gate = nn.Parameter(torch.zeros(dim, dtype=torch.float32))

    def forward(self, x: Tensor, ids: Tensor | None = None) -> Tensor:
        g = torch.sigmoid(self.gate.to(x.dtype))
        prev = torch.cat((torch.zeros_like(x[:, :1]), x[:, :-1]), dim=1)
        if self.bos_mask:
            if ids is None:
                raise ValueError("SmearGate with bos_mask needs the token ids")
            prev = prev * (ids != BOS_ID).unsqueeze(-1).to(x.dtype)
        return (1 - g) * x + g * prev


class TokenSmearGate(nn.Module):
    """PR #1667's token-gated smear (modded-nanogpt style), on the embeddings:

        out_t = x_t + lam * sigmoid(w . x_t[:window]) * x_{t-1}      (t >= 1; out_0 = x_0)

    One gate per token from its first `window` dims.  `gate` (1, window) and
    `lam` start at zero, so the module starts as the identity.  With `bos_mask`
    (the 1.0611 record's fix) a BOS position takes nothing from the token
    before it, so nothing leaks from one document into the next.
    """

    def __init__(self, window: int, bos_mask: bool = False) -> None:
        super().__init__()
        self.window = window
        self.bos_mask = bos_mask
        self.gate = nn.Parameter(torch.zeros(1, window, dtype=torch.float32))
        self.lam = nn.Parameter(torch.zeros(1, dtype=torch.float32))

    def forward(self, x: Tensor, ids: Tensor | None = None) -> Tensor:
        g = self.lam.to(x.dtype) * torch.sigmoid(F.linear(x[:, 1:, : self.window], self.gate.to(x.dtype)))
        prev = x[:, :-1]
        if self.bos_mask:
            if ids is None:
                raise ValueError("TokenSmearGate with bos_mask needs the token ids")
            prev = prev * (ids[:, 1:] != BOS_ID).to(x.dtype).unsqueeze(-1)
        return torch.cat((x[:, :1], x[:, 1:] + g * prev), dim=1)
