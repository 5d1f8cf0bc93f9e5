"""The tokenizer: SPEC settings, lossless up to normalisation, reproducible, checked on load."""

from __future__ import annotations

import itertools

import pytest
import sentencepiece as spm

from pipeline.data.embedded import iter_embedded_documents
from pipeline.data.sources import clean_documents
from pipeline.data.tokenizer import load_tokenizer, train_tokenizer
from pipeline.errors import DataError
from tests.data.helpers import SMALL_VOCAB, data_config, pydoc_paragraphs


def test_embedded_tokenizer_has_spec_settings(embedded_data):
    sp = load_tokenizer(embedded_data.layout.tokenizer, 1024, "model.vocab_size")
    assert sp.vocab_size() == 1024
    assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2, 3)
    assert sp.id_to_piece(4) == "<0x00>" and sp.is_byte(4)  # byte fallback pieces
    assert sp.encode("2024") == [sp.piece_to_id(c) for c in "2024"]  # split_digits
    assert not sp.id_to_piece(sp.encode("Hello")[0]).startswith("\u2581")  # add_dummy_prefix off


def test_decode_encode_equals_spm_normalisation_of_every_val_doc(embedded_data):
    """nmt_nfkc folds whitespace runs into one space, so round trips equal the normaliser's output."""
    sp = load_tokenizer(embedded_data.layout.tokenizer, 1024)
    val_docs = list(itertools.islice(clean_documents(iter_embedded_documents()), embedded_data.cfg.val_docs))
    assert len(val_docs) == embedded_data.cfg.val_docs
    changed = 0
    for doc in val_docs:
        decoded = sp.decode(sp.encode(doc))
        assert decoded == sp.normalize(doc).replace("\u2581", " ")
        changed += decoded != doc
    assert changed > 0  # the comparison is not vacuous: raw text differs from its normal form


def test_training_is_byte_reproducible():
    cfg = data_config(tokenizer={"vocab_size": SMALL_VOCAB}).tokenizer
    texts = pydoc_paragraphs(800)
    first, second = train_tokenizer(texts, cfg), train_tokenizer(iter(texts), cfg)
    assert first == second
    assert spm.SentencePieceProcessor(model_proto=first).vocab_size() == SMALL_VOCAB


def test_error_inside_the_training_text_surfaces_as_itself():
    cfg = data_config(tokenizer={"vocab_size": SMALL_VOCAB}).tokenizer

    def texts():
        yield from pydoc_paragraphs(50)
        raise DataError("corpus.jsonl, line 51: not valid JSON")

    with pytest.raises(DataError, match="line 51"):
        train_tokenizer(texts(), cfg)


def test_vocab_mismatch_names_both_sides(embedded_data):
    with pytest.raises(DataError) as err:
        load_tokenizer(embedded_data.layout.tokenizer, 2048, "model.vocab_size")
    assert str(err.value) == (f"tokenizer {embedded_data.layout.tokenizer} has vocab 1024 "
                              "but model.vocab_size is 2048")


def test_missing_or_corrupt_model(tmp_path):
    with pytest.raises(DataError, match="tokenizer not found"):
        load_tokenizer(tmp_path / "none.model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"definitely not a protobuf" * 10)
    with pytest.raises(DataError, match="junk.model: not a SentencePiece model"):
        load_tokenizer(junk)
