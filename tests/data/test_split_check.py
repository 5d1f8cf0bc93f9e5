"""The split guard: validation is the first val_docs documents and shares no content with training."""

from __future__ import annotations

import pytest

from pipeline.data.prepare import prepare
from pipeline.data.split_check import CHALLENGE_VAL_DOCS, SplitError, SplitGuard
from tests.data.helpers import SMALL_VOCAB, data_config, pydoc_paragraphs, write_jsonl


def feed(guard: SplitGuard, docs: list[str]) -> None:
    for position, text in enumerate(docs):
        guard.see(text, "val" if position < guard.val_docs else "train")


def test_disjoint_first_documents_pass():
    guard = SplitGuard(3)
    feed(guard, ["a", "b", "c", "d", "e"])
    assert guard.summary() == {"val_docs": 3, "train_docs": 2, "disjoint_by_sha256": True,
                               "distinct_val_contents": 3}


def test_a_training_document_with_validation_content_is_one_clear_error():
    guard = SplitGuard(3)
    with pytest.raises(SplitError, match=r"^training document 4 has the same content \(sha256 [0-9a-f]{16}\) "
                                         r"as validation document 1: validation and training documents must be disjoint$"):
        feed(guard, ["a", "b", "c", "d", "b"])


def test_a_document_in_the_wrong_split_is_named():
    guard = SplitGuard(2)
    guard.see("a", "val")
    with pytest.raises(SplitError, match=r"document 1 goes to train but the validation split is documents 0-1"):
        guard.see("b", "train")


def test_the_challenges_corpus_needs_its_own_validation_count():
    SplitGuard(CHALLENGE_VAL_DOCS, CHALLENGE_VAL_DOCS)
    # the CaseOps prep script's default of 10,000 (the challenge's issue #2127)
    with pytest.raises(SplitError, match=r"data.val_docs=10000 but the challenge's validation split is its first "
                                         r"50000 documents: documents 10000-49999 would land in the wrong split"):
        SplitGuard(10_000, CHALLENGE_VAL_DOCS)


def test_prepare_refuses_overlap_and_records_the_check(tmp_path):
    paragraphs = pydoc_paragraphs(300)
    enc = {"check_split": True}
    cfg = data_config(source="files", files=[write_jsonl(tmp_path / "ok.jsonl", paragraphs)],
                      out_dir=str(tmp_path / "ok"), val_docs=20, max_docs=0, shard_tokens=50_000,
                      tokenizer={"vocab_size": SMALL_VOCAB})
    import dataclasses

    from pipeline.config import EncodingConfig

    cfg = dataclasses.replace(cfg, encoding=EncodingConfig(**enc))
    summary = prepare(cfg)
    assert summary.manifest["split_check"] == {"val_docs": 20, "train_docs": 280, "disjoint_by_sha256": True,
                                               "distinct_val_contents": 20}
    leaked = paragraphs + [paragraphs[7]]
    bad = data_config(source="files", files=[write_jsonl(tmp_path / "bad.jsonl", leaked)],
                      out_dir=str(tmp_path / "bad"), val_docs=20, max_docs=0, shard_tokens=50_000,
                      tokenizer={"vocab_size": SMALL_VOCAB})
    bad = dataclasses.replace(bad, encoding=EncodingConfig(**enc))
    with pytest.raises(SplitError, match="training document 300 has the same content .* as validation document 7"):
        prepare(bad)
    assert not (tmp_path / "bad").exists()
