"""The MLP up-projection with its LeakyReLU² in the matmul's epilogue (the 1.0611 record's kernel).

    pre  = x W1ᵀ                     (M, hidden)
    post = leaky_relu(pre, s)²       (the activation, written by the same kernel)
    out  = post W2ᵀ                  (M, dim)

The plain path writes `pre`, reads it back for the activation, writes the
activation, reads it for the square: three passes over an (M, hidden) tensor
besides the matmul.  The fused forward writes `pre` and `post` straight from
the matmul's accumulator.  The backward needs dpre = (g W2) ⊙ act'(pre) with
act'(p) = 2p for p > 0 and 2s²p otherwise (the derivative of leaky(p)²; 0.5p
at the record's s = 0.5): the same kernel computes g W2 and multiplies by
act'(pre) before it stores.  The remaining products (out, dW2 = gᵀ post,
dW1 = dpreᵀ x, dx = dpre W1) are ordinary matmuls.

Unlike the record's kernel (Hopper TMA descriptors, bf16 only, slope fixed at
0.5) this one uses plain pointer loads with masks, so it runs on any GPU Triton
supports and in Triton's CPU interpreter, for any M, N, K, fp32/bf16/fp16,
and any slope s >= 0 (0 is relu²); fp32 inputs multiply in TF32 on the GPU
(Triton's default, as torch does under the allow_tf32 pgolf's runtime sets).  `leaky_mlp` is a `torch.library` custom op
with a fake function and an autograd formula (opaque to torch.compile);
`plain_leaky_mlp` is the reference it must equal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pipeline.errors import PgolfError
from pipeline.model.kernels._triton import OP_NAMESPACE, interpreting, jit, tl

# (BLOCK_M, BLOCK_N, BLOCK_K) of the matmul tiles: on a GPU for 16-bit inputs (3 pipeline stages of
# the A and B tiles take 96 KiB of shared memory), for fp32 inputs (half the K depth: the same
# 96 KiB), and in the interpreter (small: it is slow).
GPU_BLOCKS = (128, 128, 64)
GPU_BLOCKS_FP32 = (128, 128, 32)
INTERPRETER_BLOCKS = (32, 32, 32)
GPU_WARPS, GPU_STAGES = 8, 3


def plain_leaky_mlp(x: Tensor, w1: Tensor, w2: Tensor, slope: float) -> Tensor:
    """leaky_relu(x W1ᵀ, slope)² W2ᵀ in PyTorch: the MLP's plain path."""
    return F.linear(F.leaky_relu(F.linear(x, w1), negative_slope=slope).square(), w2)


def _matmul_act_kernel(a_ptr, b_ptr, c_ptr, aux_ptr, M, N, K, stride_am, stride_ak, stride_bn, stride_bk,
                       stride_cm, stride_cn, slope, FORWARD: tl.constexpr, DOT_FP32: tl.constexpr,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """c = a bᵀ tile by tile (a: (M, K), b: (N, K), both by strides), then
    FORWARD: c -> c_ptr (pre) and leaky(c)² -> aux_ptr (post);
    backward: c ⊙ act'(aux) -> c_ptr, aux_ptr holding pre.  DOT_FP32 multiplies in fp32
    (the interpreter, whose bf16 tl.dot returns garbage; bf16 products are exact in fp32)."""
    pid_n = tl.program_id(0)  # the fastest-moving index: neighbouring programs share a row block of a
    pid_m = tl.program_id(1)  # (read once from memory, then from L2) and b is small enough for L2
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ks = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + ks
        a = tl.load(a_ptr + rows[:, None] * stride_am + k[None, :] * stride_ak,
                    mask=(rows[:, None] < M) & (k[None, :] < K), other=0.0)
        b = tl.load(b_ptr + cols[None, :] * stride_bn + k[:, None] * stride_bk,
                    mask=(cols[None, :] < N) & (k[:, None] < K), other=0.0)
        if DOT_FP32:
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc = tl.dot(a, b, acc)
    out_dtype = c_ptr.dtype.element_ty
    c = acc.to(out_dtype)
    inside = (rows[:, None] < M) & (cols[None, :] < N)
    offsets = rows[:, None] * stride_cm + cols[None, :] * stride_cn
    if FORWARD:
        tl.store(c_ptr + offsets, c, mask=inside)
        c32 = c.to(tl.float32)
        act = tl.where(c32 > 0, c32, slope * c32)
        tl.store(aux_ptr + offsets, (act * act).to(out_dtype), mask=inside)
    else:
        pre = tl.load(aux_ptr + offsets, mask=inside, other=0.0).to(tl.float32)
        deriv = tl.where(pre > 0, 2.0 * pre, (2.0 * slope * slope) * pre)
        tl.store(c_ptr + offsets, (c.to(tl.float32) * deriv).to(out_dtype), mask=inside)


def _launch(a: Tensor, b_nk: tuple[Tensor, int, int], c: Tensor, aux: Tensor, slope: float, forward: bool,
            blocks: tuple[int, int, int]) -> None:
    b, stride_bn, stride_bk = b_nk
    (M, K), N = a.shape, c.size(1)
    bm, bn, bk = blocks
    grid = ((N + bn - 1) // bn, (M + bm - 1) // bm)
    jit(_matmul_act_kernel)[grid](a, b, c, aux, M, N, K, a.stride(0), a.stride(1), stride_bn, stride_bk,
                                  c.stride(0), c.stride(1), float(slope), FORWARD=forward,
                                  DOT_FP32=interpreting(), BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
                                  num_warps=GPU_WARPS, num_stages=GPU_STAGES)


def _blocks(x: Tensor) -> tuple[int, int, int]:
    if not x.is_cuda:
        return INTERPRETER_BLOCKS
    return GPU_BLOCKS_FP32 if x.dtype == torch.float32 else GPU_BLOCKS


def _check(x: Tensor, w1: Tensor, w2: Tensor, slope: float) -> None:
    if x.ndim != 2 or w1.ndim != 2 or w2.ndim != 2 or w1.size(1) != x.size(1) or w2.size(1) != w1.size(0):
        raise PgolfError(f"leaky_mlp: x (M, K), w1 (N, K), w2 (D, N) expected, got {tuple(x.shape)}, "
                         f"{tuple(w1.shape)}, {tuple(w2.shape)}")
    if not x.dtype == w1.dtype == w2.dtype:
        raise PgolfError(f"leaky_mlp: x, w1, w2 must share a dtype, got {x.dtype}, {w1.dtype}, {w2.dtype}")
    if slope < 0:
        raise PgolfError(f"leaky_mlp: slope must be >= 0, got {slope}")


@torch.library.custom_op(f"{OP_NAMESPACE}::leaky_mlp", mutates_args=())
def _leaky_mlp_op(x: Tensor, w1: Tensor, w2: Tensor, slope: float) -> tuple[Tensor, Tensor, Tensor]:
    _check(x, w1, w2, slope)
    shape = (x.size(0), w1.size(0))
    pre = torch.empty(shape, device=x.device, dtype=x.dtype)
    post = torch.empty(shape, device=x.device, dtype=x.dtype)
    _launch(x, (w1, w1.stride(0), w1.stride(1)), pre, post, slope, True, _blocks(x))
    return torch.mm(post, w2.t()), pre, post


@_leaky_mlp_op.register_fake
def _(x: Tensor, w1: Tensor, w2: Tensor, slope: float) -> tuple[Tensor, Tensor, Tensor]:
    shape = (x.size(0), w1.size(0))
    return x.new_empty(x.size(0), w2.size(0)), x.new_empty(shape), x.new_empty(shape)


@torch.library.custom_op(f"{OP_NAMESPACE}::leaky_mlp_backward", mutates_args=())
def _leaky_mlp_backward_op(grad_out: Tensor, x: Tensor, w1: Tensor, w2: Tensor, pre: Tensor, post: Tensor,
                           slope: float) -> tuple[Tensor, Tensor, Tensor]:
    grad_out = grad_out.to(x.dtype)
    grad_pre = torch.empty_like(pre)
    # b[n, k] = w2[k, n]: g W2 as a "g bᵀ" product, read through w2's strides (no transposed copy).
    _launch(grad_out, (w2, w2.stride(1), w2.stride(0)), grad_pre, pre, slope, False, _blocks(x))
    return torch.mm(grad_pre, w1), torch.mm(grad_pre.t(), x), torch.mm(grad_out.t(), post)


@_leaky_mlp_backward_op.register_fake
def _(grad_out: Tensor, x: Tensor, w1: Tensor, w2: Tensor, pre: Tensor, post: Tensor,
      slope: float) -> tuple[Tensor, Tensor, Tensor]:
    return torch.empty_like(x), torch.empty_like(w1), torch.empty_like(w2)


def _setup_context(ctx, inputs, output) -> None:
    x, w1, w2, slope = inputs
    _, pre, post = output
    ctx.save_for_backward(x, w1, w2, pre, post)
    ctx.slope = slope


def _backward(ctx, grad_out: Tensor, _grad_pre: Tensor | None, _grad_post: Tensor | None):
    x, w1, w2, pre, post = ctx.saved_tensors
    dx, dw1, dw2 = _leaky_mlp_backward_op(grad_out.contiguous(), x, w1, w2, pre, post, ctx.slope)
    return dx, dw1, dw2, None


_leaky_mlp_op.register_autograd(_backward, setup_context=_setup_context)


def leaky_mlp(x: Tensor, w1: Tensor, w2: Tensor, slope: float) -> Tensor:
    """leaky_relu(x W1ᵀ, slope)² W2ᵀ by the fused kernels; x (..., K), w1 (N, K), w2 (D, N), one dtype."""
    out, _, _ = _leaky_mlp_op(x.reshape(-1, x.size(-1)), w1, w2, float(slope))
    return out.view(*x.shape[:-1], out.size(-1))
