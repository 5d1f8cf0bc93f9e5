"""Weight initialisation of SPEC §2, applied once after construction.

- `tok_emb`: normal(0, tied_embed_init_std).
- `attn.proj`, `mlp.proj`: zeros (each block starts as the identity).
- every other linear layer with both sides >= 64: orthogonal (gain 1), and
  when its name ends in `.proj` also scaled by 1/sqrt(2L).  The rule goes by
  name, so it also catches `bigram.proj`, overwriting that module's zero init;
  `bigram.embed` is an embedding, not a linear layer, and stays zero.
- smaller linear layers keep what their constructor gave them.
Everything else (scales, gains, mixes, Canon) is initialised by its module.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.model.layers import CastedLinear


@torch.no_grad()
def init_weights(model: nn.Module, num_layers: int, tok_emb_std: float) -> None:
    nn.init.normal_(model.tok_emb.weight, mean=0.0, std=tok_emb_std)
    proj_scale = 1.0 / math.sqrt(2 * num_layers)
    for name, module in model.named_modules():
        if not isinstance(module, CastedLinear):
            continue
        if module.zero_init:
            nn.init.zeros_(module.weight)
        elif min(module.weight.shape) >= 64:
            nn.init.orthogonal_(module.weight, gain=1.0)
            if name.endswith(".proj"):
                module.weight.mul_(proj_scale)
