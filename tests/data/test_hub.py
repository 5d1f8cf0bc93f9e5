"""The fineweb source with the Hub replaced by a local copier: ready shards and raw documents."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pipeline.data.layout import DataLayout
from pipeline.data.prepare import prepare
from pipeline.data.shards import read_shard
from pipeline.errors import DataError
from tests.data.helpers import (SMALL_VOCAB, build_fake_hub, copier, data_config, publish_digests, pydoc_paragraphs,
                                small_tokenizer)

REPO = "someone/parameter-golf"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    model = small_tokenizer(root / "trained" / "sp.model")
    return build_fake_hub(root / "repo", model, val_shards=2, train_shards=3, docs=pydoc_paragraphs(700))


def fineweb_config(tmp_path, **overrides):
    """The data group for the fake Hub; `overrides` of the fineweb section or (val_docs, shard_tokens) of data."""
    data = {key: overrides.pop(key) for key in ("val_docs", "shard_tokens") if key in overrides}
    return data_config(source="fineweb", fineweb={"repo": REPO, "train_shards": 2, **overrides},
                       out_dir=str(tmp_path / "data"), tokenizer={"vocab_size": SMALL_VOCAB}, **data)


def test_published_shards_are_validated_and_linked(hub, tmp_path):
    calls: list[str] = []
    summary = prepare(fineweb_config(tmp_path, mode="shards"), hub=copier(hub, calls))
    name = f"fineweb10B_sp{SMALL_VOCAB}"
    assert calls == [
        f"{REPO}@main:datasets/manifest.json",
        f"{REPO}@main:datasets/datasets/{name}/fineweb_val_000000.bin",
        f"{REPO}@main:datasets/datasets/{name}/fineweb_val_000001.bin",
        f"{REPO}@main:datasets/datasets/{name}/fineweb_train_000000.bin",
        f"{REPO}@main:datasets/datasets/{name}/fineweb_train_000001.bin",
        f"{REPO}@main:datasets/tokenizers/fineweb_{SMALL_VOCAB}_bpe.model",
    ]
    layout = DataLayout(tmp_path / "data")
    assert [p.name for p in layout.val_files()] == ["fineweb_val_000000.bin", "fineweb_val_000001.bin"]
    assert [p.name for p in layout.train_files()] == ["fineweb_train_000000.bin", "fineweb_train_000001.bin"]
    published = hub / "datasets" / "datasets" / name / "fineweb_train_000001.bin"
    assert os.path.samefile(published, layout.train_files()[1])  # hard link, no second copy
    assert read_shard(layout.train_files()[1]).tolist() == read_shard(published).tolist()
    manifest = json.loads(layout.manifest.read_text())
    assert manifest["tokenizer"]["origin"] == "published"
    published = json.loads((hub / "published.json").read_text())
    fetched = [c.split(":", 1)[1] for c in calls]
    assert manifest["source"] == {"kind": "fineweb", "hub_mode": "shards", "hub_repo": REPO, "hub_revision": "main",
                                  "dataset": name, "tokenizer": f"datasets/tokenizers/fineweb_{SMALL_VOCAB}_bpe.model",
                                  "train_shards": 2, "val_shards": 2,
                                  "verified": {f: ":".join(published[f]) for f in fetched}}
    # every local file's sha256 is in the manifest, and equals the sha256 the Hub publishes for it
    by_name = {Path(r["file"]).name: r["sha256"] for s in ("val", "train") for r in manifest["splits"][s]["shards"]}
    for remote in fetched[1:-1]:
        assert published[remote] == ["sha256", by_name[Path(remote).name]]
    assert published[fetched[-1]] == ["sha256", manifest["tokenizer"]["sha256"]]
    assert published[fetched[0]][0] == "git-sha1"  # manifest.json is a small (non-LFS) file
    assert summary.split("val")["documents"] == 20  # 10 paragraphs per fake shard


def test_more_train_shards_than_published_is_rejected(hub, tmp_path):
    with pytest.raises(DataError,
                       match="data.sources.fineweb.train_shards=5 but someone/parameter-golf publishes only 3"):
        prepare(fineweb_config(tmp_path, mode="shards", train_shards=5), hub=copier(hub))
    assert not (tmp_path / "data").exists()


def test_corrupt_published_shard_is_rejected(hub, tmp_path):
    broken = tmp_path / "broken"
    build_fake_hub(broken, hub / "datasets" / "tokenizers" / f"fineweb_{SMALL_VOCAB}_bpe.model", train_shards=2)
    shard = broken / "datasets" / "datasets" / f"fineweb10B_sp{SMALL_VOCAB}" / "fineweb_train_000001.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    publish_digests(broken)  # published truncated: the digest agrees, the header check does not
    with pytest.raises(DataError, match=r"fineweb_train_000001.bin: truncated"):
        prepare(fineweb_config(tmp_path, mode="shards"), hub=copier(broken))
    assert not (tmp_path / "data").exists()


def test_missing_hub_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match=r"someone/parameter-golf:datasets/manifest.json: download failed"):
        prepare(fineweb_config(tmp_path, mode="shards"), hub=copier(tmp_path / "nothing"))


def test_docs_mode_verifies_and_tokenises_here(hub, tmp_path):
    summary = prepare(fineweb_config(tmp_path, mode="docs", val_docs=50, shard_tokens=20_000),
                      hub=copier(hub))
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
    publish_digests(tampered)  # the Hub serves the changed file; only the sidecar's docs_sha256 disagrees
    with pytest.raises(DataError, match=r"docs_selected.jsonl: sha256 [0-9a-f]{64} does not match docs_sha256"):
        prepare(fineweb_config(tmp_path, mode="docs", val_docs=5), hub=copier(tampered))
    assert not (tmp_path / "data").exists()


def test_revision_is_passed_to_every_download_and_recorded(hub, tmp_path):
    calls: list[str] = []
    tag = "0123456789abcdef0123456789abcdef01234567"
    summary = prepare(fineweb_config(tmp_path, mode="docs", revision=tag, val_docs=50, shard_tokens=20_000),
                      hub=copier(hub, calls))
    assert calls == [f"{REPO}@{tag}:datasets/docs_selected.source_manifest.json",
                     f"{REPO}@{tag}:datasets/docs_selected.jsonl"]
    assert summary.manifest["source"]["hub_revision"] == tag
    assert sorted(summary.manifest["source"]["verified"]) == ["datasets/docs_selected.jsonl",
                                                              "datasets/docs_selected.source_manifest.json"]


@pytest.mark.parametrize("victim", ["tokenizers/fineweb_384_bpe.model", "manifest.json"])
def test_a_file_that_differs_from_its_published_digest_is_refused(hub, tmp_path, victim):
    tampered = tmp_path / "tampered"
    build_fake_hub(tampered, hub / "datasets" / "tokenizers" / f"fineweb_{SMALL_VOCAB}_bpe.model", train_shards=2)
    path = tampered / "datasets" / victim
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01 if victim.endswith(".model") else 0
    path.write_bytes(bytes(data) + (b"" if victim.endswith(".model") else b" "))
    kind = "sha256" if victim.endswith(".model") else "git-sha1"
    published = json.loads((tampered / "published.json").read_text())[f"datasets/{victim}"][1]
    with pytest.raises(DataError) as info:
        prepare(fineweb_config(tmp_path, mode="shards"), hub=copier(tampered))
    from pipeline.data.hub import git_blob_sha1
    from pipeline.data.manifest import file_sha256
    actual = file_sha256(path) if kind == "sha256" else git_blob_sha1(path)
    assert str(info.value) == (f"{REPO}:datasets/{victim}: {kind} {actual} does not match the {kind} {published} "
                               "the Hub publishes at revision main")
    assert not (tmp_path / "data").exists()


def test_git_blob_id_matches_git(tmp_path):
    sample = tmp_path / "f.json"
    sample.write_bytes(b'{"a": 1}\n')
    from pipeline.data.hub import git_blob_sha1
    try:
        expected = subprocess.run(["git", "hash-object", str(sample)], capture_output=True, text=True,
                                  check=True).stdout.strip()
    except FileNotFoundError:
        pytest.skip("git not installed")
    assert git_blob_sha1(sample) == expected
