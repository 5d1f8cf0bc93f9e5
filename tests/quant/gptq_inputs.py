"""The weights and Hessians GPTQ/LQER parity is computed on, shared by `scripts/parity/gptq_parity.py`
(which runs the records' code on them) and `tests/quant/test_gptq.py` (which pins pgolf's outputs)."""

from __future__ import annotations

import hashlib

import torch

# name -> shape: three matrices over the records' 65,536-element passthrough bound, one small tensor.
# mlp.proj has 200 columns: a rank-4 B of 800 elements is not a multiple of 64, so LQER packs it symmetrically.
SHAPES = {
    "tok_emb.weight": (512, 160),
    "blocks.0.attn.c_q.weight": (448, 160),
    "blocks.0.mlp.fc.weight": (480, 160),
    "blocks.0.mlp.proj.weight": (400, 200),
    "blocks.0.attn_scale": (160,),
}
BLOCK_SIZE = 64  # several GPTQ blocks per matrix


def state_and_hessians(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Heavy-tailed weights, and Hessians X^T X / n of inputs with unequal column scales and one dead column."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    hessians: dict[str, torch.Tensor] = {}
    for name, shape in SHAPES.items():
        w = torch.randn(shape, generator=g) * 0.02
        w = w + (torch.rand(shape, generator=g) < 0.002) * torch.randn(shape, generator=g) * 0.3
        state[name] = w
        if len(shape) == 2:
            cols = shape[1]
            x = torch.randn(1024, cols, generator=g) * torch.linspace(0.1, 2.0, cols)
            x[:, 7] = 0.0
            hessians[name] = x.T @ x / 1024
    return state, hessians


def digest(*tensors: torch.Tensor) -> str:
    """sha256 over the tensors' raw bytes, in order."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()
