"""Byte accounting for any vocabulary: each validation document's counted bytes equal its UTF-8 length.

Tokenizers of the exporter's sp1024, sp4096 and sp8192 specs are trained on
the first 2,500 documents of the embedded corpus (1.06 M characters: enough
for all three to reach their full vocabulary); the validation documents are
the first 300 of them plus awkward ones (whitespace the normaliser strips or
collapses, NFKC ligatures, byte-fallback CJK and emoji, NUL, a literal "▁").
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import sentencepiece as spm
import torch
from sentencepiece import sentencepiece_model_pb2 as model_pb2

from pipeline.data.byte_sidecar import encode_with_bytes, lut_counts_spaces
from pipeline.data.embedded import iter_embedded_documents
from pipeline.data.sources import clean_documents
from pipeline.data.tokenizer import train_tokenizer
from pipeline.data.tokenizer_specs import resolve_spec
from pipeline.evaluate.bytes import build_byte_luts, stream_bytes
from tests.data.helpers import data_config

AWKWARD = (
    "",
    "   \n\t ",
    "  leading  double   spaces and trailing  ",
    "\ufb01ne ligature, caf\u00e9, \u00a0no-break space",
    "\u65e5\u672c\u8a9e and emoji \U0001f600\U0001f44d\U0001f3fd",
    "a\x00b \x00",
    "a literal \u2581 boundary mark",
    "x ( 1 2 ) [3]",
)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return list(itertools.islice(iter_embedded_documents(), 2500))


@pytest.fixture(scope="module", params=["sp1024", "sp4096", "sp8192"])
def processor(request, corpus) -> spm.SentencePieceProcessor:
    spec = resolve_spec(request.param)
    cfg = dataclasses.replace(data_config().tokenizer, vocab_size=spec.vocab_size)
    sp = spm.SentencePieceProcessor(model_proto=train_tokenizer(clean_documents(corpus), cfg))
    assert sp.vocab_size() == spec.vocab_size
    return sp


def validation_documents(corpus: list[str]) -> list[str]:
    return corpus[:300] + list(AWKWARD)


def test_sidecar_counts_equal_each_documents_utf8_length(processor, corpus):
    for text in validation_documents(corpus):
        ids, counts, uncounted = encode_with_bytes(processor, text, "identity", "original")
        assert len(counts) == len(ids) + 1 and counts[0] == 0 or not ids
        assert uncounted == 0
        assert sum(counts) == len(text.encode("utf-8")), text[:60]
        _, record_counts, stripped = encode_with_bytes(processor, text, "identity", "record")
        assert sum(record_counts) + stripped == len(text.encode("utf-8"))


def test_lut_agrees_with_the_sidecar_on_text_the_normaliser_keeps(processor, corpus):
    """The challenge's lookup tables count exactly the bytes of the normalised text."""
    luts = build_byte_luts(processor)
    checked = 0
    for text in validation_documents(corpus):
        if processor.normalize(text) != text.replace(" ", "\u2581"):
            continue  # NFKC, collapsed or stripped whitespace: the tables count the normalised text
        ids, counts, _ = encode_with_bytes(processor, text, "identity", "record")
        assert stream_bytes(torch.tensor([processor.bos_id()] + ids), luts) == sum(counts)
        checked += 1
    assert checked > 100
    assert lut_counts_spaces(processor)


def test_without_a_standalone_space_piece_only_the_sidecar_is_exact(corpus):
    cfg = dataclasses.replace(data_config().tokenizer, vocab_size=1024)
    proto = model_pb2.ModelProto()
    proto.ParseFromString(train_tokenizer(clean_documents(corpus[:800]), cfg))
    for piece in proto.pieces:
        if piece.piece == "\u2581":
            piece.type = model_pb2.ModelProto.SentencePiece.UNUSED
    sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    assert not lut_counts_spaces(sp)
    text = "x ( 1 2 ) [3]"
    ids, counts, _ = encode_with_bytes(sp, text, "identity", "original")
    assert sum(counts) == len(text) == 13
    lut_total = stream_bytes(torch.tensor([sp.bos_id()] + ids), build_byte_luts(sp))
    assert lut_total > 13  # each unabsorbed space becomes <0xE2><0x96><0x81>: 3 bytes, not 1
