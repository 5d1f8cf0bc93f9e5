"""CaseOps transform, its inverse and the byte sidecar, pinned to the 1.0611 record's scripts.

The sha256 figures come from scripts/parity/caseops_parity.py, which runs the
record's lossless_caps.py and prepare_caseops_data.py on the same inputs.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import sentencepiece as spm

from pipeline.data import caseops
from pipeline.data.byte_sidecar import encode_with_bytes
from tests.data.caseops_cases import TRICKY, parity_documents, train_caseops_tokenizer

T, A, C, E = caseops.TITLE, caseops.ALLCAPS, caseops.CAPNEXT, caseops.ESC

# scripts/parity/caseops_parity.py: the record's encode_lossless_caps_v2 on TRICKY (json list, sha256)
RECORD_ENCODED_SHA256 = "60070e5a0c70f56fd744e624bd578c68ab1c58354ee69c9be9ae57838a20822e"
# ... and its prepare_caseops_data.py on parity_documents(): val tokens and byte sidecar (uint16 LE, sha256)
RECORD_TOKENS_SHA256 = "bc86d4d3a555add6d291809cad918ab910bbf9b98ce0df3ddb5cbbaf9626cc16"
RECORD_SIDECAR_SHA256 = "61fecb75f869807df49e9599289c2598dede02ad9428cdabcc7b89262aa45502"
RECORD_VALUES, RECORD_SIDECAR_BYTES = 16245, 32290


def test_encoding_of_the_tricky_cases_is_the_records():
    encoded = [caseops.encode(text) for text in TRICKY]
    assert hashlib.sha256(json.dumps(encoded).encode("utf-8")).hexdigest() == RECORD_ENCODED_SHA256


@pytest.mark.parametrize("text", TRICKY)
def test_decode_inverts_encode(text):
    assert caseops.decode(caseops.encode(text)) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("The NASA launch", f"{T}the {A}nasa launch"),
    ("iPhone", f"i{C}phone"),
    ("McDonald", f"{T}mc{C}donald"),
    ("A", f"{T}a"),
    ("GPT4o", f"{A}gpt4o"),
    ("École", "École"),  # non-ASCII capitals pass through
    (f"x{T}y", f"x{E}{T}y"),
])
def test_each_rule(text, expected):
    assert caseops.encode(text) == expected


@pytest.mark.parametrize("bad", [f"{T}", f"{T} x", f"a{T}b", f"{C}{C}a", f"{E}", f"{A}{T}a", f"{T}{E}{T}"])
def test_malformed_text_is_refused(bad):
    with pytest.raises(caseops.CaseOpsError):
        caseops.decode(bad)
    with pytest.raises(caseops.CaseOpsError):
        caseops.original_byte_counts([bad])


def test_an_operator_and_its_letter_may_sit_in_different_tokens():
    assert caseops.original_byte_counts([T, "the", " ", A, "na", "sa"]) == [0, 3, 1, 0, 2, 2]
    assert caseops.original_byte_counts([E, T, "é"]) == [0, 3, 2]


@pytest.fixture(scope="module")
def caseops_processor() -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_proto=train_caseops_tokenizer())


def test_tokens_and_sidecar_equal_the_records_prepare_script(caseops_processor):
    sp = caseops_processor
    tokens, counts = [], []
    for text in parity_documents():
        ids, doc_counts, uncounted = encode_with_bytes(sp, text, "caseops", "record")
        assert sum(doc_counts) + uncounted == len(text.encode("utf-8"))
        tokens += [sp.bos_id()] + ids
        counts += doc_counts
    assert len(tokens) == len(counts) == RECORD_VALUES
    assert sum(counts) == RECORD_SIDECAR_BYTES
    assert hashlib.sha256(np.asarray(tokens, dtype="<u2").tobytes()).hexdigest() == RECORD_TOKENS_SHA256
    assert hashlib.sha256(np.asarray(counts, dtype="<u2").tobytes()).hexdigest() == RECORD_SIDECAR_SHA256


def test_original_whitespace_rule_counts_every_byte(caseops_processor):
    for text in parity_documents():
        _, counts, uncounted = encode_with_bytes(caseops_processor, text, "caseops", "original")
        assert uncounted == 0 and sum(counts) == len(text.encode("utf-8")), text


def test_operators_are_pieces_of_the_trained_tokenizer(caseops_processor):
    for op in caseops.OPERATORS:
        assert caseops_processor.piece_to_id(op) != caseops_processor.unk_id()
