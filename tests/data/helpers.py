"""Building blocks for the data tests: small configs, corpora, tokenizers and a fake Hub."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import sentencepiece as spm
import yaml

from pipeline.config import DataConfig, FilesSourceConfig, ShardsSourceConfig, load_params
from pipeline.data.shards import write_shard
from pipeline.data.sources import clean_documents
from pipeline.data.tokenizer import train_tokenizer
from tests.conftest import ROOT

# Small enough to train in a fraction of a second, large enough to need real merges.
SMALL_VOCAB = 384


def data_config(**overrides: Any) -> DataConfig:
    """The record data group with `overrides`; ``tokenizer`` takes a dict of its own overrides, and a
    source's name its section: ``files`` the paths, ``shards`` the directory, ``fineweb`` a dict."""
    base = load_params(ROOT / "params.yaml").data
    tokenizer = dataclasses.replace(base.tokenizer, **overrides.pop("tokenizer", {}))
    sources = base.sources
    if (files := overrides.pop("files", None)) is not None:
        sources = dataclasses.replace(sources, files=FilesSourceConfig(tuple(str(f) for f in files)))
    if (directory := overrides.pop("shards", None)) is not None:
        sources = dataclasses.replace(sources, shards=ShardsSourceConfig(str(directory)))
    if (fineweb := overrides.pop("fineweb", None)) is not None:
        sources = dataclasses.replace(sources, fineweb=dataclasses.replace(sources.fineweb, **fineweb))
    return dataclasses.replace(base, tokenizer=tokenizer, sources=sources, **overrides)


def pydoc_paragraphs(limit: int | None = None) -> list[str]:
    """Real English paragraphs from the pydoc topics (no stdlib parse: fast)."""
    from pydoc_data.topics import topics

    paragraphs = [p for name in sorted(topics) for p in topics[name].split("\n\n")]
    cleaned = list(clean_documents(paragraphs))
    return cleaned[:limit] if limit else cleaned


def write_jsonl(path: Path, texts: Iterable[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for text in texts:
            f.write(json.dumps({"text": text}) + "\n")
    return path


def small_tokenizer(path: Path, vocab_size: int = SMALL_VOCAB) -> Path:
    """Train a SPEC-settings tokenizer of `vocab_size` on pydoc paragraphs and save it."""
    cfg = data_config(tokenizer={"vocab_size": vocab_size}).tokenizer
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(train_tokenizer(pydoc_paragraphs(1500), cfg))
    return path


def encoded_shard(path: Path, processor: spm.SentencePieceProcessor, texts: list[str]) -> np.ndarray:
    """Write `texts` as one shard of ``[bos] + ids`` documents; return its tokens."""
    tokens = np.array(
        [t for text in texts for t in [processor.bos_id(), *processor.encode(text)]], dtype=np.uint16
    )
    write_shard(path, tokens)
    return tokens


def build_fake_hub(root: Path, tokenizer: Path, *, val_shards: int = 1, train_shards: int = 3,
                   docs: list[str] | None = None) -> Path:
    """A folder laid out like the challenge's Hub repo (``datasets/...``), with tiny shards."""
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer))
    vocab = processor.vocab_size()
    base = root / "datasets"
    name = f"fineweb10B_sp{vocab}"
    shard_dir = base / "datasets" / name
    shard_dir.mkdir(parents=True)
    paragraphs = pydoc_paragraphs(60)
    for split, count in (("val", val_shards), ("train", train_shards)):
        for i in range(count):
            chunk = paragraphs[(i * 10) % 50 : (i * 10) % 50 + 10]
            encoded_shard(shard_dir / f"fineweb_{split}_{i:06d}.bin", processor, chunk)
    (base / "tokenizers").mkdir()
    shutil.copyfile(tokenizer, base / "tokenizers" / f"fineweb_{vocab}_bpe.model")
    manifest = {
        "datasets": [{"name": name, "tokenizer_name": f"sp_bpe_{vocab}",
                      "stats": {"files_val": val_shards, "files_train": train_shards}}],
        "tokenizers": [{"name": f"sp_bpe_{vocab}", "model_path": f"tokenizers/fineweb_{vocab}_bpe.model"}],
    }
    (base / "manifest.json").write_text(json.dumps(manifest))
    if docs is not None:
        import hashlib

        jsonl = write_jsonl(base / "docs_selected.jsonl", docs)
        sha = hashlib.sha256(jsonl.read_bytes()).hexdigest()
        (base / "docs_selected.source_manifest.json").write_text(json.dumps({"docs_sha256": sha}))
    publish_digests(root)
    return root


PUBLISHED = "published.json"  # the fake Hub's file digests, as the real one publishes them


class FakeHub:
    """A `Hub` serving a local folder: downloads are copies-in-place, digests come from
    ``published.json`` (written by `build_fake_hub`); `calls` records ``repo@revision:path``."""

    def __init__(self, root: Path, calls: list[str] | None = None) -> None:
        self.root = root
        self.calls = calls

    def download(self, repo_id: str, filename: str, revision: str) -> Path:
        if self.calls is not None:
            self.calls.append(f"{repo_id}@{revision}:{filename}")
        source = self.root / filename
        if not source.is_file():
            raise FileNotFoundError(f"404 Client Error: Entry Not Found for url: {repo_id}/{filename}")
        return source

    def published(self, repo_id: str, filenames, revision: str) -> dict[str, tuple[str, str]]:
        index = self.root / PUBLISHED
        digests = json.loads(index.read_text()) if index.is_file() else {}
        return {name: tuple(digests[name]) for name in filenames if name in digests}


def copier(hub_root: Path, calls: list[str] | None = None) -> FakeHub:
    """A Hub that serves files from a local folder (a missing file raises FileNotFoundError)."""
    return FakeHub(hub_root, calls)


def publish_digests(root: Path) -> None:
    """Record what the Hub publishes for every file under `root`: the LFS sha256 of large-file
    types (shards, tokenizer, documents), the git blob id of the rest."""
    from pipeline.data.hub import GIT_BLOB, SHA256, git_blob_sha1
    from pipeline.data.manifest import file_sha256

    digests = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != PUBLISHED:
            lfs = path.suffix in (".bin", ".model", ".jsonl")
            digests[path.relative_to(root).as_posix()] = (
                [SHA256, file_sha256(path)] if lfs else [GIT_BLOB, git_blob_sha1(path)])
    (root / PUBLISHED).write_text(json.dumps(digests, indent=1))


def write_params(path: Path, data: DataConfig) -> Path:
    """A full params file (the record values) with this data group and a matching model vocab."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    plain = dataclasses.asdict(data)
    plain["sources"]["files"]["paths"] = list(plain["sources"]["files"]["paths"])
    raw["data"] = plain
    raw["model"]["vocab_size"] = data.tokenizer.vocab_size
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
