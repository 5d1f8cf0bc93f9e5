"""Fused Triton kernel or plain PyTorch: decided here, for every caller, from `model.fused_kernels`.

    off   the plain path, always (the record profile: its golden figures are the plain math);
    auto  the fused path when the tensors are on CUDA and Triton imports, else plain;
    on    the fused path, or a PgolfError saying why it cannot run.  Besides CUDA,
          `on` accepts CPU tensors while Triton's interpreter is on (TRITON_INTERPRET=1):
          that is how the tests run the kernels without a GPU.

Only training-mode calls ask (the callers check `self.training`): evaluation
and calibration (eval mode) always take the plain path, as in the record; the
loss kernel serves only the mean loss, so per-token losses (TTT) are plain too.
The decision reads the tensor's device, never a hard-coded one.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from pipeline.errors import PgolfError
from pipeline.model.kernels import _triton
from pipeline.model.kernels._triton import interpreting, triton_available

FusedMode = Literal["off", "auto", "on"]
MODES: tuple[str, ...] = ("off", "auto", "on")


def check_mode(mode: str) -> None:
    """Refuse, when the model is built, a mode that can never run: unknown, or `on` without Triton."""
    if mode not in MODES:
        raise PgolfError(f"model.fused_kernels: {mode!r} is not one of {', '.join(MODES)}")
    if mode == "on" and not triton_available():
        raise PgolfError(f"model.fused_kernels: 'on' but Triton does not import ({_triton.TRITON_IMPORT_ERROR}); "
                         "install pgolf[kernels] or use 'auto'/'off'")


def use_fused(mode: str, tensor: Tensor, what: str) -> bool:
    """Whether `what` (a name for the error message) runs fused for `tensor` under `mode`."""
    if mode == "off":
        return False
    if mode == "auto":
        return tensor.is_cuda and triton_available()
    check_mode(mode)
    if not (tensor.is_cuda or interpreting()):
        raise PgolfError(f"model.fused_kernels: 'on' needs CUDA tensors for {what}, got {tensor.device.type} "
                         "(or TRITON_INTERPRET=1 for Triton's CPU interpreter); use 'auto' or 'off'")
    return True
