"""Muon: momentum SGD whose update for each weight matrix is orthogonalised.

Per step, for every matrix ``p`` with gradient ``g`` in a group (SPEC §3)::

    buf <- momentum * buf + g
    u   <- g + momentum * buf                 (Nesterov; plain momentum: u <- buf)
    O   <- newton_schulz(u) * sqrt(max(1, rows / cols))        (bf16)
    p   <- p * (1 - lr * weight_decay)        (decoupled weight decay)
    p   <- p - lr * O

Variants (``train.muon_variant``, the 1.0611 record's Muon): Polar-Express
coefficients in place of the fixed quintic (`polar_express`), MuonEq-R (each
row of ``u`` scaled to unit norm before Newton-Schulz, `row_normalize`), and
the gradient and momentum buffer kept in bf16 (``momentum_dtype``).

Weight decay is applied after the update direction is known and just before it
is added, with the step's (scheduled) lr; because ``O`` does not depend on
``p`` this is ``p <- p * (1 - lr*wd) - lr*O``.  That is the order of the
Parameter Golf records that added decay to Muon (e.g. ``records/track_10min_16mb/
2026-03-20_10L_Int5MLP_MuonWD04_SWA50/train_gpt.py``: after the all-reduce,
each parameter is first scaled by ``1 - lr*wd`` and then receives the update).

Distributed: rank ``r`` orthogonalises the parameters whose index in the group
is ``r`` modulo ``world_size``, writes them into a flat bf16 buffer (zeros
elsewhere), and one SUM all-reduce gives every rank every update.  Exactly one
rank contributes a non-zero value to each element, so the sum is exact and the
result is bitwise the same for any world size.

The momentum buffers are kept for every parameter on every rank (a cheap
element-wise update on gradients that are identical across ranks after DDP),
so any rank's ``state_dict()`` is complete: a checkpoint from rank 0 resumes at
any world size.  Only the Newton-Schulz work is sharded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_EPS = 1e-7

Orthogonalizer = Callable[[Tensor, int], Tensor]


def newton_schulz(G: Tensor, steps: int, eps: float = NS_EPS, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Approximately orthogonalise a matrix, or each matrix of a stack, in bf16.

    Works on the last two dims, so one call on a (B, rows, cols) stack runs the
    iterations once for B same-shape matrices; the result equals B separate
    calls (each matrix is normalised by its own Frobenius norm).  The
    quintic's coefficients push every singular value towards ~1 in a few
    steps.  Wide orientation (rows <= cols) keeps the Gram matrix X·Xᵀ small.
    The products are evaluated as the reference does (``(c·A)·A``), which
    matters for bitwise agreement in bf16.  Shape-static control flow only,
    so it can be wrapped in ``torch.compile`` (``dynamic=False``: a rank sees at
    most one stack per distinct shape, five in the record model).  Compiled, it
    agrees with eager only to bf16 rounding: Inductor fuses the element-wise
    steps and skips rounding their intermediates to bf16.
    """
    a, b, c = NS_COEFFS
    X = G.to(dtype)  # bf16 as SPEC says; other dtypes for numerical comparisons
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)
    transposed = G.size(-2) > G.size(-1)
    if transposed:
        X = X.mT
    for _ in range(steps):
        A = X @ X.mT
        B = b * A + (c * A) @ A
        X = a * X + B @ X
    return X.mT if transposed else X


# Polar Express (PR #1344 -> #1787): one minimax-optimal (a, b, c) per iteration
# instead of the fixed quintic; past the fifth step the list simply ends.
POLAR_EXPRESS_COEFFS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)


def polar_express(G: Tensor, steps: int, eps: float = NS_EPS, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Newton-Schulz with Polar Express's per-iteration coefficients (at most five
    iterations: `steps` > 5 runs the five tuples).  Same normalisation and
    orientation as `newton_schulz`; the product is evaluated as the 1.0611
    record does, ``b·A + c·(A·A)``, for bitwise agreement in bf16."""
    X = G.to(dtype)
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)
    transposed = G.size(-2) > G.size(-1)
    if transposed:
        X = X.mT
    for a, b, c in POLAR_EXPRESS_COEFFS[:steps]:
        A = X @ X.mT
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.mT if transposed else X


ORTHOGONALIZERS: dict[str, Callable[..., Tensor]] = {"quintic": newton_schulz, "polar_express": polar_express}


def row_normalize(u: Tensor, eps: float = 1e-7) -> Tensor:
    """MuonEq-R: each row divided by its (fp32) norm, in u's dtype."""
    return u / u.float().norm(dim=-1, keepdim=True).clamp_min(eps).to(u.dtype)


def aspect_scale(rows: int, cols: int) -> float:
    """sqrt(max(1, rows/cols)): keeps the update's RMS comparable for tall matrices."""
    return math.sqrt(max(1.0, rows / cols))


class Muon(torch.optim.Optimizer):
    """Muon over 2-D parameters; ``lr``, ``momentum`` and ``weight_decay`` are
    per group and may be rewritten before every step (the schedule does so).

    A parameter's index in its group decides which rank orthogonalises it, so
    every rank must build the groups in the same order.  As in the reference,
    a parameter without a gradient gets a zero update but is still decayed.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float,
        backend_steps: int = 5,
        weight_decay: float = 0.0,
        nesterov: bool = True,
        *,
        rank: int = 0,
        world_size: int = 1,
        orthogonalize: Orthogonalizer = newton_schulz,
        update_dtype: torch.dtype = torch.bfloat16,
        row_normalize: bool = False,
        momentum_dtype: torch.dtype | None = None,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"Muon: rank {rank} is not in a world of size {world_size}")
        defaults = dict(
            lr=lr, momentum=momentum, backend_steps=backend_steps,
            weight_decay=weight_decay, nesterov=nesterov,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon: only 2-D parameters are supported, got shape {tuple(p.shape)}")
        self.rank = rank
        self.world_size = world_size
        self.orthogonalize = orthogonalize
        self.update_dtype = update_dtype  # dtype of the shared flat update (bf16, as the reference)
        self.row_normalize = row_normalize  # MuonEq-R before Newton-Schulz
        # None: the gradient's dtype; bf16: gradient and buffer in bf16 (the 1.0611 record).
        self.momentum_dtype = momentum_dtype

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["params"]:
                self._step_group(group)
        return loss

    def _momentum_buffer(self, p: Tensor, grad: Tensor) -> Tensor:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(grad)
        elif state["momentum_buffer"].dtype != grad.dtype:
            # Optimizer.load_state_dict casts state to the parameter's dtype; a bf16 buffer goes back.
            state["momentum_buffer"] = state["momentum_buffer"].to(grad.dtype)
        return state["momentum_buffer"]

    def _step_group(self, group: dict[str, Any]) -> None:
        params: list[Tensor] = group["params"]
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]

        # Momentum for every parameter on every rank: keeps state complete.
        with_grad = [i for i, p in enumerate(params) if p.grad is not None]
        grads = [params[i].grad for i in with_grad]
        if self.momentum_dtype is not None:
            grads = [g.to(self.momentum_dtype) for g in grads]
        bufs = [self._momentum_buffer(params[i], g) for i, g in zip(with_grad, grads)]
        per_tensor = self.momentum_dtype is not None and self.momentum_dtype != torch.float32
        if per_tensor:
            # Low-precision buffers: the foreach kernels round the scalar momentum to the
            # buffer's dtype (0.97 -> 0.96875 in bf16); mul_/add_ keep it in fp32 as the record.
            for b, g in zip(bufs, grads):
                b.mul_(momentum).add_(g)
        elif bufs:
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads)

        # Directions for the parameters this rank orthogonalises.
        mine = [k for k, i in enumerate(with_grad) if i % self.world_size == self.rank]
        if group["nesterov"] and per_tensor:
            dirs = [grads[k].add(bufs[k], alpha=momentum) for k in mine]
        elif group["nesterov"]:
            dirs = torch._foreach_add([grads[k] for k in mine], [bufs[k] for k in mine], alpha=momentum) if mine else []
        else:
            dirs = [bufs[k] for k in mine]
        if self.row_normalize:
            dirs = [row_normalize(d) for d in dirs]
        owner_index = [with_grad[k] for k in mine]

        numels = [p.numel() for p in params]
        flat = torch.zeros(sum(numels), device=params[0].device, dtype=self.update_dtype)
        slots = flat.split(numels)

        # Newton-Schulz once per distinct shape, on the stack of those matrices.
        by_shape: dict[torch.Size, list[int]] = {}
        for j, i in enumerate(owner_index):
            by_shape.setdefault(params[i].shape, []).append(j)
        for shape, js in by_shape.items():
            stacked = torch.stack([dirs[j] for j in js])
            out = self.orthogonalize(stacked, group["backend_steps"])
            out = out * aspect_scale(shape[0], shape[1])
            for row, j in zip(out, js):
                slots[owner_index[j]].copy_(row.reshape(-1))

        if self.world_size > 1:
            dist.all_reduce(flat, op=dist.ReduceOp.SUM)

        updates = _as_param_dtypes(flat, slots, params)
        if wd != 0.0:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        torch._foreach_add_(params, updates, alpha=-lr)


def _as_param_dtypes(flat: Tensor, slots: tuple[Tensor, ...], params: list[Tensor]) -> list[Tensor]:
    """The bf16 updates viewed as each parameter, in the parameter's dtype
    (one conversion of the whole buffer when the group shares a dtype)."""
    dtypes = {p.dtype for p in params}
    if len(dtypes) == 1:
        wide = flat.to(dtypes.pop()).split([p.numel() for p in params])
        return [u.view_as(p) for u, p in zip(wide, params)]
    return [u.view_as(p).to(p.dtype) for u, p in zip(slots, params)]
