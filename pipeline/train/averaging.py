"""Weight averaging during training: tight SWA snapshots and EMA (SPEC §3).

Snapshots are taken from the live model at chosen steps and kept on the CPU
(the record keeps 12 of ~27 M parameters: ~1.3 GB, fine in host memory and
free on the GPU).  The swa stage averages them later, so changing *what* is
averaged never requires retraining.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

from pipeline.config import SwaConfig
from pipeline.errors import TrainingError
from pipeline.layout import RunLayout
from pipeline.stage_files import read_snapshots, read_state_dict


def snapshot_due(step: int, lr_mul: float, cfg: SwaConfig) -> bool:
    """Tight SWA rule: every `cfg.every` steps once the LR multiplier is below `start_lrmul`.

    `step` counts completed optimiser steps (1 after the first step).
    """
    return cfg.enabled and lr_mul < cfg.start_lrmul and step % cfg.every == 0


def cpu_state(model: nn.Module) -> dict[str, Tensor]:
    """A detached fp32-or-native CPU copy of the model's state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


class SnapshotKeeper:
    """Keeps the most recent `max_snapshots` weight snapshots (0 = all), keyed by step."""

    def __init__(self, max_snapshots: int):
        self.max_snapshots = max_snapshots
        self.snapshots: OrderedDict[int, dict[str, Tensor]] = OrderedDict()

    def add(self, step: int, model: nn.Module) -> None:
        self.snapshots[step] = cpu_state(model)
        while self.max_snapshots and len(self.snapshots) > self.max_snapshots:
            self.snapshots.popitem(last=False)

    @property
    def steps(self) -> list[int]:
        return list(self.snapshots)

    def state_dict(self) -> dict:
        return {"max_snapshots": self.max_snapshots, "snapshots": list(self.snapshots.items())}

    def load_state_dict(self, state: dict) -> None:
        self.max_snapshots = state["max_snapshots"]
        self.snapshots = OrderedDict((int(s), sd) for s, sd in state["snapshots"])


class EMA:
    """Exponential moving average of the weights, updated every step, kept in fp32 on the model's device."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach().float(), 1.0 - self.decay)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": {k: v.cpu() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)

    def averaged_state(self, like: dict[str, Tensor]) -> dict[str, Tensor]:
        """The EMA weights in the dtypes of `like` (non-float tensors taken from `like`)."""
        return {k: (self.shadow[k].to("cpu", v.dtype) if k in self.shadow else v.cpu()) for k, v in like.items()}


def average_states(states: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Uniform average of state dicts (float tensors averaged in fp64, cast back)."""
    if not states:
        raise ValueError("no states to average")
    out: dict[str, Tensor] = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            acc = torch.zeros_like(first, dtype=torch.float64)
            for sd in states:
                acc += sd[key].to(torch.float64)
            out[key] = (acc / len(states)).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


def averaging_input(layout: RunLayout, cfg: SwaConfig, seed: int) -> tuple[Path, str]:
    """The file `averaged_weights` reads for `cfg.method`, and what writes it (for a preflight check)."""
    if cfg.method == "ema":
        return layout.ema_weights, f"no EMA weights: run `pgolf train --seed {seed}` with train.ema_enabled: true"
    path = layout.final_weights if cfg.method == "final" else layout.snapshots
    return path, f"run `pgolf train --seed {seed}` first"


def averaged_weights(layout: RunLayout, cfg: SwaConfig) -> tuple[dict[str, Tensor], dict]:
    """The weights the swa stage writes (chosen by `cfg.method`) and a description of them."""
    if cfg.method == "final":
        return read_state_dict(layout.final_weights, "final weights written by `pgolf train`"), {"method": "final"}
    if cfg.method == "ema":
        if not layout.ema_weights.is_file():
            raise TrainingError(f"{layout.ema_weights}: no EMA weights (train with train.ema_enabled: true)")
        return read_state_dict(layout.ema_weights, "EMA weights written by `pgolf train`"), {"method": "ema"}
    steps, states = read_snapshots(layout.snapshots)
    if cfg.last_k:
        steps, states = steps[-cfg.last_k:], states[-cfg.last_k:]
    if cfg.min_snapshots and len(states) < cfg.min_snapshots:
        # The reference's rule: an average of fewer than 2 snapshots is not taken.
        final = read_state_dict(layout.final_weights, "final weights written by `pgolf train`")
        return final, {"method": "final", "fallback_from": "snapshots", "snapshot_steps": list(steps)}
    if not states:
        raise TrainingError(
            f"{layout.snapshots}: no SWA snapshots were taken (training never reached "
            f"lr_mul < swa.start_lrmul={cfg.start_lrmul} at a multiple of swa.every={cfg.every})")
    first = states[0]
    for step, state in zip(steps, states):
        if state.keys() != first.keys() or any(state[k].shape != first[k].shape for k in first):
            raise TrainingError(f"{layout.snapshots}: the snapshot of step {step} does not match "
                                f"the snapshot of step {steps[0]} (names or shapes)")
    return average_states(states), {"method": "snapshots", "snapshot_steps": list(steps)}
