"""The per-token byte sidecar: each validation token's share of the original UTF-8 bytes.

Bits per byte needs the length of the *original* text each target stands for.
The tokenizer's lookup tables (`pipeline.evaluate.bytes`) give it for plain
SentencePiece text up to its normaliser; after a text transform (CaseOps) the
tokens no longer decode to the original at all.  So prepare can write, beside
each validation shard ``fineweb_val_NNNNNN.bin``, a parallel file
``fineweb_val_bytes_NNNNNN.bin``: the same 256-int32 header (magic, version,
count) and one little-endian uint16 per token, a document's BOS counting 0.
This is the layout of the CaseOps record's ``prepare_caseops_data.py``;
evaluation uses the sidecar whenever it exists.

Counts come from the tokens' surface strings (SentencePiece's immutable
proto), which tile the input text exactly: a byte-fallback piece, a "▁" that
is no piece of its own, whitespace the normaliser rewrote, all are charged
the original bytes they cover, so a document's counts sum to its UTF-8 length.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sentencepiece as spm

from pipeline.data import caseops
from pipeline.data.shards import HEADER_BYTES, MAGIC, VERSION
from pipeline.data.sidecar_files import SIDECAR_DTYPE, sidecar_name
from pipeline.errors import DataError

WORD_BOUNDARY = "\u2581"
_MAX_COUNT = int(np.iinfo(SIDECAR_DTYPE).max)


def encode_with_bytes(
    processor: spm.SentencePieceProcessor, text: str, transform: str, whitespace: str = "record"
) -> tuple[list[int], list[int], int]:
    """Token ids of `text` (after `transform`), the original UTF-8 bytes of its BOS and each
    token, and the bytes left uncounted.

    SentencePiece drops leading and trailing whitespace: no surface covers it.
    ``whitespace="record"`` leaves it uncounted, as the CaseOps record's
    ``prepare_caseops_data.py`` does; ``"original"`` charges it to the first and
    last token (to the BOS if the document has no token), so a document's
    counts add up to its UTF-8 length.  Either way counts + uncounted must
    equal that length (prepare checks it for every validation document).
    """
    encoded = caseops.encode(text) if transform == "caseops" else text
    pieces = processor.encode(encoded, return_type="proto").pieces
    ids = [int(piece.id) for piece in pieces]
    surfaces = [piece.surface for piece in pieces]
    if transform == "caseops":
        counts = caseops.original_byte_counts(surfaces)
    else:
        counts = [len(surface.encode("utf-8")) for surface in surfaces]
    counts = [0] + counts  # the document's BOS
    lead, trail = stripped_whitespace(encoded, pieces)
    if whitespace == "original":
        counts[min(1, len(counts) - 1)] += lead
        counts[-1] += trail
        return ids, counts, 0
    return ids, counts, lead + trail


def stripped_whitespace(encoded: str, pieces) -> tuple[int, int]:
    """UTF-8 bytes before the first piece and after the last one (all of them if there is none)."""
    size = len(encoded.encode("utf-8"))
    if not pieces:
        return size, 0
    return int(pieces[0].begin), size - int(pieces[-1].end)


def document_bytes(text: str) -> int:
    """A document's UTF-8 length (what its counts add up to with whitespace="original")."""
    return len(text.encode("utf-8"))


def lut_counts_spaces(processor: spm.SentencePieceProcessor) -> bool:
    """True when the tokenizer has "▁" as a normal piece of its own.

    Without one, a space that no merged piece absorbs (before "(" or a digit)
    is encoded as the byte tokens of "▁" (E2 96 81), which the lookup tables
    count as 3 bytes instead of 1: bpb comes out too low.  Such a tokenizer
    needs the sidecar (the challenge's issue #897).
    """
    piece_id = processor.piece_to_id(WORD_BOUNDARY)
    return processor.id_to_piece(piece_id) == WORD_BOUNDARY and not (
        processor.is_unknown(piece_id) or processor.is_control(piece_id) or processor.is_unused(piece_id))


class SidecarWriter:
    """Writes counts into sidecar files cut at the same token counts as the shards."""

    def __init__(self, directory: Path, shard_tokens: int) -> None:
        self._directory = Path(directory)
        self._shard_tokens = shard_tokens
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._paths: list[Path] = []

    def write(self, counts: list[int] | np.ndarray) -> None:
        arr = np.asarray(counts, dtype=np.int64)
        if arr.size and int(arr.max()) > _MAX_COUNT:
            raise DataError(f"a token stands for {int(arr.max())} bytes, more than a uint16 sidecar holds")
        arr = arr.astype(SIDECAR_DTYPE)
        while arr.size:
            take = min(arr.size, self._shard_tokens - self._buffered)
            self._buffer.append(arr[:take])
            self._buffered += take
            arr = arr[take:]
            if self._buffered == self._shard_tokens:
                self._flush()

    def close(self) -> list[Path]:
        if self._buffered:
            self._flush()
        return list(self._paths)

    def _flush(self) -> None:
        data = np.concatenate(self._buffer)
        header = np.zeros(HEADER_BYTES // 4, dtype="<i4")
        header[0], header[1], header[2] = MAGIC, VERSION, data.size
        path = self._directory / sidecar_name(len(self._paths))
        with open(path, "wb") as f:
            f.write(header.tobytes())
            f.write(data.tobytes())
        self._paths.append(path)
        self._buffer, self._buffered = [], 0
