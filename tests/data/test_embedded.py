"""The embedded corpus: real English, big enough, fixed order, read without importing."""

from __future__ import annotations

import sys

from pipeline.data.embedded import iter_embedded_documents


def test_embedded_corpus_is_large_ordered_prose():
    before = set(sys.modules)
    docs = list(iter_embedded_documents())
    imported = set(sys.modules) - before
    # docstrings come from the sources, not from importing the modules
    assert not imported & {"tkinter", "turtle", "idlelib", "antigravity", "this"}

    total_bytes = sum(len(d.encode("utf-8")) for d in docs)
    assert total_bytes >= 1_000_000
    assert len(docs) > 1_000

    from pydoc_data.topics import topics

    names = sorted(topics)
    assert docs[: len(names)] == [topics[n] for n in names]  # pydoc topics first, by name
    english = sum(d.count(" the ") for d in docs)
    assert english > 5_000
