"""Encoding: [bos] + ids per document, in order, whatever the batching."""

from __future__ import annotations

import numpy as np
import sentencepiece as spm

from pipeline.data.encode import encode_documents
from tests.data.helpers import pydoc_paragraphs, small_tokenizer


def test_batches_concatenate_bos_and_ids_in_order(tmp_path):
    sp = spm.SentencePieceProcessor(model_file=str(small_tokenizer(tmp_path / "t.model")))
    texts = pydoc_paragraphs(300)
    expected = [t for text in texts for t in [sp.bos_id(), *sp.encode(text)]]
    for batch_docs, threads in ((7, 1), (64, 2), (1000, 2)):
        batches = list(encode_documents(texts, sp, batch_docs=batch_docs, num_threads=threads))
        assert sum(b.documents for b in batches) == len(texts)
        flat = np.concatenate([b.tokens for b in batches])
        assert flat.tolist() == expected
        assert int((flat == sp.bos_id()).sum()) == len(texts)  # no eos, one bos per document


def test_empty_input_yields_nothing(tmp_path):
    sp = spm.SentencePieceProcessor(model_file=str(small_tokenizer(tmp_path / "t.model")))
    assert list(encode_documents([], sp)) == []
