"""Shared fixtures: the committed record params and small variants of them."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Triton's CPU interpreter for the fused-kernel tests (tests/model/test_kernels.py).  Triton
    # decorates its own library functions when it is first imported, so this must be set before
    # anything imports it; without a GPU nothing else launches Triton kernels.
    os.environ.setdefault("TRITON_INTERPRET", "1")

from pipeline.config import DataConfig, ModelConfig, Params, load_params
from pipeline.data.layout import DataLayout
from pipeline.data.prepare import PrepareSummary, prepare

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def record_params() -> Params:
    return load_params(ROOT / "params.yaml")


def tiny_model_config(base: ModelConfig | None = None, **overrides) -> ModelConfig:
    """A small model with every component on (Canon AC, XSA, bigram, smear), in fp32
    throughout (embed_dtype fp32: exact comparisons; tests of bf16 storage override it)."""
    base = base or load_params(ROOT / "params.yaml").model
    small = dict(
        num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=2,
        rope_dims=8, xsa_last_n=2, bigram_buckets=64, bigram_dim=16, embed_dtype="fp32",
    )
    small.update({k: v for k, v in overrides.items() if k != "canon"})
    cfg = dataclasses.replace(base, **small)
    if "canon" in overrides:
        cfg = dataclasses.replace(cfg, canon=dataclasses.replace(cfg.canon, **overrides["canon"]))
    else:
        cfg = dataclasses.replace(cfg, canon=dataclasses.replace(cfg.canon, last_n=2))
    return cfg


# ---------------------------------------------------------------- the embedded corpus, prepared once

# 600 documents: the 79 pydoc topics, then docstrings.  Enough training text for
# vocab 1024; 20k-token shards so each split spans several files.
EMBEDDED_MAX_DOCS = 600
EMBEDDED_VAL_DOCS = 40
EMBEDDED_SHARD_TOKENS = 20_000


@dataclass(frozen=True)
class Prepared:
    cfg: DataConfig
    summary: PrepareSummary
    layout: DataLayout


def embedded_config(out_dir: Path) -> DataConfig:
    from tests.data.helpers import data_config

    return data_config(source="embedded", out_dir=str(out_dir), max_docs=EMBEDDED_MAX_DOCS,
                       val_docs=EMBEDDED_VAL_DOCS, shard_tokens=EMBEDDED_SHARD_TOKENS)


@pytest.fixture(scope="session")
def embedded_data(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    cfg = embedded_config(tmp_path_factory.mktemp("embedded") / "data")
    summary = prepare(cfg)
    return Prepared(cfg, summary, DataLayout(Path(cfg.out_dir)))
