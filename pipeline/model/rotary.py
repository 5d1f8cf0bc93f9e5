"""Partial rotary position embedding with NTK base scaling (SPEC §2).

Only the first `rope_dims` of each head's dimensions rotate; the rest carry no
position signal.  When a sequence is longer than `ref_len` (a fixed 1024 in
the reference, not the training length) the base grows as
`base * (L / ref_len) ** (rd / (rd - 2))`, so the record trains and scores at
L = 2048 with an effective base of 10000 * 2 ** (16 / 14).

The cos/sin tables are computed inside the forward from the sequence length:
they are a few thousand numbers, cost nothing next to attention, never enter
the state dict and need no cache invalidation when the length or device
changes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def ntk_base(base: float, rope_dims: int, seq_len: int, ref_len: int) -> float:
    """The rotary base used for a sequence of `seq_len` tokens."""
    if seq_len <= ref_len:
        return base
    return base * (seq_len / ref_len) ** (rope_dims / (rope_dims - 2))


def inverse_frequencies(base: float, rope_dims: int, device: torch.device | None = None) -> Tensor:
    """fp32 `base ** (-arange(0, rd, 2) / rd)`, computed as the reference does."""
    exponent = torch.arange(0, rope_dims, 2, dtype=torch.float32, device=device) / rope_dims
    return 1.0 / (base**exponent)


class Rotary(nn.Module):
    """Produces (cos, sin) of shape (T, rope_dims / 2) for a sequence length."""

    def __init__(self, rope_dims: int, base: float, ref_len: int) -> None:
        super().__init__()
        self.rope_dims = rope_dims
        self.base = base
        self.ref_len = ref_len

    def forward(self, seq_len: int, device: torch.device, scale_len: int | None = None) -> tuple[Tensor, Tensor]:
        """Tables for positions 0..seq_len-1; the base is the one for a sequence of
        `scale_len` tokens (default seq_len): a packed stream of segments that attend
        only within themselves passes its longest segment."""
        base = ntk_base(self.base, self.rope_dims, seq_len if scale_len is None else scale_len, self.ref_len)
        inv_freq = inverse_frequencies(base, self.rope_dims, device)
        angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
        return angles.cos(), angles.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the first 2*cos.size(-1) dims of x (B, T, H, D); the rest pass through.

    With x1 = dims [0, rd/2) and x2 = dims [rd/2, rd):
    out = (x1 cos + x2 sin, -x1 sin + x2 cos).
    """
    half = cos.size(-1)
    rd = 2 * half
    cos = cos[None, :, None, :].to(x.dtype)
    sin = sin[None, :, None, :].to(x.dtype)
    x1, x2, rest = x[..., :half], x[..., half:rd], x[..., rd:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin, rest), dim=-1)
