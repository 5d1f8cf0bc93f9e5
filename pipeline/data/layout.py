"""Where the prepare stage puts things under ``data.out_dir`` (the stage's single output).

    tokenizer.model
    shards/fineweb_train_NNNNNN.bin
    shards/fineweb_val_NNNNNN.bin
    manifest.json

Later stages find their inputs through `DataLayout` rather than spelling paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.data.shards import shard_paths
from pipeline.errors import DataError

TOKENIZER_FILE = "tokenizer.model"
SHARDS_DIR = "shards"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class DataLayout:
    root: Path

    @property
    def tokenizer(self) -> Path:
        return self.root / TOKENIZER_FILE

    @property
    def shards_dir(self) -> Path:
        return self.root / SHARDS_DIR

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_FILE

    def train_files(self) -> list[Path]:
        return self._split("train")

    def val_files(self) -> list[Path]:
        return self._split("val")

    def _split(self, split: str) -> list[Path]:
        files = shard_paths(self.shards_dir, split)
        if not files:
            raise DataError(f"{self.shards_dir}: no {split} shards (run `pgolf prepare` first)")
        return files


def as_data_layout(data: "DataLayout | Path | str") -> DataLayout:
    """A layout as given, or the prepare stage's layout under a directory.

    Training and evaluation take either: the pipeline passes ``data.out_dir``,
    the exported train_gpt.py a layout of the challenge's own directories.
    """
    return data if isinstance(data, DataLayout) else DataLayout(Path(data))
