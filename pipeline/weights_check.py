"""Refuse weights that are not the configured model's, or not numbers.

quantize and evaluate used to pack and score whatever they were given:
NaN weights became an artifact and a ``bpb nan``; an ``averaged.pt`` of
another shape was packed.  `check_weights` compares a state dict with the
state dict of `GPT(model_cfg)` -- built on the meta device, so it costs no
memory -- name by name and shape by shape, then checks every floating
tensor is finite, and names the first offender in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from pipeline.config import ModelConfig
from pipeline.errors import PgolfError


def expected_shapes(model_cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Parameter and buffer names of the configured model, in its order, with their shapes."""
    from pipeline.model import GPT

    with torch.device("meta"):
        model = GPT(model_cfg)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def check_weights(state: Mapping[str, Tensor], model_cfg: ModelConfig, source: str | Path) -> None:
    """PgolfError naming `source` and the first tensor that is missing, unexpected, misshapen or non-finite."""
    expected = expected_shapes(model_cfg)
    misfit = f"{source}: weights do not fit the configured model (params `model`)"
    for name, shape in expected.items():
        if name not in state:
            raise PgolfError(f"{misfit}: tensor {name!r} is missing")
        actual = tuple(state[name].shape)
        if actual != shape:
            raise PgolfError(f"{misfit}: tensor {name!r} has shape {list(actual)}, expected {list(shape)}")
    for name in state:
        if name not in expected:
            raise PgolfError(f"{misfit}: tensor {name!r} is not one of its parameters")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise PgolfError(f"{source}: tensor {name!r} holds {bad} non-finite value(s) (NaN or inf)")
