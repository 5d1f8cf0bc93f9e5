"""Documents -> token ids (SPEC §1: each document becomes ``[bos] + ids``, no eos).

Encoding streams: documents are taken in batches, each batch is encoded by
SentencePiece on every core (its batch encoder runs in C++ threads and
releases the GIL) while the next batch is being read and cleaned, and only
two batches are ever in flight.  Memory stays bounded for any corpus size.
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
) -> Iterator[EncodedBatch]:
    """Encode `texts` in order, yielding one `EncodedBatch` per `batch_docs` documents."""
    threads = num_threads or available_cpus()
    bos = int(processor.bos_id())
    in_flight: deque[tuple[int, Future[list[list[int]]]]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
        for batch in _batched(texts, batch_docs):
            future = pool.submit(processor.encode, batch, out_type=int, num_threads=threads)
            in_flight.append((len(batch), future))
            if len(in_flight) > 1:
                yield _with_bos(*in_flight.popleft(), bos)
        while in_flight:
            yield _with_bos(*in_flight.popleft(), bos)


def _with_bos(count: int, future: Future[list[list[int]]], bos: int) -> EncodedBatch:
    encoded = future.result()
    total = sum(len(ids) for ids in encoded) + len(encoded)
    flat = np.fromiter(
        itertools.chain.from_iterable(itertools.chain((bos,), ids) for ids in encoded), dtype=np.int64, count=total
    )
    return EncodedBatch(documents=count, tokens=flat)


def _batched(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
