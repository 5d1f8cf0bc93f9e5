"""Per-document LoRA adapters for phased test-time training (one adapter slice per document).

A batch of documents is adapted at once: every low-rank matrix carries a
leading batch dimension, so row b of a batch trains only its own slice and
documents never see each other.  The layout and initialisation follow the
1.0611 record (its ``BatchedTTTLoRA``): A uniform in ±1/sqrt(in), B zero, the
update scaled by alpha/rank; one adapter on the output head and, per block,
on q, v (and optionally k, the MLP output, the attention output).  The
construction order is fixed because A's initial values come from the global
RNG: the same seed gives the same adapters as the record's.

`reset` zeroes B only when ``warm_start_a`` (the record's default), so A
keeps the directions it learnt within a phase while every new batch of
documents starts from a zero update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


class BatchedLoRA(nn.Module):
    """x (B, T, in) -> (B, T, out) through rank-r matrices of its own for each row b."""

    def __init__(self, batch: int, in_features: int, out_features: int, rank: int, alpha: float,
                 warm_start_a: bool) -> None:
        super().__init__()
        self._bound = 1.0 / math.sqrt(in_features)
        self._scale = alpha / rank
        self._warm_start_a = warm_start_a
        self.A = nn.Parameter(torch.empty(batch, rank, in_features).uniform_(-self._bound, self._bound))
        self.B = nn.Parameter(torch.zeros(batch, out_features, rank))

    def reset(self) -> None:
        with torch.no_grad():
            if not self._warm_start_a:
                self.A.uniform_(-self._bound, self._bound)
            self.B.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return ((x @ self.A.transpose(1, 2)) @ self.B.transpose(1, 2)) * self._scale


@dataclass(frozen=True)
class BlockAdapters:
    """The adapters of one block call ("slot"): each maps that call's input to an
    update added to one projection's output; None where that adapter is off."""

    q: BatchedLoRA
    v: BatchedLoRA
    k: BatchedLoRA | None
    mlp: BatchedLoRA | None
    out: BatchedLoRA | None


@dataclass(frozen=True)
class AdapterShape:
    """What the adapters attach to: the model's width, kv width, vocabulary and block count.

    `num_blocks` counts block *calls* (slots): a depth-recurrent model that runs
    a block several times gives each call adapters of its own, as the record does."""

    model_dim: int
    kv_dim: int
    vocab_size: int
    embed_dim: int
    num_blocks: int


class DocumentAdapters(nn.Module):
    """All adapters of one batch of documents (`head`, and per block `q`, `v`, `k`, `mlp`, `out`)."""

    def __init__(self, batch: int, shape: AdapterShape, rank: int, alpha: float, *, k: bool = True,
                 mlp: bool = True, out: bool = True, warm_start_a: bool = True) -> None:
        super().__init__()
        self.batch = batch
        d = shape.model_dim

        def make(n_in: int, n_out: int) -> BatchedLoRA:
            return BatchedLoRA(batch, n_in, n_out, rank, alpha, warm_start_a)

        def per_block(n_in: int, n_out: int) -> nn.ModuleList:
            return nn.ModuleList(make(n_in, n_out) for _ in range(shape.num_blocks))

        # Creation order = RNG order (the record's): head, q, v, k, mlp, out.
        self.head = make(shape.embed_dim, shape.vocab_size)
        self.q = per_block(d, d)
        self.v = per_block(d, shape.kv_dim)
        self.k = per_block(d, shape.kv_dim) if k else None
        self.mlp = per_block(d, d) if mlp else None
        self.out = per_block(d, d) if out else None

    def slot(self, i: int) -> BlockAdapters:
        """The adapters of the i-th block call, in the order the model runs its blocks."""
        pick = lambda group: None if group is None else group[i]  # noqa: E731
        return BlockAdapters(q=self.q[i], v=self.v[i], k=pick(self.k), mlp=pick(self.mlp), out=pick(self.out))

    def reset(self) -> None:
        for module in self.modules():
            if isinstance(module, BatchedLoRA):
                module.reset()
