"""Resumable training state: one atomic file per rank.

Muon keeps each momentum buffer only on the rank that orthogonalises that
parameter, so every rank saves (and later loads) its own file.  A checkpoint
records the params digest and world size it was made with; resuming under
different ones is refused rather than silently training something else.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline import atomic
from pipeline.errors import TrainingError
from pipeline.runtime import accelerator_rng_state, set_accelerator_rng_state


def checkpoint_path(work_dir: Path, rank: int) -> Path:
    return Path(work_dir) / f"resume.rank{rank}.pt"


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        **accelerator_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    set_accelerator_rng_state(state)


def save_checkpoint(work_dir: Path, rank: int, state: dict[str, Any]) -> Path:
    path = checkpoint_path(work_dir, rank)
    atomic.torch_save({**state, "rng": rng_state()}, path)
    return path


def load_checkpoint(work_dir: Path, rank: int, params_digest: str, world_size: int) -> dict[str, Any]:
    path = checkpoint_path(work_dir, rank)
    if not path.is_file():
        raise TrainingError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise TrainingError(f"{path}: unreadable checkpoint ({exc})") from exc
    if state.get("params_digest") != params_digest:
        raise TrainingError(f"{path}: made with different params (digest {state.get('params_digest', '?')[:12]}, "
                            f"now {params_digest[:12]}); start afresh without --resume")
    if state.get("world_size") != world_size:
        raise TrainingError(f"{path}: made with world size {state.get('world_size')}, now {world_size}")
    set_rng_state(state["rng"])
    return state
