"""The fineweb source with the Hub replaced by a local copier: ready shards and raw documents."""

from __future__ import annotations

import json
import os

import pytest

from pipeline.data.layout import DataLayout
from pipeline.data.prepare import prepare
from pipeline.data.shards import read_shard
from pipeline.errors import DataError
from tests.data.helpers import SMALL_VOCAB, build_fake_hub, copier, data_config, pydoc_paragraphs, small_tokenizer

REPO = "someone/parameter-golf"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    model = small_tokenizer(root / "trained" / "sp.model")
    return build_fake_hub(root / "repo", model, val_shards=2, train_shards=3, docs=pydoc_paragraphs(700))


def fineweb_config(tmp_path, **overrides):
    base = dict(source="fineweb", hub_repo=REPO, out_dir=str(tmp_path / "data"), train_shards=2,
                tokenizer={"vocab_size": SMALL_VOCAB})
    base.update(overrides)
    return data_config(**base)


def test_published_shards_are_validated_and_linked(hub, tmp_path):
    calls: list[str] = []
    summary = prepare(fineweb_config(tmp_path, hub_mode="shards"), download=copier(hub, calls))
    name = f"fineweb10B_sp{SMALL_VOCAB}"
    assert calls == [
        f"{REPO}:datasets/manifest.json",
        f"{REPO}:datasets/datasets/{name}/fineweb_val_000000.bin",
        f"{REPO}:datasets/datasets/{name}/fineweb_val_000001.bin",
        f"{REPO}:datasets/datasets/{name}/fineweb_train_000000.bin",
        f"{REPO}:datasets/datasets/{name}/fineweb_train_000001.bin",
        f"{REPO}:datasets/tokenizers/fineweb_{SMALL_VOCAB}_bpe.model",
    ]
    layout = DataLayout(tmp_path / "data")
    assert [p.name for p in layout.val_files()] == ["fineweb_val_000000.bin", "fineweb_val_000001.bin"]
    assert [p.name for p in layout.train_files()] == ["fineweb_train_000000.bin", "fineweb_train_000001.bin"]
    published = hub / "datasets" / "datasets" / name / "fineweb_train_000001.bin"
    assert os.path.samefile(published, layout.train_files()[1])  # hard link, no second copy
    assert read_shard(layout.train_files()[1]).tolist() == read_shard(published).tolist()
    manifest = json.loads(layout.manifest.read_text())
    assert manifest["tokenizer"]["origin"] == "published"
    assert manifest["source"] == {"kind": "fineweb", "hub_mode": "shards", "hub_repo": REPO, "dataset": name,
                                  "tokenizer": f"datasets/tokenizers/fineweb_{SMALL_VOCAB}_bpe.model",
                                  "train_shards": 2, "val_shards": 2}
    assert summary.split("val")["documents"] == 20  # 10 paragraphs per fake shard


def test_more_train_shards_than_published_is_rejected(hub, tmp_path):
    with pytest.raises(DataError, match="data.train_shards=5 but someone/parameter-golf publishes only 3"):
        prepare(fineweb_config(tmp_path, hub_mode="shards", train_shards=5), download=copier(hub))
    assert not (tmp_path / "data").exists()


def test_corrupt_published_shard_is_rejected(hub, tmp_path):
    broken = tmp_path / "broken"
    build_fake_hub(broken, hub / "datasets" / "tokenizers" / f"fineweb_{SMALL_VOCAB}_bpe.model", train_shards=2)
    shard = broken / "datasets" / "datasets" / f"fineweb10B_sp{SMALL_VOCAB}" / "fineweb_train_000001.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(DataError, match=r"fineweb_train_000001.bin: truncated"):
        prepare(fineweb_config(tmp_path, hub_mode="shards"), download=copier(broken))
    assert not (tmp_path / "data").exists()


def test_missing_hub_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"someone/parameter-golf:datasets/manifest.json: download failed"):
        prepare(fineweb_config(tmp_path, hub_mode="shards"), download=copier(tmp_path / "nothing"))


def test_docs_mode_verifies_and_tokenises_here(hub, tmp_path):
    summary = prepare(fineweb_config(tmp_path, hub_mode="docs", val_docs=50, shard_tokens=20_000),
                      download=copier(hub))
    manifest = summary.manifest
    assert manifest["source"]["hub_mode"] == "docs"
    sidecar = json.loads((hub / "datasets" / "docs_selected.source_manifest.json").read_text())
    assert manifest["source"]["docs_sha256"] == sidecar["docs_sha256"]
    assert manifest["tokenizer"]["origin"] == "trained"
    assert summary.split("val")["documents"] == 50 and summary.split("train")["documents"] == 650
    assert manifest["corpus"]["documents"] == 700


def test_docs_sha_mismatch_is_rejected(hub, tmp_path):
    tampered = tmp_path / "tampered"
    build_fake_hub(tampered, hub / "datasets" / "tokenizers" / f"fineweb_{SMALL_VOCAB}_bpe.model",
                   docs=pydoc_paragraphs(100))
    with open(tampered / "datasets" / "docs_selected.jsonl", "a") as f:
        f.write('{"text": "an extra document"}\n')
    with pytest.raises(DataError, match=r"docs_selected.jsonl: sha256 [0-9a-f]{64} does not match docs_sha256"):
        prepare(fineweb_config(tmp_path, hub_mode="docs", val_docs=5), download=copier(tampered))
    assert not (tmp_path / "data").exists()
