"""The GPT of SPEC §2: embeddings, U-Net of blocks, tied soft-capped head.

    x  = smear(rms_norm(tok_emb(ids) + bigram(ids)));  x0 = x
    encoder blocks (first L//2) push their outputs; each decoder block i first
    adds skip_weights[i] * pop(), then runs
    block:  x = resid_mix[0] x + resid_mix[1] x0
            x += attn_scale * attn(canonA(rms_norm(x) s))
            x += mlp_scale  * mlp(canonC(rms_norm(x) s))          s = 1/sqrt(i+1)
    logits = softcap * tanh(rms_norm(x) tok_emb^T / softcap)

`forward(ids, targets)` returns the mean cross-entropy in fp32,
`forward(ids, targets, reduction="none")` the (B, T) per-token losses and
`logits(ids)` the soft-capped logits; all three go through `logits`.
Under autocast the residual stream is in the autocast dtype (bf16 on the GPU,
SPEC §2): the fp32 embedding sum is cast once, before the first RMS norm.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.config import ModelConfig
from pipeline.model.attention import CausalSelfAttention
from pipeline.model.canon import Canon, canon_blocks
from pipeline.model.embeddings import BigramHash, SmearGate
from pipeline.model.init import init_weights
from pipeline.model.layers import CastedLinear, rms_norm, to_activation_dtype
from pipeline.model.rotary import Rotary


class MLP(nn.Module):
    """proj(relu(fc(x))^2), with Canon-D (when given) on the hidden before the
    activation, or with `canon_d_after_relu` between the relu and the square
    (where PR #312's code puts it: proj(canon_d(relu(fc(x)))^2))."""

    def __init__(self, dim: int, hidden: int, canon_d_after_relu: bool = False) -> None:
        super().__init__()
        self.fc = CastedLinear(dim, hidden)
        self.proj = CastedLinear(hidden, dim)  # zero init: its rule in naming.PARAM_RULES
        self.canon_d_after_relu = canon_d_after_relu
        # Canon-D, set by the block (`mlp.canon_d`, the reference's name).
        self.canon_d: nn.Module | None = None

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        canon_d = self.canon_d
        if canon_d is None:
            return self.proj(torch.relu(h).square())
        if self.canon_d_after_relu:
            return self.proj(canon_d(torch.relu(h)).square())
        return self.proj(torch.relu(canon_d(h)).square())


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, index: int, use_xsa: bool, canon_placements: str) -> None:
        super().__init__()
        dim = cfg.model_dim
        self.ln_scale = 1.0 / math.sqrt(index + 1) if cfg.ln_scale else 1.0
        self.attn = CausalSelfAttention(cfg, use_xsa)
        self.mlp = MLP(dim, cfg.mlp_hidden, cfg.canon.d_after_relu)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())
        widths = {
            "a": dim,
            "b": dim + 2 * cfg.num_kv_heads * cfg.head_dim,
            "c": dim,
            "d": cfg.mlp_hidden,
        }
        # Created in the order a, b, c, d (the init draws); B lives in the attention
        # and D in the MLP, under the reference's names (attn.canon_b, mlp.canon_d).
        for letter, width in widths.items():
            layer = Canon(width, cfg.canon) if letter.upper() in canon_placements else None
            owner = {"b": self.attn, "d": self.mlp}.get(letter, self)
            setattr(owner, f"canon_{letter}", layer)

    @property
    def canon_b(self) -> nn.Module | None:
        return self.attn.canon_b

    @property
    def canon_d(self) -> nn.Module | None:
        return self.mlp.canon_d

    def forward(self, x: Tensor, x0: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        h = rms_norm(x) * self.ln_scale
        if self.canon_a is not None:
            h = self.canon_a(h)
        x = x + self.attn_scale.to(x.dtype) * self.attn(h, cos, sin)
        h = rms_norm(x) * self.ln_scale
        if self.canon_c is not None:
            h = self.canon_c(h)
        return x + self.mlp_scale.to(x.dtype) * self.mlp(h)


class GPT(nn.Module):
    """The record model, every component switchable from `ModelConfig`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        L, dim = cfg.num_layers, cfg.model_dim
        self.tok_emb = nn.Embedding(cfg.vocab_size, dim)
        self.bigram = (
            BigramHash(cfg.bigram_buckets, cfg.bigram_dim, dim, cfg.bigram_scale_init)
            if cfg.bigram_buckets > 0 else None
        )
        self.smear = SmearGate(dim, cfg.smear_bos_mask) if cfg.smear else None
        self.num_encoder = L // 2
        self.num_decoder = L - self.num_encoder
        self.skip_weights = nn.Parameter(torch.ones(min(self.num_encoder, self.num_decoder), dim))
        with_canon = canon_blocks(cfg.canon, L)
        self.blocks = nn.ModuleList(
            Block(cfg, i, use_xsa=i >= L - cfg.xsa_last_n,
                  canon_placements=cfg.canon.placements if i in with_canon else "")
            for i in range(L)
        )
        self.rotary = Rotary(cfg.rope_dims, cfg.rope_base, cfg.rope_ref_len)
        init_weights(self, L, cfg.tied_embed_init_std)
        if cfg.embed_dtype == "bf16":
            # As the reference's `GPT(...).bfloat16()`: initialised in fp32, then
            # stored (trained, averaged, exported) in bf16.
            for table in self.embedding_tables():
                table.weight.data = table.weight.data.to(torch.bfloat16)

    def embedding_tables(self) -> list[nn.Embedding]:
        """The lookup tables whose storage dtype `model.embed_dtype` sets."""
        return [self.tok_emb] + ([self.bigram.embed] if self.bigram is not None else [])

    def set_qat(self, enabled: bool) -> None:
        """Switch late QAT on every CastedLinear; takes effect in compiled graphs too
        (see `CastedLinear`).  Only training-mode forwards quantise."""
        for module in self.modules():
            if isinstance(module, CastedLinear):
                module.qat.fill_(enabled)

    @property
    def qat_enabled(self) -> bool:
        return any(bool(m.qat) for m in self.modules() if isinstance(m, CastedLinear))

    def logits(self, ids: Tensor) -> Tensor:
        """Soft-capped logits (B, T, vocab) for token ids (B, T)."""
        x = self.tok_emb(ids).float()
        if self.bigram is not None:
            x = x + self.bigram(ids)
        x = rms_norm(to_activation_dtype(x))
        if self.smear is not None:
            x = self.smear(x, ids)
        x0 = x
        cos, sin = self.rotary(ids.size(1), ids.device)
        skips: list[Tensor] = []
        for block in self.blocks[: self.num_encoder]:
            x = block(x, x0, cos, sin)
            skips.append(x)
        for i, block in enumerate(self.blocks[self.num_encoder:]):
            if skips:
                x = x + self.skip_weights[i].to(x.dtype) * skips.pop()
            x = block(x, x0, cos, sin)
        z = F.linear(rms_norm(x), self.tok_emb.weight.to(x.dtype))
        cap = self.cfg.logit_softcap
        return cap * torch.tanh(z / cap)

    def forward(self, ids: Tensor, targets: Tensor, reduction: Literal["mean", "none"] = "mean") -> Tensor:
        """Cross-entropy in fp32: a scalar mean, or (B, T) per-token losses with reduction="none"."""
        logits = self.logits(ids)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction=reduction)
        return loss if reduction == "mean" else loss.view_as(targets)
