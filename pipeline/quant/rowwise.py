"""Per-row integer quantisation of 2-D weights (SPEC §4).

Shared by the artifact's integer storage schemes (`pipeline.quant.schemes`:
dequantise) and by late QAT (straight-through fake quantisation inside the
training forward, on the int6 grid the int6 scheme stores).
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


def dequantize_rows(q: Tensor, scale: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """q * scale broadcast over rows."""
    return (q.float() * scale.float()[:, None]).to(dtype)


def fake_quant_rows(w: Tensor, qmin: int, qmax: int) -> Tensor:
    """Straight-through per-row fake quantisation onto codes [qmin, qmax] with step
    rowmax/qmax (floor 1/qmax): forward sees the rounded weight, backward passes the
    gradient through unchanged (late QAT, SPEC §3)."""
    with torch.no_grad():
        row_max = w.detach().float().abs().amax(dim=1)
        scale = (row_max / qmax).clamp_min(1.0 / qmax)
        wq = torch.clamp(torch.round(w.float() / scale[:, None]), qmin, qmax) * scale[:, None]
    return w + (wq.to(w.dtype) - w).detach()


def fake_quant_int6(w: Tensor) -> Tensor:
    """`fake_quant_rows` on the int6 grid: the reference's late QAT."""
    return fake_quant_rows(w, INT6_MIN, INT6_MAX)
