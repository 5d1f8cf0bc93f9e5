"""Shared by the model tests: small configs and the SPEC §7 weight-filling rule."""

from __future__ import annotations

import dataclasses

import torch

from pipeline.config import ModelConfig
from pipeline.model import GPT
from tests.conftest import tiny_model_config


def canon_config(cfg: ModelConfig, **canon) -> ModelConfig:
    return dataclasses.replace(cfg, canon=dataclasses.replace(cfg.canon, **canon))


def fill_like_spec(model: torch.nn.Module, seed: int = 1234, std: float = 0.2) -> torch.Generator:
    """SPEC §7: every state-dict tensor, in sorted key order, becomes randn * std
    from one generator; returns the generator for drawing the inputs next."""
    g = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    with torch.no_grad():
        for key in sorted(state):
            state[key].copy_(torch.randn(state[key].shape, generator=g) * std)
    return g


def random_tiny_model(seed: int = 0, **overrides) -> GPT:
    """A tiny model (every component on unless overridden) with random weights,
    so no path is hidden behind a zero init."""
    torch.manual_seed(seed)
    model = GPT(tiny_model_config(**overrides))
    fill_like_spec(model, seed)
    return model
