"""Local corpus files, globbing, cleaning and the corpus fingerprint."""

from __future__ import annotations

import hashlib

import pytest

from pipeline.data.sources import CorpusHash, FilesSource, clean_documents, read_jsonl, read_paragraphs, resolve_files
from pipeline.errors import DataError
from tests.data.helpers import write_jsonl


def test_jsonl_yields_text_fields_and_skips_blank_lines(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "one", "id": 1}\n\n{"text": "two\\nlines"}\n   \n{"text": ""}\n')
    assert list(read_jsonl(path)) == ["one", "two\nlines", ""]


@pytest.mark.parametrize(
    "line, message",
    [('{"text": "ok"', "line 2: not valid JSON"), ('{"body": "x"}', 'line 2: expected an object with a string "text"'),
     ('["text"]', "line 2: expected an object"), ('{"text": 5}', "line 2: expected an object"),
     ('{"text": "\\ud800"}', "line 2: text holds an unpaired UTF-16 surrogate")],
)
def test_malformed_jsonl_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(DataError) as err:
        list(read_jsonl(path))
    assert str(path) in str(err.value) and message in str(err.value)


def test_non_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"fine\n\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"latin.txt, line 3: not UTF-8"):
        list(read_paragraphs(path))


def test_txt_documents_are_blank_line_separated_blocks(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("\n\nFirst para\nstill first.\n\n\n  \nSecond.\nEnd")
    assert list(read_paragraphs(path)) == ["First para\nstill first.\n", "Second.\nEnd"]


def test_files_resolve_in_order_with_sorted_globs(tmp_path):
    for name in ["b.jsonl", "a.jsonl", "c.txt"]:
        (tmp_path / name).write_text('{"text": "x"}\n')
    files = resolve_files([str(tmp_path / "c.txt"), str(tmp_path / "*.jsonl"), str(tmp_path / "a.jsonl")])
    assert [f.name for f in files] == ["c.txt", "a.jsonl", "b.jsonl"]


@pytest.mark.parametrize(
    "pattern, message",
    [("missing.jsonl", "missing.jsonl not found"), ("*.parquet", "matches no file"), ("doc.md", "unsupported")],
)
def test_bad_file_patterns(tmp_path, monkeypatch, pattern, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "doc.md").write_text("x")
    with pytest.raises(DataError, match=message):
        resolve_files([pattern])


def test_files_source_reads_all_files_in_order(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", ["alpha", "beta"])
    (tmp_path / "b.txt").write_text("gamma\n\ndelta\n")
    source = FilesSource(resolve_files([str(tmp_path / "a.jsonl"), str(tmp_path / "b.txt")]))
    assert list(source.documents()) == ["alpha", "beta", "gamma\n", "delta\n"]
    assert list(source.documents()) == ["alpha", "beta", "gamma\n", "delta\n"]  # re-readable
    assert source.describe()["kind"] == "files"


def test_cleaning_follows_spec():
    raw = ["  a\x00b  ", "", " \n\t ", "\x00", "keep\nnewlines"]
    assert list(clean_documents(raw)) == ["a b", "keep\nnewlines"]


def test_corpus_hash_covers_exactly_the_documents_used():
    corpus = CorpusHash()
    assert list(corpus.watch(["ab", "", "c\x00"])) == ["ab", "", "c\x00"]
    framed = b"\x02" + bytes(7) + b"ab" + bytes(8) + b"\x02" + bytes(7) + b"c\x00"
    assert corpus.hexdigest() == hashlib.sha256(framed).hexdigest()
    assert (corpus.documents, corpus.bytes) == (3, 4)
    # Length framing: moving a NUL across a document boundary changes the hash.
    other = CorpusHash()
    list(other.watch(["ab\x00", "c"]))
    assert other.hexdigest() != corpus.hexdigest()
