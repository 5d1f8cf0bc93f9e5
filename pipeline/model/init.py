"""Weight initialisation of SPEC §2, applied once after construction.

Each parameter gets the init rule its name's entry in
`pipeline.model.naming.PARAM_RULES` gives (`naming.INIT_RULES`):

- `tok_emb`: normal(0, tied_embed_init_std);
- `attn.proj`, `mlp.proj`: zeros (each block starts as the identity);
- the other block matrices: orthogonal (gain 1) when both sides are >= 64;
- `bigram.proj`: orthogonal and scaled by 1/sqrt(2L), overwriting its module's
  zero init, as the reference does (its rule goes by the `.proj` suffix);
- everything else (smaller matrices, `bigram.embed`, scales, gains, mixes,
  Canon) keeps what its module's constructor gave it.

Parameters are visited in `named_parameters` order, so the random draws come
in the order of the modules (the reference's order: the golden figures
depend on it).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.model.naming import init_rule


@torch.no_grad()
def init_weights(model: nn.Module, num_layers: int, tok_emb_std: float) -> None:
    proj_scale = 1.0 / math.sqrt(2 * num_layers)
    for name, param in model.named_parameters():
        rule = init_rule(name)
        if rule == "normal":
            nn.init.normal_(param, mean=0.0, std=tok_emb_std)
        elif rule == "zeros":
            nn.init.zeros_(param)
        elif rule in ("orthogonal", "orthogonal_scaled") and min(param.shape) >= 64:
            nn.init.orthogonal_(param, gain=1.0)
            if rule == "orthogonal_scaled":
                param.mul_(proj_scale)
