"""Shared fixtures: the committed record params and small variants of them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from pipeline.config import ModelConfig, Params, load_params

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def record_params() -> Params:
    return load_params(ROOT / "params.yaml")


def tiny_model_config(base: ModelConfig | None = None, **overrides) -> ModelConfig:
    """A small model with every component on (Canon AC, XSA, bigram, smear)."""
    base = base or load_params(ROOT / "params.yaml").model
    small = dict(
        num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=2,
        rope_dims=8, xsa_last_n=2, bigram_buckets=64, bigram_dim=16,
    )
    small.update({k: v for k, v in overrides.items() if k != "canon"})
    cfg = dataclasses.replace(base, **small)
    if "canon" in overrides:
        cfg = dataclasses.replace(cfg, canon=dataclasses.replace(cfg.canon, **overrides["canon"]))
    else:
        cfg = dataclasses.replace(cfg, canon=dataclasses.replace(cfg.canon, last_n=2))
    return cfg
