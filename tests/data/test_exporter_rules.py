"""prepare follows the challenge's exporter: raw documents are split and encoded, every one
counts (empty ones become a lone BOS, a NUL is its byte token), and only the tokenizer's
training text is cleaned.

The corpus and the settings are those of `scripts/parity/exporter_parity.py`, which runs
the exporter's own functions on them and prints the statistics pinned here (it also checks
that the exporter's tokenizer and shards are byte-identical to pgolf's).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from pipeline.data.layout import DataLayout
from pipeline.data.prepare import prepare
from pipeline.data.shards import read_shard
from tests.scripts import load_script

# export_shards' statistics for the parity corpus (scripts/parity/exporter_parity.py).
EXPORTER_STATS = {"docs_val": 12, "tokens_val": 661, "docs_train": 394, "tokens_train": 44572}


parity = load_script("scripts/parity/exporter_parity.py")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exporter_rules")
    docs = parity.parity_corpus()
    corpus = parity.write_corpus(tmp / "docs.jsonl", docs)
    cfg = parity.pgolf_config(corpus, tmp / "data")
    summary = prepare(cfg)
    layout = DataLayout(Path(cfg.out_dir))
    sp = spm.SentencePieceProcessor(model_file=str(layout.tokenizer))
    tokens = {split: np.concatenate([read_shard(f) for f in files])
              for split, files in (("val", layout.val_files()), ("train", layout.train_files()))}
    return docs, cfg, summary, sp, tokens


def _documents(tokens: np.ndarray, bos: int) -> list[list[int]]:
    """Split a stream at its BOS tokens: the ids of each document."""
    starts = np.flatnonzero(tokens == bos).tolist() + [len(tokens)]
    return [tokens[a + 1:b].tolist() for a, b in zip(starts[:-1], starts[1:])]


def test_split_and_token_counts_are_the_exporters(prepared):
    _docs, _cfg, summary, _sp, _tokens = prepared
    got = {"docs_val": summary.split("val")["documents"], "tokens_val": summary.split("val")["tokens"],
           "docs_train": summary.split("train")["documents"], "tokens_train": summary.split("train")["tokens"]}
    assert got == EXPORTER_STATS


def test_every_document_is_encoded_raw_in_file_order(prepared):
    docs, cfg, _summary, sp, tokens = prepared
    bos = sp.bos_id()
    encoded = _documents(tokens["val"], bos) + _documents(tokens["train"], bos)
    assert len(encoded) == len(docs)  # empty and whitespace-only documents count
    assert encoded == [sp.encode(text) for text in docs]
    awkward = parity.AWKWARD
    assert encoded[0] == [] and encoded[3] == [] and encoded[12] == []  # lone BOS tokens
    assert tokens["val"][:2].tolist() == [bos, bos]  # document 0 is empty
    assert [sp.id_to_piece(i) for i in encoded[5]] == ["a", "<0x00>", "b"]  # not "a b"
    assert [sp.id_to_piece(i) for i in encoded[11]] == ["<0x00>"]
    assert sp.piece_to_id("<0x00>") in encoded[20]
    # The split is by raw document: the NUL-only document closes the validation split.
    assert docs[cfg.val_docs - 1] == awkward[11] and _documents(tokens["val"], bos)[-1] == encoded[11]


def test_tokenizer_trains_on_cleaned_text_from_document_zero(prepared, tmp_path):
    docs, cfg, summary, _sp, _tokens = prepared
    non_empty = [d for d in docs if d.replace("\x00", " ").strip()]
    assert summary.manifest["tokenizer"]["train_docs"] == len(non_empty) == len(docs) - 4
    assert summary.manifest["tokenizer"]["train_from"] == "all"
    # train_from: train starts after the validation split (and still skips empty documents).
    train_only = dataclasses.replace(cfg, out_dir=str(tmp_path / "train_only"),
                                     tokenizer=dataclasses.replace(cfg.tokenizer, train_from="train"))
    other = prepare(train_only)
    training_docs = docs[cfg.val_docs:]
    assert other.manifest["tokenizer"]["train_docs"] == len([d for d in training_docs if d.strip()])
    assert other.manifest["tokenizer"]["sha256"] != summary.manifest["tokenizer"]["sha256"]
    # The split and the documents do not depend on where the tokenizer learnt.
    assert other.split("val")["documents"] == EXPORTER_STATS["docs_val"]
    assert other.split("train")["documents"] == EXPORTER_STATS["docs_train"]


def test_train_docs_counts_raw_documents_from_where_it_starts(prepared, tmp_path):
    # The exporter's --tokenizer-train-docs N reads the first N lines, empty ones included.
    docs, cfg, _summary, _sp, _tokens = prepared
    capped = dataclasses.replace(cfg, out_dir=str(tmp_path / "capped"),
                                 tokenizer=dataclasses.replace(cfg.tokenizer, train_docs=300))
    manifest = json.loads((Path(prepare(capped).out_dir) / "manifest.json").read_text())
    assert manifest["tokenizer"]["train_docs"] == len([d for d in docs[:300] if d.replace("\x00", " ").strip()])
