"""The ``shards`` data source: a local directory of ready shards and its tokenizer, used as they are.

Params: ``data.sources.shards.dir`` (the directory) and, optionally,
``data.tokenizer.model_path`` when the directory holds no single ``.model``.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import DataConfig
from pipeline.data.hub import Hub
from pipeline.data.shards import read_header, shard_paths
from pipeline.data.sources import ReadyShards
from pipeline.errors import DataError


def open_local_shards(cfg: DataConfig, hub: Hub) -> ReadyShards:
    """The directory's validated shards and its one tokenizer (or ``data.tokenizer.model_path``)."""
    directory = Path(cfg.sources.shards.dir)
    if not directory.is_dir():
        raise DataError(f"data.sources.shards.dir: {directory} is not a directory")
    val, train = shard_paths(directory, "val"), shard_paths(directory, "train")
    for split, paths in (("val", val), ("train", train)):
        if not paths:
            raise DataError(f"{directory}: no fineweb_{split}_NNNNNN.bin shards")
    for path in (*val, *train):
        read_header(path)
    if cfg.tokenizer.model_path:
        tokenizer = Path(cfg.tokenizer.model_path)
    else:
        models = sorted(directory.glob("*.model"))
        if len(models) != 1:
            found = ", ".join(m.name for m in models) or "none"
            raise DataError(f"{directory}: expected exactly one tokenizer .model (found {found}); "
                            "or set data.tokenizer.model_path")
        tokenizer = models[0]
    description = {"kind": "shards", "shards_dir": directory.as_posix(), "tokenizer": tokenizer.as_posix()}
    return ReadyShards(tuple(val), tuple(train), tokenizer, str(tokenizer), description)
