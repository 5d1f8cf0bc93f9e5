"""Canon layers (Allen-Zhu, *Physics of Language Models 4.1*; SPEC §2).

A Canon layer is a depthwise causal convolution over time,
`y_t = sum_{k<K} w_k * x_{t-k}` (+ bias, then SiLU, when enabled), added back
to its input (`x + g y`, residual mode) or replacing it (`g y`), where
`g = sigmoid(alpha)` with a learnable scalar alpha when the delta gate is on
(alpha starts at -4, so the branch starts near 0.018 of its size and the block
begins close to its Canon-free behaviour) and 1 otherwise.

The input is left-padded by K-1 zeros (position t never sees t+1) and
unfolded into its K-wide causal windows (a strided view, no copy); one
weighted sum over the window axis gives the output.  This is exactly the
depthwise `F.conv1d(groups=C)` on the left-padded input (the tests check it
against `nn.Conv1d`), but torch.compile fuses it into one element-wise
kernel: measured on an H200 (bf16, 48x2048x512, kernel 3, forward+backward)
it took 0.72 ms against 2.06 ms for cuDNN's depthwise conv1d, and the record
model's compiled training step (one GPU's 48x2048 tokens, forward+backward)
went from 103.2 to 89.8 ms (84.5 ms without Canon).  The weight lives in an
`nn.Conv1d` (`conv.weight` of shape (C, 1, K), `conv.bias`) so that "default"
init is exactly PyTorch's Conv1d init.

Kernel order.  SPEC §2 writes the convolution with w_k weighting the token k
steps back.  The stored weight follows `nn.Conv1d` (a cross-correlation over
the left-padded input), so its index runs the other way:

    conv.weight[c, 0, j] = w_{K-1-j}[c]      (j = K-1 is the current token,
                                              j = 0 the oldest, K-1 steps back)

i.e. `y_t = sum_j conv.weight[:, 0, j] * x_{t-(K-1)+j}`.  It is the layout of
the reference's `nn.Conv1d(..., padding=K-1)` (output cropped to T) and of
`causal_conv1d_fn`, so Canon weights interchange with the reference's as they
are; `tests/model/test_reference_switches.py` checks it against the formula
written out with hand-picked numbers (docs/model.md).

Which blocks get Canon: `first_n` and `last_n` select the first and the last
blocks; when both are set the selection is their union; when both are 0 every
block gets Canon.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.config import CanonConfig


def canon_blocks(cfg: CanonConfig, num_layers: int) -> frozenset[int]:
    """Indices of the blocks that carry Canon layers (empty when no placement)."""
    if not cfg.placements:
        return frozenset()
    if cfg.first_n == 0 and cfg.last_n == 0:
        return frozenset(range(num_layers))
    first = range(min(cfg.first_n, num_layers))
    last = range(max(num_layers - cfg.last_n, 0), num_layers)
    return frozenset(first) | frozenset(last)


class Canon(nn.Module):
    """One depthwise causal convolution over a (B, T, C) activation."""

    def __init__(self, channels: int, cfg: CanonConfig) -> None:
        super().__init__()
        self.kernel = cfg.kernel
        self.residual = cfg.residual
        self.activation = cfg.activation
        self.conv = nn.Conv1d(channels, channels, cfg.kernel, groups=channels, bias=cfg.bias)
        if cfg.weight_init == "zeros":
            nn.init.zeros_(self.conv.weight)
            if self.conv.bias is not None:
                nn.init.zeros_(self.conv.bias)
        if cfg.delta_gate:
            self.delta_gate_logit = nn.Parameter(torch.tensor(float(cfg.delta_gate_init), dtype=torch.float32))
        else:
            self.register_parameter("delta_gate_logit", None)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.conv.weight.to(x.dtype)
        bias = self.conv.bias.to(x.dtype) if self.conv.bias is not None else None
        # windows[..., j] = x_{t-(K-1)+j}: stored index j weights the token K-1-j steps back.
        windows = F.pad(x, (0, 0, self.kernel - 1, 0)).unfold(1, self.kernel, 1)  # (B, T, C, K)
        y = (windows * weight[:, 0, :]).sum(dim=-1)
        if bias is not None:
            y = y + bias
        if self.activation:
            y = F.silu(y)
        if self.delta_gate_logit is not None:
            y = torch.sigmoid(self.delta_gate_logit.to(y.dtype)) * y
        return x + y if self.residual else y
