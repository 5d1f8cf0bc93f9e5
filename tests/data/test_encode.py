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


def test_a_long_document_encoded_in_pieces_gives_the_same_ids(tmp_path):
    """Cutting at spaces changes nothing: the whole pydoc text as one document (with newlines,
    digits, punctuation and non-ASCII text), cut every ~1000 characters, against one encode call."""
    sp = spm.SentencePieceProcessor(model_file=str(small_tokenizer(tmp_path / "t.model")))
    paragraphs = pydoc_paragraphs()
    long_doc = " ".join(paragraphs) + " caf\u00e9 na\u00efve 12345 \u2581x"
    texts = paragraphs[:3] + [long_doc] + paragraphs[3:6]
    whole = [t for text in texts for t in [sp.bos_id(), *sp.encode(text)]]
    batches = list(encode_documents(texts, sp, batch_docs=2, piece_chars=1000))
    assert len(batches) > len(long_doc) // 2000  # it really was cut, into hundreds of pieces
    assert sum(b.documents for b in batches) == len(texts)
    assert np.concatenate([b.tokens for b in batches]).tolist() == whole


def test_a_32x_longer_line_needs_no_more_peak_memory(tmp_path):
    """Peak RSS growth while encoding one 8 MB line, in a fresh process, stays near the memory of
    the text itself (before: ~45 bytes per character, 360 MB; a 32 MB line took 2 GB)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    model = small_tokenizer(tmp_path / "t.model")
    script = f"""
import resource, sys
import sentencepiece as spm
from pipeline.data.encode import encode_documents
sp = spm.SentencePieceProcessor(model_file={str(model)!r})
text = ("alpha beta gamma delta 12 " * 400_000)[: 8_000_000]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tokens = sum(batch.tokens.size for batch in encode_documents([text], sp, num_threads=1))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(tokens, (after - before) * 1024)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT,
                         timeout=120).stdout.split()
    tokens, growth = int(out[0]), int(out[1])
    assert tokens > 1_000_000
    assert growth < 64 * 2**20, f"peak RSS grew by {growth / 2**20:.0f} MB for an 8 MB line"
