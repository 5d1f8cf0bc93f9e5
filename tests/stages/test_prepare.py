"""`pgolf prepare` end to end: a good run, and every bad input as one line, exit 1, no output."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
from typer.testing import CliRunner

from pipeline.data.shards import write_shard
from stages.cli import app
from tests.data.helpers import (
    SMALL_VOCAB,
    data_config,
    encoded_shard,
    pydoc_paragraphs,
    small_tokenizer,
    write_jsonl,
    write_params,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Path:
    return small_tokenizer(tmp_path_factory.mktemp("tok") / "sp.model")


def run_prepare(tmp_path: Path, **data_overrides):
    overrides = dict(out_dir=str(tmp_path / "data"), val_docs=5, shard_tokens=10_000)
    overrides.update(data_overrides)
    overrides.setdefault("tokenizer", {"vocab_size": SMALL_VOCAB})
    params = write_params(tmp_path / "params.yaml", data_config(**overrides))
    return runner.invoke(app, ["prepare", "--params", str(params)])


def assert_user_error(result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pgolf: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(tmp_path: Path) -> list[str]:
    """Anything the stage may have left next to out_dir (temporary build directories)."""
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".data"))


def test_help_describes_the_stage():
    result = runner.invoke(app, ["prepare", "--help"])
    assert result.exit_code == 0
    for word in ("tokenizer.model", "embedded", "fineweb", "--params"):
        assert word in result.output


def test_good_run_prints_a_summary(tmp_path, tokenizer):
    write_jsonl(tmp_path / "c.jsonl", pydoc_paragraphs(300))
    result = run_prepare(tmp_path, source="files", files=[tmp_path / "c.jsonl"],
                         tokenizer={"vocab_size": SMALL_VOCAB, "model_path": str(tokenizer)})
    assert result.exit_code == 0, result.output
    assert "val" in result.stdout and "295 documents" in result.stdout.replace(",", "")
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["documents"] == 295


def test_bad_run_keeps_the_previous_output(tmp_path, tokenizer):
    write_jsonl(tmp_path / "c.jsonl", pydoc_paragraphs(300))
    ok = run_prepare(tmp_path, source="files", files=[tmp_path / "c.jsonl"],
                     tokenizer={"vocab_size": SMALL_VOCAB, "model_path": str(tokenizer)})
    assert ok.exit_code == 0
    before = tree_digest(tmp_path / "data")
    with open(tmp_path / "c.jsonl", "a") as f:
        f.write('{"text": "unterminated\n')
    result = run_prepare(tmp_path, source="files", files=[tmp_path / "c.jsonl"],
                         tokenizer={"vocab_size": SMALL_VOCAB, "model_path": str(tokenizer)})
    assert_user_error(result, "c.jsonl, line 301: not valid JSON")
    assert tree_digest(tmp_path / "data") == before
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- text sources


def test_malformed_jsonl_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"text": "one"}\n{"text": "two"}\n{"txt": "three"}\n')
    result = run_prepare(tmp_path, source="files", files=[path])
    assert_user_error(result, f"{path}, line 3")
    assert not (tmp_path / "data").exists() and leftovers(tmp_path) == []


def test_empty_corpus(tmp_path):
    path = write_jsonl(tmp_path / "empty.jsonl", [])
    result = run_prepare(tmp_path, source="files", files=[path])
    assert_user_error(result, "corpus is empty", "empty.jsonl")
    assert not (tmp_path / "data").exists() and leftovers(tmp_path) == []


def test_corpus_without_text_for_the_tokenizer(tmp_path):
    # Three documents (the exporter would encode three lone BOS tokens), but
    # nothing is left of them to train a tokenizer once cleaned.
    path = write_jsonl(tmp_path / "blank.jsonl", ["", "   ", "\x00"])
    result = run_prepare(tmp_path, source="files", files=[path], val_docs=1)
    assert_user_error(result, "has no document with text to train the tokenizer on", "blank.jsonl")
    assert not (tmp_path / "data").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("reuse", [False, True], ids=["train-tokenizer", "reuse-tokenizer"])
def test_fewer_documents_than_val_docs_plus_one(tmp_path, tokenizer, reuse):
    path = write_jsonl(tmp_path / "few.jsonl", ["a", "b", "c"])
    tok = {"vocab_size": SMALL_VOCAB, "model_path": str(tokenizer) if reuse else ""}
    result = run_prepare(tmp_path, source="files", files=[path], val_docs=3, tokenizer=tok)
    assert_user_error(result, "has 3 documents but data.val_docs=3 needs at least 4")
    assert not (tmp_path / "data").exists() and leftovers(tmp_path) == []


def test_missing_corpus_file(tmp_path):
    result = run_prepare(tmp_path, source="files", files=[tmp_path / "nope.jsonl"])
    assert_user_error(result, "nope.jsonl not found")
    assert not (tmp_path / "data").exists()


def test_too_little_text_for_the_vocab(tmp_path):
    path = write_jsonl(tmp_path / "small.jsonl", ["validation text"] * 5 + ["a short training text", "and another"])
    result = run_prepare(tmp_path, source="files", files=[path], tokenizer={"vocab_size": 1024})
    # The tokenizer learns from document 0 on (data.tokenizer.train_from: all): 7 documents.
    assert_user_error(result, "tokenizer trained on 7 documents has vocab", "data.tokenizer.vocab_size is 1024")
    assert not (tmp_path / "data").exists() and leftovers(tmp_path) == []


def test_reused_tokenizer_with_other_vocab(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "c.jsonl", pydoc_paragraphs(30))
    result = run_prepare(tmp_path, source="files", files=[path],
                         tokenizer={"vocab_size": 512, "model_path": str(tokenizer)})
    assert_user_error(result, f"tokenizer {tokenizer} has vocab {SMALL_VOCAB} but data.tokenizer.vocab_size is 512")
    assert not (tmp_path / "data").exists()


# --------------------------------------------------------------------------- ready shards


def shards_dir(tmp_path: Path, tokenizer: Path) -> Path:
    directory = tmp_path / "published"
    directory.mkdir()
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    paragraphs = pydoc_paragraphs(40)
    encoded_shard(directory / "fineweb_val_000000.bin", sp, paragraphs[:10])
    encoded_shard(directory / "fineweb_train_000000.bin", sp, paragraphs[10:25])
    encoded_shard(directory / "fineweb_train_000001.bin", sp, paragraphs[25:])
    (directory / "fineweb_1024_bpe.model").write_bytes(tokenizer.read_bytes())
    return directory


def test_shards_dir_is_used_as_is(tmp_path, tokenizer):
    directory = shards_dir(tmp_path, tokenizer)
    result = run_prepare(tmp_path, source="shards", shards=directory)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert [manifest["splits"][s]["documents"] for s in ("val", "train")] == [10, 30]
    assert (tmp_path / "data" / "shards" / "fineweb_train_000001.bin").read_bytes() == \
        (directory / "fineweb_train_000001.bin").read_bytes()


@pytest.mark.parametrize(
    "damage, fragments",
    [
        (lambda d: (d / "fineweb_train_000001.bin").write_bytes((d / "fineweb_train_000001.bin").read_bytes()[:-6]),
         ["fineweb_train_000001.bin: truncated"]),
        (lambda d: (d / "fineweb_val_000000.bin").write_bytes(
            struct.pack("<i", 7) + (d / "fineweb_val_000000.bin").read_bytes()[4:]),
         ["fineweb_val_000000.bin: not a token shard: magic 7"]),
        (lambda d: [p.unlink() for p in d.glob("fineweb_train_*.bin")], ["no fineweb_train_NNNNNN.bin shards"]),
        (lambda d: write_shard(d / "fineweb_train_000002.bin", np.array([1, 5, 65535])),
         ["fineweb_train_000002.bin: holds token id 65535", f"vocab of {SMALL_VOCAB}"]),
        (lambda d: (d / "fineweb_1024_bpe.model").unlink(), ["expected exactly one tokenizer .model (found none)"]),
    ],
    ids=["truncated", "wrong-magic", "missing-train", "id-outside-vocab", "no-tokenizer"],
)
def test_bad_shards(tmp_path, tokenizer, damage, fragments):
    directory = shards_dir(tmp_path, tokenizer)
    damage(directory)
    result = run_prepare(tmp_path, source="shards", shards=directory)
    assert_user_error(result, *fragments)
    assert not (tmp_path / "data").exists() and leftovers(tmp_path) == []


def test_shards_tokenizer_vocab_differs(tmp_path, tokenizer):
    directory = shards_dir(tmp_path, tokenizer)
    result = run_prepare(tmp_path, source="shards", shards=directory, tokenizer={"vocab_size": 1024})
    assert_user_error(result, "fineweb_1024_bpe.model has vocab 384 but data.tokenizer.vocab_size is 1024")
    assert not (tmp_path / "data").exists()
