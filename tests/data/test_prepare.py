"""The prepare stage as a library call: counts, split, fingerprints, reproducibility, atomicity."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from pipeline.data.embedded import iter_embedded_documents
from pipeline.data.layout import DataLayout
from pipeline.data.manifest import file_sha256
from pipeline.data.prepare import prepare
from pipeline.data.shards import read_shard
from pipeline.errors import DataError
from tests.conftest import EMBEDDED_SHARD_TOKENS, embedded_config
from tests.data.helpers import SMALL_VOCAB, data_config, pydoc_paragraphs, small_tokenizer, write_jsonl


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_counts_match_the_manifest(embedded_data):
    layout, cfg = embedded_data.layout, embedded_data.cfg
    manifest = json.loads(layout.manifest.read_text())
    assert sorted(p.name for p in layout.root.iterdir()) == [".pgolf-output", "manifest.json", "shards",
                                                            "tokenizer.model"]
    sp = spm.SentencePieceProcessor(model_file=str(layout.tokenizer))
    assert manifest["splits"]["val"]["documents"] == cfg.val_docs
    assert manifest["splits"]["train"]["documents"] == cfg.max_docs - cfg.val_docs
    for split, files in (("val", layout.val_files()), ("train", layout.train_files())):
        record = manifest["splits"][split]
        assert [s["file"] for s in record["shards"]] == [f"shards/{f.name}" for f in files]
        assert len(files) >= 2  # several shards per split
        tokens = [read_shard(f) for f in files]
        assert all(t.size == EMBEDDED_SHARD_TOKENS for t in tokens[:-1])
        assert record["tokens"] == sum(t.size for t in tokens)
        assert record["documents"] == sum(int((t == sp.bos_id()).sum()) for t in tokens)
        for shard, f in zip(record["shards"], files):
            assert shard["sha256"] == file_sha256(f)
    assert manifest["tokenizer"]["sha256"] == file_sha256(layout.tokenizer)
    assert manifest["tokenizer"]["origin"] == "trained"
    assert manifest["tokenizer"]["train_docs"] == cfg.max_docs  # from document 0 (train_from: all)
    assert manifest["tokenizer"]["settings"]["normalization_rule_name"] == "nmt_nfkc"
    assert manifest["sentencepiece_version"] == spm.__version__
    assert manifest["source"]["kind"] == "embedded"
    docs = list(itertools.islice(iter_embedded_documents(), cfg.max_docs))  # raw, as encoded
    expected_sha = hashlib.sha256(b"".join(len(d.encode()).to_bytes(8, "little") + d.encode()
                                           for d in docs)).hexdigest()
    assert manifest["corpus"] == {"documents": cfg.max_docs, "bytes": sum(len(d.encode()) for d in docs),
                                  "sha256": expected_sha}


def test_first_val_docs_are_validation_in_file_order(embedded_data):
    layout, cfg = embedded_data.layout, embedded_data.cfg
    sp = spm.SentencePieceProcessor(model_file=str(layout.tokenizer))
    docs = list(itertools.islice(iter_embedded_documents(), cfg.max_docs))  # raw documents
    for split, expected_docs in (("val", docs[: cfg.val_docs]), ("train", docs[cfg.val_docs :])):
        files = layout.val_files() if split == "val" else layout.train_files()
        stream = np.concatenate([read_shard(f) for f in files])
        starts = np.flatnonzero(stream == sp.bos_id())
        pieces = np.split(stream, starts[1:])
        assert len(pieces) == len(expected_docs)
        for piece, doc in zip(pieces, expected_docs):
            assert piece[0] == sp.bos_id()
            assert piece[1:].tolist() == sp.encode(doc)


def test_rerun_is_byte_identical(embedded_data, tmp_path):
    again = embedded_config(tmp_path / "elsewhere" / "data")
    prepare(again)
    assert tree_digest(Path(again.out_dir)) == tree_digest(embedded_data.layout.root)


def test_files_source_with_reused_tokenizer(tmp_path):
    model = small_tokenizer(tmp_path / "tok" / "sp.model")
    paragraphs = pydoc_paragraphs(120)
    write_jsonl(tmp_path / "corpus" / "a.jsonl", paragraphs[:70])
    (tmp_path / "corpus" / "b.txt").write_text("\n\n".join(paragraphs[70:]) + "\n")
    cfg = data_config(source="files", files=[tmp_path / "corpus" / "*.jsonl", tmp_path / "corpus" / "b.txt"],
                      out_dir=str(tmp_path / "out"), val_docs=10, max_docs=0, shard_tokens=5_000,
                      tokenizer={"vocab_size": SMALL_VOCAB, "model_path": str(model)})
    summary = prepare(cfg)
    layout = DataLayout(tmp_path / "out")
    assert layout.tokenizer.read_bytes() == model.read_bytes()
    assert summary.manifest["tokenizer"]["origin"] == "reused"
    assert summary.split("val")["documents"] == 10 and summary.split("train")["documents"] == 110
    assert summary.manifest["source"]["files"][-1].endswith("b.txt")


def test_max_docs_caps_the_corpus_and_train_docs_caps_tokenizer_text(tmp_path):
    write_jsonl(tmp_path / "c.jsonl", ["", "  "] + pydoc_paragraphs(900))  # empty documents count
    cfg = data_config(source="files", files=[tmp_path / "c.jsonl"], out_dir=str(tmp_path / "out"), val_docs=5,
                      max_docs=850, shard_tokens=100_000,
                      tokenizer={"vocab_size": SMALL_VOCAB, "train_docs": 700})
    summary = prepare(cfg)
    assert summary.split("val")["documents"] + summary.split("train")["documents"] == 850
    # train_docs counts raw documents from document 0; the two empty ones give no training text.
    assert summary.manifest["tokenizer"]["train_docs"] == 698
    assert len(summary.split("train")["shards"]) == 1


def test_failure_keeps_previous_output_and_leaves_no_temp_dir(tmp_path):
    out = tmp_path / "data"
    model = small_tokenizer(tmp_path / "sp.model")
    write_jsonl(tmp_path / "c.jsonl", pydoc_paragraphs(900))
    good = data_config(source="files", files=[tmp_path / "c.jsonl"], out_dir=str(out), val_docs=5,
                       shard_tokens=10_000, tokenizer={"vocab_size": SMALL_VOCAB, "model_path": str(model)})
    prepare(good)
    before = tree_digest(out)
    with open(tmp_path / "c.jsonl", "a") as f:  # a bad last line: met after several shards were written
        f.write("{oops\n")
    with pytest.raises(DataError, match=r"c.jsonl, line 901: not valid JSON"):
        prepare(good)
    assert tree_digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "data", "sp.model"]
