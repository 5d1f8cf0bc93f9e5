"""Validation loss and bits per byte over a window plan: standard and sliding-window (SPEC §5).

The model is anything that offers a per-token loss, through either
``model(ids, targets, reduction="none")`` (preferred when its forward accepts
``reduction``: the loss is then the model's own) or ``model.logits(ids)``
returning (B, T, V) soft-capped logits (cross-entropy taken here in fp32).

Each rank scores a contiguous block of the plan's windows and returns plain
sums (loss in nats, tokens, bytes, all exact or float64); ranks are combined
by adding the sums, with one all-reduce when the runtime is distributed.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from pipeline.config import EvalConfig
from pipeline.evaluate.bytes import ByteLuts, token_bytes
from pipeline.evaluate.windows import WindowPlan, plan_sliding, plan_standard
from pipeline.runtime import Runtime

Progress = Callable[[int, int], None]  # (windows done, windows of this rank)


@dataclass(frozen=True)
class EvalSums:
    """Additive totals of a scoring pass; ranks and batches combine with +."""

    loss_sum: float  # nats, summed in float64
    tokens: int
    bytes: int

    def __add__(self, other: EvalSums) -> EvalSums:
        return EvalSums(self.loss_sum + other.loss_sum, self.tokens + other.tokens, self.bytes + other.bytes)

    @property
    def loss(self) -> float:
        """Mean loss per token, nats."""
        return self.loss_sum / self.tokens

    @property
    def bpb(self) -> float:
        """(mean loss / ln 2) x tokens / bytes."""
        return (self.loss / math.log(2.0)) * (self.tokens / self.bytes)

    def to_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "bpb": self.bpb, "tokens": self.tokens, "bytes": self.bytes}


def _accepts_reduction(model: Any) -> bool:
    target = getattr(model, "_orig_mod", model)  # see through torch.compile
    forward = getattr(target, "forward", None)
    if forward is None:
        return False
    try:
        return "reduction" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False


def per_token_losses(model: Any, inputs: Tensor, targets: Tensor) -> Tensor:
    """(B, T) fp32 cross-entropy in nats of each target under `model`."""
    if _accepts_reduction(model):
        losses = model(inputs, targets, reduction="none")
    elif hasattr(model, "logits"):
        logits = model.logits(inputs)
        losses = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    else:
        raise TypeError(f"{type(model).__name__} offers neither forward(ids, targets, reduction=) nor logits(ids)")
    return losses.float().reshape(targets.shape)


def as_token_stream(tokens: Tensor | np.ndarray, max_tokens: int = 0) -> Tensor:
    """1-D int tensor of the validation stream, cut to `max_tokens` targets (0 = all)."""
    if max_tokens:
        tokens = tokens[: max_tokens + 1]
    if isinstance(tokens, np.ndarray):
        arr = tokens if tokens.dtype in (np.int32, np.int64) else tokens.astype(np.int32)
        return torch.from_numpy(np.ascontiguousarray(arr))
    if tokens.dtype in (torch.int32, torch.int64):
        return tokens.reshape(-1)
    return tokens.reshape(-1).to(torch.int32)


def score_windows(
    model: Any,
    tokens: Tensor,
    plan: WindowPlan,
    luts: ByteLuts,
    rt: Runtime,
    batch_seqs: int,
    rank: int | None = None,
    world_size: int | None = None,
    progress: Progress | None = None,
    sidecar: Tensor | None = None,
) -> EvalSums:
    """Sums over this rank's share of `plan` (no communication).

    `rank`/`world_size` default to the runtime's; passing them lets one process
    play every rank (tests, or splitting work by hand).  `sidecar`, parallel to
    `tokens`, gives each token's original bytes (the prepare stage's byte
    sidecar); without it bytes come from `luts`.
    """
    rank = rt.rank if rank is None else rank
    world_size = rt.world_size if world_size is None else world_size
    lo, hi = plan.rank_range(rank, world_size)
    device = rt.device
    luts = luts.to(device)
    # This rank's tokens and window plan go to the device once: a per-batch copy
    # from pageable host memory would wait for all queued work, a host sync per batch.
    first_token = int(plan.starts[lo]) if hi > lo else 0
    end_token = int(plan.starts[hi - 1]) + plan.length + 1 if hi > lo else 0
    tokens = tokens[first_token:end_token].to(device)
    if sidecar is not None:
        sidecar = sidecar[first_token:end_token].to(device=device, dtype=torch.int64)
    starts = torch.from_numpy(plan.starts[lo:hi]).to(device) - first_token
    score_from = torch.from_numpy(plan.score_from[lo:hi]).to(device)
    offsets = torch.arange(plan.length + 1, device=device)
    positions = torch.arange(plan.length, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    token_count = torch.zeros((), dtype=torch.int64, device=device)
    byte_count = torch.zeros((), dtype=torch.int64, device=device)
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.inference_mode():
            for first in range(lo, hi, batch_seqs):
                last = min(first + batch_seqs, hi)
                window = tokens[starts[first - lo:last - lo, None] + offsets].to(torch.int64)
                inputs, targets = window[:, :-1], window[:, 1:]
                scored = positions[None, :] >= score_from[first - lo:last - lo, None]
                with rt.autocast():
                    losses = per_token_losses(model, inputs, targets)
                # Masks by torch.where, not boolean indexing: no host sync per batch.
                loss_sum += torch.where(scored, losses.to(torch.float64), 0.0).sum()
                token_count += scored.sum()
                if sidecar is None:
                    nbytes = token_bytes(inputs, targets, luts)
                else:
                    nbytes = sidecar[starts[first - lo:last - lo, None] + offsets[1:]]
                byte_count += torch.where(scored, nbytes, 0).sum(dtype=torch.int64)
                if progress is not None:
                    progress(last - lo, hi - lo)
    finally:
        if was_training and hasattr(model, "train"):
            model.train()
    return EvalSums(float(loss_sum.item()), int(token_count.item()), int(byte_count.item()))


def all_reduce_sums(sums: EvalSums, rt: Runtime) -> EvalSums:
    """Add the sums of every rank (a no-op in a single process)."""
    if not rt.distributed:
        return sums
    packed = torch.tensor([sums.loss_sum, sums.tokens, sums.bytes], dtype=torch.float64, device=rt.device)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    loss_sum, tokens, nbytes = packed.tolist()
    return EvalSums(loss_sum, round(tokens), round(nbytes))


def truncate_to_windows(stream: Tensor, seq_len: int) -> Tensor:
    """The stream cut to a whole number of `seq_len`-target windows (+1 token for the last target).

    The reference loads its validation tokens this way for every evaluation, the
    sliding window included: the record's 62,021,632 targets are 30,284 x 2048.
    """
    usable = ((stream.numel() - 1) // seq_len) * seq_len
    if usable <= 0:
        raise ValueError(f"the validation stream has {stream.numel() - 1} targets, fewer than eval.seq_len={seq_len}")
    return stream[: usable + 1]


def _evaluate(plan_fn, model: Any, tokens: Tensor | np.ndarray, luts: ByteLuts, cfg: EvalConfig, rt: Runtime,
              progress: Progress | None, sidecar: Tensor | np.ndarray | None) -> EvalSums:
    stream = as_token_stream(tokens, cfg.max_tokens)
    if cfg.stream == "truncated":
        stream = truncate_to_windows(stream, cfg.seq_len)
    plan = plan_fn(stream.numel() - 1)
    if sidecar is not None:
        sidecar = as_token_stream(sidecar)[: stream.numel()]
    sums = score_windows(model, stream, plan, luts, rt, cfg.batch_seqs, progress=progress, sidecar=sidecar)
    return all_reduce_sums(sums, rt)


def evaluate_standard(
    model: Any,
    tokens: Tensor | np.ndarray,
    luts: ByteLuts,
    cfg: EvalConfig,
    rt: Runtime,
    progress: Progress | None = None,
    sidecar: Tensor | np.ndarray | None = None,
) -> EvalSums:
    """Loss and bpb over non-overlapping windows of `cfg.seq_len` (all ranks' total)."""
    return _evaluate(lambda n: plan_standard(n, cfg.seq_len), model, tokens, luts, cfg, rt, progress, sidecar)


def evaluate_sliding_window(
    model: Any,
    tokens: Tensor | np.ndarray,
    luts: ByteLuts,
    cfg: EvalConfig,
    rt: Runtime,
    progress: Progress | None = None,
    sidecar: Tensor | np.ndarray | None = None,
) -> EvalSums:
    """Loss and bpb with sliding windows (`cfg.seq_len`, `cfg.stride`): every target once."""
    return _evaluate(lambda n: plan_sliding(n, cfg.seq_len, cfg.stride), model, tokens, luts, cfg, rt, progress,
                     sidecar)
