"""The validation split guard: the first ``val_docs`` documents, and none of them trained on.

The challenge defines its validation set as the first 50,000 documents of
``docs_selected.jsonl`` (``NUM_VAL_DOCS`` in its exporter) and trains on the
rest.  Two of its reported failures come from breaking that: a CaseOps
preparation script that took 10,000 validation documents, so documents
10,000-49,999 of the official validation set became training data, and a
validation split that was not the first documents.  `SplitGuard` watches the
documents as prepare encodes them (in corpus order, each tagged with the split
it goes to) and raises one `SplitError` naming the first document at fault:

- a document at position < ``val_docs`` that goes to training, or one at
  position >= ``val_docs`` that goes to validation;
- a training document whose content (sha256 of its UTF-8 text) equals a
  validation document's;
- with the challenge's corpus (``challenge_val_docs`` given), ``val_docs``
  other than the challenge's count.

It keeps one 32-byte digest per validation document (1.6 MB for 50,000).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import DataError

CHALLENGE_VAL_DOCS = 50_000  # NUM_VAL_DOCS of the challenge's data/download_hf_docs_and_tokenize.py


class SplitError(DataError):
    """The validation split is not the challenge's, or it overlaps the training data."""


def content_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


@dataclass
class SplitGuard:
    """Fed every document in corpus order; raises SplitError at the first one at fault."""

    val_docs: int
    challenge_val_docs: int | None = None
    _val_hashes: dict[bytes, int] = field(default_factory=dict)
    _position: int = 0
    _train: int = 0

    def __post_init__(self) -> None:
        if self.challenge_val_docs is not None and self.val_docs != self.challenge_val_docs:
            raise SplitError(f"data.val_docs={self.val_docs} but the challenge's validation split is its first "
                             f"{self.challenge_val_docs} documents: documents {min(self.val_docs, self.challenge_val_docs)}"
                             f"-{max(self.val_docs, self.challenge_val_docs) - 1} would land in the wrong split")

    def see(self, text: str, split: str) -> None:
        """Record document number `_position` going to `split` ("val" or "train")."""
        position = self._position
        expected = "val" if position < self.val_docs else "train"
        if split != expected:
            raise SplitError(f"document {position} goes to {split} but the validation split is documents "
                             f"0-{self.val_docs - 1} (data.val_docs={self.val_docs})")
        digest = content_hash(text)
        if split == "val":
            self._val_hashes.setdefault(digest, position)
        elif digest in self._val_hashes:
            raise SplitError(f"training document {position} has the same content (sha256 {digest.hex()[:16]}) "
                             f"as validation document {self._val_hashes[digest]}: validation and training "
                             "documents must be disjoint")
        else:
            self._train += 1
        self._position += 1

    def summary(self) -> dict[str, Any]:
        """For the manifest: what was checked."""
        return {"val_docs": self.val_docs, "train_docs": self._train, "disjoint_by_sha256": True,
                "distinct_val_contents": len(self._val_hashes)}
