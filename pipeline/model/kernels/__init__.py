"""The 1.0611 record's two fused Triton kernels, each beside the plain PyTorch path it must equal.

`softcap_ce`: soft-capped cross-entropy streamed over the logits once;
`leaky_mlp`: the MLP with LeakyReLU² in the up-projection's epilogue;
`dispatch.use_fused`: the one place that picks fused or plain (`model.fused_kernels`).
Triton is optional (`pgolf[kernels]`): these modules import without it, and
kernels compile at first launch (see `_triton`).  docs/kernels.md explains both.
"""

from pipeline.model.kernels.dispatch import MODES, FusedMode, check_mode, use_fused
from pipeline.model.kernels.leaky_mlp import leaky_mlp, plain_leaky_mlp
from pipeline.model.kernels.softcap_ce import plain_softcapped_ce, softcapped_ce

__all__ = ["MODES", "FusedMode", "check_mode", "leaky_mlp", "plain_leaky_mlp", "plain_softcapped_ce", "softcapped_ce",
           "use_fused"]
