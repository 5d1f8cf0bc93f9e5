"""Fetching the challenge's published data from the Hugging Face Hub.

The dataset repo (``data.sources.fineweb.repo``) holds, under ``datasets/``: a
``manifest.json`` describing every export, the ready shards in
``datasets/fineweb10B_sp{V}/``, the tokenizer ``tokenizers/fineweb_{V}_bpe.model``
and the raw documents ``docs_selected.jsonl`` with a sidecar
``docs_selected.source_manifest.json`` that records their sha256.

Every download is pinned to ``data.sources.fineweb.revision`` and goes through a `Hub`
-- ``download(repo_id, path in repo, revision) -> local file`` and
``published(repo_id, paths, revision)``, the digests the Hub publishes for
those files (the LFS sha256 of large files, the git blob id of small ones) --
so tests substitute a local folder and never touch the network.  Each
downloaded file is checked against its published digest before it is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.config import DataConfig
from pipeline.data.manifest import file_sha256
from pipeline.data.shards import read_header, shard_name
from pipeline.data.sources import FilesSource, ReadyShards
from pipeline.errors import DataError, first_line

REMOTE_ROOT = "datasets"
DOCS_FILE = "docs_selected.jsonl"
DOCS_SOURCE_MANIFEST = "docs_selected.source_manifest.json"
SHA256, GIT_BLOB = "sha256", "git-sha1"


class Hub(Protocol):
    """Where published files come from (the Hugging Face Hub, or a local folder in tests)."""

    def download(self, repo_id: str, filename: str, revision: str) -> Path: ...

    def published(self, repo_id: str, filenames: Sequence[str], revision: str) -> dict[str, tuple[str, str]]:
        """{path: (SHA256 | GIT_BLOB, hex digest)} for the files whose digest the remote publishes."""
        ...


class HfHub:
    """The Hugging Face Hub through `huggingface_hub` (its local cache included)."""

    def download(self, repo_id: str, filename: str, revision: str) -> Path:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            return Path(hf_hub_download(repo_id=repo_id, filename=filename, repo_type="dataset",
                                        revision=revision))
        except EntryNotFoundError as exc:  # not an OSError in every huggingface_hub version
            raise FileNotFoundError(first_line(exc)) from exc
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - revision not found, HTTP and validation errors
            raise DataError(f"{repo_id}:{filename}: download failed at revision {revision} "
                            f"({type(exc).__name__}: {first_line(exc)})") from None

    def published(self, repo_id: str, filenames: Sequence[str], revision: str) -> dict[str, tuple[str, str]]:
        from huggingface_hub import HfApi

        try:
            infos = HfApi().get_paths_info(repo_id, list(filenames), repo_type="dataset", revision=revision)
        except Exception as exc:  # noqa: BLE001 - HTTP, offline, validation errors of every kind
            raise DataError(f"{repo_id}@{revision}: cannot read the published file digests "
                            f"({type(exc).__name__}: {first_line(exc)})") from None
        digests: dict[str, tuple[str, str]] = {}
        for info in infos:
            lfs = getattr(info, "lfs", None)
            if lfs is not None:
                digests[info.path] = (SHA256, lfs.sha256)
            elif getattr(info, "blob_id", None):
                digests[info.path] = (GIT_BLOB, info.blob_id)
        return digests


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file's content (what the Hub publishes for a file not in LFS)."""
    sha = hashlib.sha1()  # noqa: S324 - git's object id, not a security digest on its own
    sha.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            sha.update(chunk)
    return sha.hexdigest()


def hub_dataset_name(vocab_size: int) -> str:
    return f"fineweb10B_sp{vocab_size}"


@dataclass(frozen=True)
class PublishedData:
    """Local copies of a published export, validated."""

    val: tuple[Path, ...]
    train: tuple[Path, ...]
    tokenizer: Path
    description: dict[str, Any]


def open_fineweb(cfg: DataConfig, hub: Hub) -> ReadyShards | FilesSource:
    """The ``fineweb`` data source: the published shards as they are, or the documents to tokenise here."""
    fw = cfg.sources.fineweb
    if fw.mode == "shards":
        published = fetch_published_shards(cfg, hub)
        return ReadyShards(published.val, published.train, published.tokenizer,
                           f"{fw.repo}:{published.description['tokenizer']}", published.description)
    docs, description = fetch_docs(cfg, hub)
    return FilesSource((docs,), description=description)


def fetch_published_shards(cfg: DataConfig, hub: Hub) -> PublishedData:
    """The validation shards, the first ``data.sources.fineweb.train_shards`` train shards and the tokenizer.

    Shard counts and the tokenizer's path come from the repo's manifest; each
    file is checked against the digest the Hub publishes for it, and each
    shard's header against its size, as soon as it arrives.
    """
    vocab = cfg.tokenizer.vocab_size
    fw = cfg.sources.fineweb
    fetch = _Fetcher(cfg, hub)
    manifest_remote = f"{REMOTE_ROOT}/manifest.json"
    fetch.expect([manifest_remote])
    manifest = _read_json(fetch(manifest_remote), f"{fw.repo}:{manifest_remote}")
    name = hub_dataset_name(vocab)
    entry = _find(manifest.get("datasets"), name)
    if entry is None:
        raise DataError(f"{fw.repo}: no dataset {name!r} in {REMOTE_ROOT}/manifest.json "
                        f"(data.tokenizer.vocab_size={vocab})")
    stats = entry.get("stats") or {}
    try:
        files_val, files_train = int(stats["files_val"]), int(stats["files_train"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{fw.repo}: {REMOTE_ROOT}/manifest.json gives no shard counts for {name}") from None
    if fw.train_shards > files_train:
        raise DataError(f"data.sources.fineweb.train_shards={fw.train_shards} but {fw.repo} publishes only "
                        f"{files_train} train shards of {name}")
    if fw.train_shards < 1 or files_val < 1:
        raise DataError(f"data.sources.fineweb.train_shards={fw.train_shards}: at least one train and one validation shard is needed")

    tokenizer_entry = _find(manifest.get("tokenizers"), entry.get("tokenizer_name"))
    tokenizer_rel = (tokenizer_entry or {}).get("model_path") or f"tokenizers/fineweb_{vocab}_bpe.model"
    tokenizer_remote = f"{REMOTE_ROOT}/{tokenizer_rel}"
    prefix = f"{REMOTE_ROOT}/datasets/{name}"
    remote = {split: [f"{prefix}/{shard_name(split, i)}" for i in range(count)]
              for split, count in (("val", files_val), ("train", fw.train_shards))}
    fetch.expect([*remote["val"], *remote["train"], tokenizer_remote])

    def shards(split: str) -> tuple[Path, ...]:
        paths = []
        for path in remote[split]:
            local = fetch(path)
            read_header(local)
            paths.append(local)
        return tuple(paths)

    val = shards("val")
    train = shards("train")
    tokenizer = fetch(tokenizer_remote)
    description = {
        "kind": "fineweb",
        "hub_mode": "shards",
        "hub_repo": fw.repo,
        "hub_revision": fw.revision,
        "dataset": name,
        "tokenizer": tokenizer_remote,
        "train_shards": fw.train_shards,
        "val_shards": files_val,
        "verified": fetch.verified,
    }
    return PublishedData(val=val, train=train, tokenizer=tokenizer, description=description)


def fetch_docs(cfg: DataConfig, hub: Hub) -> tuple[Path, dict[str, Any]]:
    """``docs_selected.jsonl``, verified against the sha256 its source manifest publishes."""
    fw = cfg.sources.fineweb
    fetch = _Fetcher(cfg, hub)
    sidecar_remote = f"{REMOTE_ROOT}/{DOCS_SOURCE_MANIFEST}"
    docs_remote = f"{REMOTE_ROOT}/{DOCS_FILE}"
    fetch.expect([sidecar_remote, docs_remote])
    sidecar = _read_json(fetch(sidecar_remote), f"{fw.repo}:{sidecar_remote}")
    expected = sidecar.get("docs_sha256")
    if not isinstance(expected, str) or len(expected) != 64:
        raise DataError(f"{fw.repo}:{sidecar_remote}: no valid docs_sha256")
    docs = fetch(docs_remote)
    actual = file_sha256(docs)
    if actual != expected.lower():
        raise DataError(f"{docs}: sha256 {actual} does not match docs_sha256 {expected} "
                        f"published in {sidecar_remote}")
    description = {
        "kind": "fineweb",
        "hub_mode": "docs",
        "hub_repo": fw.repo,
        "hub_revision": fw.revision,
        "docs": docs_remote,
        "docs_sha256": actual,
        "verified": fetch.verified,
    }
    return docs, description


class _Fetcher:
    """Downloads at ``data.sources.fineweb.revision`` and checks each file against the digest the Hub publishes.

    `verified` maps every remote path that had a published digest to ``"<kind>:<hex>"``;
    a file the Hub publishes no digest for is used as is (the manifest still records its sha256).
    """

    def __init__(self, cfg: DataConfig, hub: Hub) -> None:
        self.repo, self.revision, self.hub = cfg.sources.fineweb.repo, cfg.sources.fineweb.revision, hub
        self.digests: dict[str, tuple[str, str]] = {}
        self.verified: dict[str, str] = {}

    def expect(self, filenames: list[str]) -> None:
        """Ask the Hub, in one request, for the digests of files about to be downloaded."""
        self.digests.update(self.hub.published(self.repo, filenames, self.revision))

    def __call__(self, filename: str) -> Path:
        path = _get(self.hub, self.repo, filename, self.revision)
        if filename in self.digests:
            kind, expected = self.digests[filename]
            actual = file_sha256(path) if kind == SHA256 else git_blob_sha1(path)
            if actual != expected.lower():
                raise DataError(f"{self.repo}:{filename}: {kind} {actual} does not match the {kind} {expected} "
                                f"the Hub publishes at revision {self.revision}")
            self.verified[filename] = f"{kind}:{actual}"
        return path


def link_or_copy(source: Path, destination: Path) -> None:
    """Hard-link `source` to `destination` (no second copy of 16 GB), else copy it."""
    source = source.resolve()  # Hub cache entries are symlinks into a blob store
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def _get(hub: Hub, repo_id: str, filename: str, revision: str) -> Path:
    try:
        path = Path(hub.download(repo_id, filename, revision))
    except OSError as exc:  # covers huggingface_hub's HTTP / not-found / offline errors
        raise DataError(f"{repo_id}:{filename}: download failed at revision {revision} ({first_line(exc)})") from None
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
