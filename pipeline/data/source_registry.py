"""Data sources by name: ``data.source`` picks one, ``data.sources.<name>`` holds its params.

A source opens (`DataSource.open(cfg, hub)`) to one of two things the
prepare stage knows how to use: a `TextSource` (raw documents it tokenises
and shards) or `ReadyShards` (shards and a tokenizer it validates and links in
as they are).  `inputs` lists the local files a source will read, so
`pgolf preflight` can check them before anything runs.

Adding a source: one module with its opener, one line in `SOURCES` below, and
its params section (a dataclass field of `pipeline.config.DataSources` with a
`doc(...)` description, and its values in conf/profile/record.yaml);
docs/architecture.md walks through it.  tests/data/test_source_registry.py
checks the registry and the params sections name the same sources.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import DataConfig
from pipeline.data.hub import Hub, open_fineweb
from pipeline.data.local_shards import open_local_shards
from pipeline.data.sources import ReadyShards, TextSource, files_inputs, open_embedded, open_files
from pipeline.errors import DataError


def _no_inputs(cfg: DataConfig) -> list[tuple[Path, str]]:
    return []


@dataclass(frozen=True)
class DataSource:
    name: str
    # (data params, hub) -> what prepare tokenises, or what it links in as is.
    open: Callable[[DataConfig, Hub], TextSource | ReadyShards]
    # data params -> [(local file the source reads, the params key naming it)].
    inputs: Callable[[DataConfig], list[tuple[Path, str]]] = _no_inputs


SOURCES: dict[str, DataSource] = {s.name: s for s in (
    DataSource("embedded", open_embedded),
    DataSource("files", open_files, files_inputs),
    DataSource("fineweb", open_fineweb),
    DataSource("shards", open_local_shards),
)}


def source_for(cfg: DataConfig) -> DataSource:
    """The registered source ``data.source`` names."""
    try:
        return SOURCES[cfg.source]
    except KeyError:
        raise DataError(f"data.source: {cfg.source!r} is not a registered source "
                        f"({', '.join(SOURCES)}; pipeline/data/source_registry.py)") from None
