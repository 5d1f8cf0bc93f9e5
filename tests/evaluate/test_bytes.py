"""Byte accounting on a real SentencePiece model: the LUT count equals the decoded text's UTF-8 length."""

from __future__ import annotations

import sentencepiece as spm
import torch

from pipeline.evaluate.bytes import build_byte_luts, stream_bytes, token_bytes

from .conftest import EXOTIC_DOCS, english_docs


def _stream(sp: spm.SentencePieceProcessor, docs: list[str]) -> torch.Tensor:
    ids: list[int] = []
    for doc in docs:
        ids += [sp.bos_id()] + sp.encode(doc)
    return torch.tensor(ids)


def test_luts_shape_and_special_tokens(sp_model):
    luts = build_byte_luts(sp_model, vocab_size=1024)
    assert len(luts) == 1024  # padded to the model's vocabulary
    for special in (0, 1, 2, 3):  # pad, bos, eos, unk
        assert bool(luts.is_boundary[special]) and int(luts.base_bytes[special]) == 0
    assert bool(luts.is_boundary[600]) and int(luts.base_bytes[600]) == 0
    byte_ids = [i for i in range(sp_model.vocab_size()) if sp_model.is_byte(i)]
    assert len(byte_ids) == 256 and all(int(luts.base_bytes[i]) == 1 for i in byte_ids)
    spaced = [i for i in range(sp_model.vocab_size()) if sp_model.id_to_piece(i).startswith("\u2581")]
    assert spaced and all(bool(luts.has_leading_space[i]) for i in spaced)


def test_byte_count_equals_decoded_utf8(sp_model, tmp_path):
    docs = english_docs() + EXOTIC_DOCS
    stream = _stream(sp_model, docs)
    decoded = [sp_model.decode(sp_model.encode(doc)) for doc in docs]
    # nmt_nfkc folds whitespace and compatibility forms: the text the tokens stand for is
    # the normalised one (SentencePiece's own normaliser agrees with decode(encode(doc))).
    assert [sp_model.normalize(d).replace("\u2581", " ") for d in docs] == decoded
    assert decoded[-2] == "Leading spaces, tabs and blank lines collapse."
    assert any(sp_model.is_byte(i) for i in stream.tolist())  # byte fallback exercised
    expected = sum(len(text.encode("utf-8")) for text in decoded)
    luts = build_byte_luts(sp_model, vocab_size=1024)
    assert stream_bytes(stream, luts) == expected
    # Same from a .model path.
    path = tmp_path / "copy.model"
    path.write_bytes(sp_model.serialized_model_proto())
    assert stream_bytes(stream, build_byte_luts(path)) == expected


def test_leading_space_after_boundary_not_counted(sp_model):
    luts = build_byte_luts(sp_model)
    the = sp_model.piece_to_id("\u2581the")
    assert the != sp_model.unk_id()
    prev = torch.tensor([1, sp_model.piece_to_id("e")])
    got = token_bytes(prev, torch.tensor([the, the]), luts).tolist()
    assert got == [3, 4]  # after BOS "▁the" is "the"; after a word it is " the"
