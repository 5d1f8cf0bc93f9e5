"""Soft-capped cross-entropy in one pass over the logits (the 1.0611 record's kernel).

The plain path materialises C·tanh(x/C) for the whole (tokens, vocab) logit
matrix, casts it to fp32 and runs cross-entropy: several full-size tensors
written and read again, and kept for backward.  The fused path reads the raw
projection x once per row and keeps nothing but one log-sum-exp per row.

It uses the identity C·tanh(x/C) = 2C·sigmoid(2x/C) − C.  Cross-entropy is
invariant to adding a constant to every logit of a row, so the kernel works
with z = 2C·sigmoid(2x/C) and gets the same loss.  Forward: one streaming pass
per row (online max and sum of exponentials, block by block) gives
lse = log Σ exp(z) and loss = lse − z[target].  Backward recomputes z from x:
dloss/dx = g·(softmax(z) − onehot(target))·dz/dx with
dz/dx = 4·sigmoid(2x/C)·(1 − sigmoid(2x/C)) (= 1 − tanh²(x/C)).

Every target is a class index in [0, vocab): there is no ignore index (pgolf's
targets are always real tokens, as in the record), and targets are not
range-checked on the device (that would cost a host sync).

`softcapped_ce` is a `torch.library` custom op with a fake (meta) function and
an autograd formula, so `torch.compile(fullgraph=True)` keeps it as one opaque
node.  `plain_softcapped_ce` is the reference it must equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.errors import PgolfError
from pipeline.model.kernels._triton import OP_NAMESPACE, jit, tl

# Columns per step of a row's stream; a power of two (Triton's arange).
DEFAULT_BLOCK = 1024


def plain_softcapped_ce(logits: Tensor, targets: Tensor, softcap: float) -> Tensor:
    """Mean cross-entropy of C·tanh(logits/C) in fp32: GPT.forward's plain path."""
    capped = softcap * torch.tanh(logits / softcap)
    return F.cross_entropy(capped.float(), targets)


def _ce_forward_kernel(x_ptr, target_ptr, loss_ptr, lse_ptr, stride_row, stride_col, n_cols, softcap,
                       BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_row
    scale = 2.0 * softcap
    inv = 2.0 / softcap
    running_max = -float("inf")
    running_sum = 0.0
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        inside = cols < n_cols
        x = tl.load(x_row + cols * stride_col, mask=inside, other=0.0).to(tl.float32)
        z = tl.where(inside, scale * tl.sigmoid(x * inv), -float("inf"))
        new_max = tl.maximum(running_max, tl.max(z, axis=0))
        running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(tl.exp(z - new_max), axis=0)
        running_max = new_max
    lse = running_max + tl.log(running_sum)
    target = tl.load(target_ptr + row)
    x_t = tl.load(x_row + target * stride_col).to(tl.float32)
    tl.store(lse_ptr + row, lse)
    tl.store(loss_ptr + row, lse - scale * tl.sigmoid(x_t * inv))


def _ce_backward_kernel(x_ptr, target_ptr, lse_ptr, grad_loss_ptr, grad_x_ptr, stride_row, stride_col,
                        grad_stride_row, grad_stride_col, n_cols, softcap, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_row
    grad_row = grad_x_ptr + row * grad_stride_row
    scale = 2.0 * softcap
    inv = 2.0 / softcap
    lse = tl.load(lse_ptr + row)
    g = tl.load(grad_loss_ptr + row).to(tl.float32)
    target = tl.load(target_ptr + row)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        inside = cols < n_cols
        x = tl.load(x_row + cols * stride_col, mask=inside, other=0.0).to(tl.float32)
        s = tl.sigmoid(x * inv)
        p = tl.exp(scale * s - lse)
        dz = g * (p - tl.where(cols == target, 1.0, 0.0))
        dx = dz * (2.0 * scale / softcap) * s * (1.0 - s)
        tl.store(grad_row + cols * grad_stride_col, dx.to(grad_x_ptr.dtype.element_ty), mask=inside)


def _check(logits: Tensor, targets: Tensor, softcap: float) -> None:
    if logits.ndim != 2 or targets.ndim != 1 or logits.size(0) != targets.size(0):
        raise PgolfError(f"softcapped_ce: logits (rows, vocab) and targets (rows,) expected, got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    if softcap <= 0:
        raise PgolfError(f"softcapped_ce: softcap must be > 0, got {softcap}")
    if logits.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise PgolfError(f"softcapped_ce: logits dtype {logits.dtype} is not fp32/bf16/fp16")


def _block(block: int) -> int:
    if block <= 0:
        return DEFAULT_BLOCK
    if block & (block - 1):
        raise PgolfError(f"softcapped_ce: block {block} is not a power of two")
    return block


@torch.library.custom_op(f"{OP_NAMESPACE}::softcapped_ce", mutates_args=())
def _softcapped_ce_op(logits: Tensor, targets: Tensor, softcap: float, block: int) -> tuple[Tensor, Tensor]:
    _check(logits, targets, softcap)
    rows, cols = logits.shape
    targets = targets.contiguous()
    losses = torch.empty(rows, device=logits.device, dtype=torch.float32)
    lse = torch.empty(rows, device=logits.device, dtype=torch.float32)
    jit(_ce_forward_kernel)[(rows,)](logits, targets, losses, lse, logits.stride(0), logits.stride(1), cols,
                                     float(softcap), BLOCK=_block(block))
    return losses, lse


@_softcapped_ce_op.register_fake
def _(logits: Tensor, targets: Tensor, softcap: float, block: int) -> tuple[Tensor, Tensor]:
    rows = logits.size(0)
    return logits.new_empty(rows, dtype=torch.float32), logits.new_empty(rows, dtype=torch.float32)


@torch.library.custom_op(f"{OP_NAMESPACE}::softcapped_ce_backward", mutates_args=())
def _softcapped_ce_backward_op(logits: Tensor, targets: Tensor, lse: Tensor, grad_losses: Tensor,
                               softcap: float, block: int) -> Tensor:
    rows, cols = logits.shape
    grad = torch.empty_like(logits)
    jit(_ce_backward_kernel)[(rows,)](logits, targets.contiguous(), lse.contiguous(), grad_losses.contiguous(),
                                      grad, logits.stride(0), logits.stride(1), grad.stride(0), grad.stride(1),
                                      cols, float(softcap), BLOCK=_block(block))
    return grad


@_softcapped_ce_backward_op.register_fake
def _(logits: Tensor, targets: Tensor, lse: Tensor, grad_losses: Tensor, softcap: float, block: int) -> Tensor:
    return torch.empty_like(logits)


def _setup_context(ctx, inputs, output) -> None:
    logits, targets, softcap, block = inputs
    ctx.save_for_backward(logits, targets, output[1])
    ctx.softcap, ctx.block = softcap, block


def _backward(ctx, grad_losses: Tensor, _grad_lse: Tensor | None):
    logits, targets, lse = ctx.saved_tensors
    grad = _softcapped_ce_backward_op(logits, targets, lse, grad_losses, ctx.softcap, ctx.block)
    return grad, None, None, None


_softcapped_ce_op.register_autograd(_backward, setup_context=_setup_context)


def softcapped_ce(logits: Tensor, targets: Tensor, softcap: float, block: int = 0) -> Tensor:
    """Mean cross-entropy of C·tanh(logits/C) over rows, in fp32, by the fused kernels.

    logits: (rows, vocab) raw projections (fp32/bf16/fp16, any strides); targets:
    (rows,) class indices.  `block` (a power of two; 0 = DEFAULT_BLOCK) only
    sets how many columns each step streams.
    """
    losses, _ = _softcapped_ce_op(logits, targets, float(softcap), int(block))
    return losses.mean()
