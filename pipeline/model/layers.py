"""The primitive layers every other module is built from, and the activation dtype.

`rms_norm` has no weight and uses PyTorch's default epsilon (the dtype's
machine epsilon, `eps=None`), as the reference does.  `CastedLinear` keeps its
weight in fp32 and casts it to the activation dtype at matmul time, so under
bf16 autocast the matmul runs in bf16 while the optimiser updates fp32 weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.quant.rowwise import INT6_MAX, INT6_MIN, fake_quant_rows


def to_activation_dtype(x: Tensor) -> Tensor:
    """Cast x to the dtype activations travel in: autocast's (bf16 on GPU) when
    autocast is on for x's device, else leave it.

    Embedding lookups are not autocast ops, so without this cast the fp32
    embedding output would carry the whole residual stream in fp32 (SPEC §2:
    activations bf16): every element-wise op and every tensor saved for backward
    twice the bytes.  Dynamo guards on the autocast state, so a compiled model
    called with and without autocast gets one graph for each.
    """
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return x.to(torch.get_autocast_dtype(device))
    return x


def rms_norm(x: Tensor) -> Tensor:
    """RMS normalisation over the last dimension, no learned weight."""
    return F.rms_norm(x, (x.size(-1),))


class CastedLinear(nn.Linear):
    """A bias-free linear layer with fp32 weights and a late-QAT switch.

    Late QAT (SPEC §3) must switch on inside an already-compiled graph.  A
    Python flag (class or instance attribute) is read at trace time: a class
    flag is constant-folded and never switches, an instance flag forces a
    recompile of the whole model in the middle of the timed run.  Here the
    switch is a 0-dim bool *buffer* (`qat`, non-persistent, so it never enters
    a state dict) that the graph reads as an input: `torch.where` selects the
    straight-through int6 weight or the plain one, so flipping the buffer in
    place takes effect on the next call with no recompile.  The price is that
    the per-row fake quantisation is computed on every training forward even
    while QAT is off (a few element-wise passes over the weight, small next to
    the matmul).  In eval mode the branch is not traced at all.

    Which grid QAT rounds onto is `qat_grid` (the code range [qmin, qmax]; None:
    this layer is never fake-quantised), a plain attribute fixed before
    compiling: `pipeline.train.qat.configure_qat` sets it from
    ``train.qat_targets``.  The default is the reference's int6 on every layer.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)
        self.register_buffer("qat", torch.zeros((), dtype=torch.bool), persistent=False)
        self.qat_grid: tuple[int, int] | None = (INT6_MIN, INT6_MAX)

    def effective_weight(self) -> Tensor:
        """The fp32 weight this forward multiplies by: fake-quantised while QAT is on in
        training mode.  The fused MLP kernel (pipeline/model/kernels) reads it too."""
        w = self.weight
        if self.training and self.qat_grid is not None:
            w = torch.where(self.qat, fake_quant_rows(w, *self.qat_grid), w)
        return w

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.effective_weight().to(x.dtype))
