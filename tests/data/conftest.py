"""One small prepare of the embedded corpus per test session (the CPU smoke corpus)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.config import DataConfig
from pipeline.data.layout import DataLayout
from pipeline.data.prepare import PrepareSummary, prepare
from tests.data.helpers import data_config

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
    return data_config(source="embedded", out_dir=str(out_dir), max_docs=EMBEDDED_MAX_DOCS,
                       val_docs=EMBEDDED_VAL_DOCS, shard_tokens=EMBEDDED_SHARD_TOKENS)


@pytest.fixture(scope="session")
def embedded_data(tmp_path_factory: pytest.TempPathFactory) -> Prepared:
    cfg = embedded_config(tmp_path_factory.mktemp("embedded") / "data")
    summary = prepare(cfg)
    return Prepared(cfg, summary, DataLayout(Path(cfg.out_dir)))
