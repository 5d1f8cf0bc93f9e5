"""Fetching the challenge's published data from the Hugging Face Hub.

The dataset repo (``data.hub_repo``) holds, under ``datasets/``: a
``manifest.json`` describing every export, the ready shards in
``datasets/fineweb10B_sp{V}/``, the tokenizer ``tokenizers/fineweb_{V}_bpe.model``
and the raw documents ``docs_selected.jsonl`` with a sidecar
``docs_selected.source_manifest.json`` that records their sha256.

Downloading goes through a `Downloader` -- ``(repo_id, path in repo) -> local
file`` -- so tests substitute a local copier and never touch the network.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import DataConfig
from pipeline.data.manifest import file_sha256
from pipeline.data.shards import read_header, shard_name
from pipeline.errors import DataError

Downloader = Callable[[str, str], Path]

REMOTE_ROOT = "datasets"
DOCS_FILE = "docs_selected.jsonl"
DOCS_SOURCE_MANIFEST = "docs_selected.source_manifest.json"


def hf_download(repo_id: str, filename: str) -> Path:
    """Download one file of a Hub dataset repo into the local Hugging Face cache."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, repo_type="dataset"))
    except EntryNotFoundError as exc:  # not an OSError in every huggingface_hub version
        raise FileNotFoundError(str(exc)) from exc


def hub_dataset_name(vocab_size: int) -> str:
    return f"fineweb10B_sp{vocab_size}"


@dataclass(frozen=True)
class PublishedData:
    """Local copies of a published export, validated."""

    val: tuple[Path, ...]
    train: tuple[Path, ...]
    tokenizer: Path
    description: dict[str, Any]


def fetch_published_shards(cfg: DataConfig, download: Downloader) -> PublishedData:
    """The validation shards, the first ``data.train_shards`` train shards and the tokenizer.

    Shard counts and the tokenizer's path come from the repo's manifest; each
    shard's header is checked against its size as soon as it arrives.
    """
    vocab = cfg.tokenizer.vocab_size
    manifest_path = _get(download, cfg.hub_repo, f"{REMOTE_ROOT}/manifest.json")
    manifest = _read_json(manifest_path, f"{cfg.hub_repo}:{REMOTE_ROOT}/manifest.json")
    name = hub_dataset_name(vocab)
    entry = _find(manifest.get("datasets"), name)
    if entry is None:
        raise DataError(f"{cfg.hub_repo}: no dataset {name!r} in {REMOTE_ROOT}/manifest.json "
                        f"(data.tokenizer.vocab_size={vocab})")
    stats = entry.get("stats") or {}
    try:
        files_val, files_train = int(stats["files_val"]), int(stats["files_train"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{cfg.hub_repo}: {REMOTE_ROOT}/manifest.json gives no shard counts for {name}") from None
    if cfg.train_shards > files_train:
        raise DataError(f"data.train_shards={cfg.train_shards} but {cfg.hub_repo} publishes only "
                        f"{files_train} train shards of {name}")
    if cfg.train_shards < 1 or files_val < 1:
        raise DataError(f"data.train_shards={cfg.train_shards}: at least one train and one validation shard is needed")

    tokenizer_entry = _find(manifest.get("tokenizers"), entry.get("tokenizer_name"))
    tokenizer_rel = (tokenizer_entry or {}).get("model_path") or f"tokenizers/fineweb_{vocab}_bpe.model"
    prefix = f"{REMOTE_ROOT}/datasets/{name}"

    def shards(split: str, count: int) -> tuple[Path, ...]:
        paths = []
        for index in range(count):
            remote = f"{prefix}/{shard_name(split, index)}"
            local = _get(download, cfg.hub_repo, remote)
            read_header(local)
            paths.append(local)
        return tuple(paths)

    val = shards("val", files_val)
    train = shards("train", cfg.train_shards)
    tokenizer = _get(download, cfg.hub_repo, f"{REMOTE_ROOT}/{tokenizer_rel}")
    description = {
        "kind": "fineweb",
        "hub_mode": "shards",
        "hub_repo": cfg.hub_repo,
        "dataset": name,
        "tokenizer": f"{REMOTE_ROOT}/{tokenizer_rel}",
        "train_shards": cfg.train_shards,
        "val_shards": files_val,
    }
    return PublishedData(val=val, train=train, tokenizer=tokenizer, description=description)


def fetch_docs(cfg: DataConfig, download: Downloader) -> tuple[Path, dict[str, Any]]:
    """``docs_selected.jsonl``, verified against the sha256 its source manifest publishes."""
    sidecar_remote = f"{REMOTE_ROOT}/{DOCS_SOURCE_MANIFEST}"
    sidecar = _read_json(_get(download, cfg.hub_repo, sidecar_remote), f"{cfg.hub_repo}:{sidecar_remote}")
    expected = sidecar.get("docs_sha256")
    if not isinstance(expected, str) or len(expected) != 64:
        raise DataError(f"{cfg.hub_repo}:{sidecar_remote}: no valid docs_sha256")
    docs = _get(download, cfg.hub_repo, f"{REMOTE_ROOT}/{DOCS_FILE}")
    actual = file_sha256(docs)
    if actual != expected.lower():
        raise DataError(f"{docs}: sha256 {actual} does not match docs_sha256 {expected} "
                        f"published in {sidecar_remote}")
    description = {
        "kind": "fineweb",
        "hub_mode": "docs",
        "hub_repo": cfg.hub_repo,
        "docs": f"{REMOTE_ROOT}/{DOCS_FILE}",
        "docs_sha256": actual,
    }
    return docs, description


def link_or_copy(source: Path, destination: Path) -> None:
    """Hard-link `source` to `destination` (no second copy of 16 GB), else copy it."""
    source = source.resolve()  # Hub cache entries are symlinks into a blob store
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def _get(download: Downloader, repo_id: str, filename: str) -> Path:
    try:
        path = Path(download(repo_id, filename))
    except OSError as exc:  # covers huggingface_hub's HTTP / not-found / offline errors
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{repo_id}:{filename}: download failed ({detail})") from None
    if not path.is_file():
        raise DataError(f"{repo_id}:{filename}: download produced no file at {path}")
    return path


def _read_json(path: Path, where: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{where}: not a readable JSON file ({exc})") from None
    if not isinstance(value, dict):
        raise DataError(f"{where}: expected a JSON object")
    return value


def _find(entries: Any, name: Any) -> dict[str, Any] | None:
    if not isinstance(entries, list) or name is None:
        return None
    return next((e for e in entries if isinstance(e, dict) and e.get("name") == name), None)
