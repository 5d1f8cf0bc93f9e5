"""Per-row integer quantisation of 2-D weights (SPEC §4).

Shared by the artifact packer (quantise, store, dequantise) and by late QAT
(straight-through fake quantisation inside the training forward), so that the
weights trained with QAT see exactly the rounding the artifact will apply.
"""

from __future__ import annotations

import torch
from torch import Tensor

INT6_MAX = 31  # values stored in [-32, 31]
INT6_MIN = -32
INT8_MAX = 127  # values stored in [-127, 127]


def int6_row_scale(w: Tensor) -> Tensor:
    """fp32 scale per row: rowmax/31 with a floor of 1/31 (as the reference does)."""
    row_max = w.detach().float().abs().amax(dim=1)
    return (row_max / INT6_MAX).clamp_min(1.0 / INT6_MAX)


def quantize_int6_rows(w: Tensor) -> tuple[Tensor, Tensor]:
    """(q int8 in [-32, 31], scale fp16 per row).  Rounding uses the fp16 scale that is stored."""
    if w.ndim != 2:
        raise ValueError(f"int6 per-row quantisation needs a 2-D tensor, got shape {tuple(w.shape)}")
    scale = int6_row_scale(w).to(torch.float16)
    q = torch.clamp(torch.round(w.float() / scale.float()[:, None]), INT6_MIN, INT6_MAX).to(torch.int8)
    return q.contiguous(), scale.contiguous()


def quantize_int8_rows(w: Tensor, clip_percentile: float) -> tuple[Tensor, Tensor]:
    """(q int8 in [-127, 127], scale fp16 per row); |w| clipped per row at `clip_percentile`."""
    if w.ndim != 2:
        raise ValueError(f"int8 per-row quantisation needs a 2-D tensor, got shape {tuple(w.shape)}")
    w32 = w.float()
    clip = torch.quantile(w32.abs(), clip_percentile / 100.0, dim=1)
    clipped = torch.maximum(torch.minimum(w32, clip[:, None]), -clip[:, None])
    scale = (clip / INT8_MAX).clamp_min(1.0 / INT8_MAX)
    q = torch.clamp(torch.round(clipped / scale[:, None]), -INT8_MAX, INT8_MAX).to(torch.int8)
    return q.contiguous(), scale.to(torch.float16).contiguous()


def dequantize_rows(q: Tensor, scale: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """q * scale broadcast over rows."""
    return (q.float() * scale.float()[:, None]).to(dtype)


def fake_quant_int6(w: Tensor) -> Tensor:
    """Straight-through int6 fake quantisation: forward sees the rounded weight,
    backward passes the gradient through unchanged (late QAT, SPEC §3)."""
    with torch.no_grad():
        scale = int6_row_scale(w)
        wq = torch.clamp(torch.round(w.float() / scale[:, None]), INT6_MIN, INT6_MAX) * scale[:, None]
    return w + (wq.to(w.dtype) - w).detach()
