"""Documents -> token ids (SPEC §1: each document becomes ``[bos] + ids``, no eos).

Encoding streams: documents are taken in batches, each batch is encoded by
SentencePiece on every core (its batch encoder runs in C++ threads and
releases the GIL) while the next batch is being read and cleaned, and only
two batches are ever in flight.  Memory stays bounded for any corpus size.

A document longer than `PIECE_CHARS` (one line of a .jsonl can be a whole
book) is encoded in pieces of about that size, cut at a single space that
follows an ASCII letter or digit: SentencePiece used on a 32 MB string at
once took ~45 bytes of memory per character.  The cut does not change the
ids: with a vocabulary whose pieces carry the word boundary "▁" only at
their start (what SPEC §1's training gives), no piece spans a space, so the
text before the cut encodes on its own, and the text after it is encoded
behind the letter before the cut, whose ids are then dropped.  A tokenizer
with any other kind of piece gets the whole document at once.
"""

from __future__ import annotations

import itertools
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import sentencepiece as spm

DEFAULT_BATCH_DOCS = 1024
PIECE_CHARS = 1 << 18  # longer documents are encoded piece by piece
WORD_BOUNDARY = "\u2581"  # SentencePiece's "▁": a space in the text


@dataclass(frozen=True)
class EncodedBatch:
    """Consecutive documents, encoded and concatenated (int64, range not yet checked)."""

    documents: int
    tokens: np.ndarray


def available_cpus() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def encode_documents(
    texts: Iterable[str],
    processor: spm.SentencePieceProcessor,
    *,
    batch_docs: int = DEFAULT_BATCH_DOCS,
    num_threads: int | None = None,
    piece_chars: int = PIECE_CHARS,
) -> Iterator[EncodedBatch]:
    """Encode `texts` in order, yielding one `EncodedBatch` per `batch_docs` documents.

    A document longer than `piece_chars` comes as several batches: the first
    counts the document (and holds its BOS), the rest count none.
    """
    threads = num_threads or available_cpus()
    bos = int(processor.bos_id())
    splittable = _cuts_are_exact(processor)
    in_flight: deque[tuple[int, Future[list[list[int]]]]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
        for batch, long_doc in _batched(texts, batch_docs, piece_chars if splittable else None):
            if batch:
                future = pool.submit(processor.encode, batch, out_type=int, num_threads=threads)
                in_flight.append((len(batch), future))
            if long_doc is not None:
                while in_flight:
                    yield _with_bos(*in_flight.popleft(), bos)
                yield from _encode_in_pieces(long_doc, processor, bos, piece_chars)
            elif len(in_flight) > 1:
                yield _with_bos(*in_flight.popleft(), bos)
        while in_flight:
            yield _with_bos(*in_flight.popleft(), bos)


def _cuts_are_exact(processor: spm.SentencePieceProcessor) -> bool:
    """True when no piece holds "▁" after its first character, so no piece spans a space."""
    return all(processor.id_to_piece(i).find(WORD_BOUNDARY, 1) < 0 for i in range(processor.vocab_size()))


def _encode_in_pieces(text: str, processor: spm.SentencePieceProcessor, bos: int,
                      piece_chars: int) -> Iterator[EncodedBatch]:
    """One long document as consecutive batches, each from about `piece_chars` characters."""
    start, first = 0, True
    while start < len(text):
        stop = _cut(text, start + piece_chars)
        if start == 0:
            ids = processor.encode(text[:stop], out_type=int)
        else:  # text[start] is the space; encode it behind the letter before it, then drop that letter
            lead = processor.encode(text[start - 1], out_type=int)
            ids = processor.encode(text[start - 1 : stop], out_type=int)
            if ids[: len(lead)] != lead:
                raise RuntimeError(f"encoding in pieces lost the letter before character {start}")
            ids = ids[len(lead):]
        tokens = np.asarray(([bos] if first else []) + ids, dtype=np.int64)
        yield EncodedBatch(documents=1 if first else 0, tokens=tokens)
        start, first = stop, False


def _cut(text: str, at: int) -> int:
    """The first index >= `at` of a single space after an ASCII letter or digit and before a
    non-space; len(text) when there is none."""
    index = at
    while True:
        index = text.find(" ", index)
        if index < 0:
            return len(text)
        if 0 < index < len(text) - 1 and _is_ascii_alnum(text[index - 1]) and not text[index + 1].isspace():
            return index
        index += 1


def _is_ascii_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _with_bos(count: int, future: Future[list[list[int]]], bos: int) -> EncodedBatch:
    encoded = future.result()
    total = sum(len(ids) for ids in encoded) + len(encoded)
    flat = np.fromiter(
        itertools.chain.from_iterable(itertools.chain((bos,), ids) for ids in encoded), dtype=np.int64, count=total
    )
    return EncodedBatch(documents=count, tokens=flat)


def _batched(texts: Iterable[str], size: int, long_chars: int | None) -> Iterator[tuple[list[str], str | None]]:
    """(up to `size` documents, None), or (the documents before it, a document over `long_chars`)."""
    batch: list[str] = []
    for text in texts:
        if long_chars is not None and len(text) > long_chars:
            yield batch, text
            batch = []
            continue
        batch.append(text)
        if len(batch) == size:
            yield batch, None
            batch = []
    if batch:
        yield batch, None
