"""Where documents come from, and what counts as one.

A `TextSource` yields raw document texts in a fixed order and can be read
more than once (the tokenizer is trained on one pass, the shards are written
on another).  Every document a source yields is one document of the corpus,
raw (the exporter's rule).  `clean_documents` applies SPEC §1's cleaning (NUL
becomes a space, surrounding whitespace is stripped, empty documents are
dropped) to the tokenizer's training text only, and `CorpusHash` fingerprints
exactly the documents that were split and encoded.

The openers of the ``embedded`` and ``files`` sources (`open_embedded`,
`open_files`) live here; `pipeline.data.source_registry` maps each
``data.source`` name to its opener.

Local files (``data.source: files``, ``data.sources.files.paths``):

- ``.jsonl``: one ``{"text": ...}`` object per line (blank lines are skipped);
  any other line is an error naming the file and line number.
- ``.txt``: one document per paragraph block, blocks being separated by blank
  lines.  Paragraphs keep memory bounded for a file of any size and give a
  single text file enough documents to split into validation and training.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pipeline.config import DataConfig
from pipeline.data.embedded import describe_embedded, iter_embedded_documents
from pipeline.errors import DataError

FILE_SUFFIXES = (".jsonl", ".txt")


class TextSource(Protocol):
    """A re-readable, ordered stream of raw documents."""

    def documents(self) -> Iterator[str]: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ReadyShards:
    """What a source of ready shards opens to: linked in as they are, with their tokenizer."""

    val: tuple[Path, ...]
    train: tuple[Path, ...]
    tokenizer: Path
    tokenizer_label: str  # how errors about the tokenizer name it
    description: dict[str, Any]  # the manifest's "source" record


class EmbeddedSource:
    """The interpreter's bundled documentation (see `pipeline.data.embedded`)."""

    def documents(self) -> Iterator[str]:
        return iter_embedded_documents()

    def describe(self) -> dict[str, Any]:
        return describe_embedded()


@dataclass(frozen=True)
class FilesSource:
    """Local ``.jsonl`` / ``.txt`` files, read in the order given."""

    paths: tuple[Path, ...]
    # What the manifest says about the source; by default the file list.
    description: dict[str, Any] | None = None

    def documents(self) -> Iterator[str]:
        for path in self.paths:
            if path.suffix == ".jsonl":
                yield from read_jsonl(path)
            else:
                yield from read_paragraphs(path)

    def describe(self) -> dict[str, Any]:
        if self.description is not None:
            return dict(self.description)
        return {"kind": "files", "files": [p.as_posix() for p in self.paths]}


FILES_KEY = "data.sources.files.paths"


def open_embedded(cfg: DataConfig, hub: object) -> EmbeddedSource:
    return EmbeddedSource()


def open_files(cfg: DataConfig, hub: object) -> FilesSource:
    return FilesSource(resolve_files(cfg.sources.files.paths))


def files_inputs(cfg: DataConfig) -> list[tuple[Path, str]]:
    return [(path, FILES_KEY) for path in resolve_files(cfg.sources.files.paths)]


def resolve_files(patterns: Iterable[str], key: str = FILES_KEY) -> tuple[Path, ...]:
    """Expand paths and globs in order (each glob sorted); duplicates keep their first place."""
    found: list[Path] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(Path(m) for m in glob.glob(pattern, recursive=True) if Path(m).is_file())
            if not matches:
                raise DataError(f"{key}: {pattern!r} matches no file")
        else:
            path = Path(pattern)
            if not path.is_file():
                raise DataError(f"{key}: {pattern} not found")
            matches = [path]
        for path in matches:
            if path.suffix not in FILE_SUFFIXES:
                raise DataError(f"{path}: unsupported corpus file type {path.suffix!r} (use .jsonl or .txt)")
            if path not in found:
                found.append(path)
    return tuple(found)


def read_jsonl(path: Path) -> Iterator[str]:
    """The "text" field of every line of a JSON-lines file."""
    with _numbered_lines(path) as lines:
        for lineno, line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise DataError(f'{path}, line {lineno}: expected an object with a string "text" field')
            text = record["text"]
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise DataError(f"{path}, line {lineno}: text holds an unpaired UTF-16 surrogate") from None
            yield text


def read_paragraphs(path: Path) -> Iterator[str]:
    """Blank-line-separated blocks of a text file, one document each."""
    block: list[str] = []
    with _numbered_lines(path) as lines:
        for _lineno, line in lines:
            if line.strip():
                block.append(line)
            elif block:
                yield "".join(block)
                block = []
    if block:
        yield "".join(block)


@contextlib.contextmanager
def _numbered_lines(path: Path) -> Iterator[Iterator[tuple[int, str]]]:
    """Numbered lines of a UTF-8 file, decoded one by one so an error names its line.

    Lines are split on ``\n`` only and keep their ending (``\r\n`` keeps its
    ``\r``: whitespace that cleaning and the tokenizer's normaliser drop).
    """
    try:
        file = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None

    def numbered() -> Iterator[tuple[int, str]]:
        for lineno, raw in enumerate(file, start=1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}, line {lineno}: not UTF-8 ({exc.reason})") from None

    with file:
        yield numbered()


def clean_documents(texts: Iterable[str]) -> Iterator[str]:
    """SPEC §1 cleaning: NUL -> space, strip, skip documents left empty."""
    for text in texts:
        text = text.replace("\x00", " ").strip()
        if text:
            yield text


class CorpusHash:
    """sha256 of the raw documents actually used, computed while they stream past.

    Each document is hashed as its UTF-8 byte length (8 bytes, little endian)
    followed by its bytes: unambiguous for any text, NUL and empty documents
    included.  It fingerprints the corpus the same way for every source,
    including a ``max_docs`` prefix.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self.documents = 0
        self.bytes = 0

    def watch(self, texts: Iterable[str]) -> Iterator[str]:
        for text in texts:
            data = text.encode("utf-8")
            self._sha.update(len(data).to_bytes(8, "little"))
            self._sha.update(data)
            self.documents += 1
            self.bytes += len(data)
            yield text

    def hexdigest(self) -> str:
        return self._sha.hexdigest()
