"""The shard format: round trips, a hand-built shard, and every header error."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline.data.shards import (
    HEADER_BYTES,
    MAGIC,
    ShardWriter,
    read_header,
    read_shard,
    shard_name,
    shard_paths,
    write_shard,
)
from pipeline.errors import DataError


def hand_built(path: Path, tokens: list[int], *, magic: int = MAGIC, version: int = 1,
               count: int | None = None) -> Path:
    """A shard assembled with struct, independent of write_shard."""
    header = struct.pack("<256i", magic, version, len(tokens) if count is None else count, *([0] * 253))
    path.write_bytes(header + struct.pack(f"<{len(tokens)}H", *tokens))
    return path


def test_write_read_round_trip(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 65536, size=10_000, dtype=np.int64)
    path = tmp_path / "fineweb_train_000000.bin"
    write_shard(path, tokens)
    back = read_shard(path)
    assert back.dtype == np.uint16 and isinstance(back, np.memmap)
    np.testing.assert_array_equal(back, tokens)
    assert path.stat().st_size == HEADER_BYTES + 2 * tokens.size


def test_hand_built_shard_reads_back_identically(tmp_path):
    tokens = [1, 0, 65535, 1023, 7, 1, 300]
    path = hand_built(tmp_path / "s.bin", tokens)
    assert read_header(path) == len(tokens)
    assert read_shard(path).tolist() == tokens
    # and write_shard produces exactly those bytes
    write_shard(tmp_path / "w.bin", tokens)
    assert (tmp_path / "w.bin").read_bytes() == path.read_bytes()


def test_empty_shard_is_valid(tmp_path):
    path = hand_built(tmp_path / "e.bin", [])
    assert read_shard(path).size == 0


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: hand_built(p, [1, 2, 3], magic=12345), "magic 12345, expected 20240520"),
        (lambda p: hand_built(p, [1, 2, 3], version=2), "unsupported shard version 2"),
        (lambda p: hand_built(p, [1, 2, 3], count=4), "truncated: header says 4 tokens"),
        (lambda p: hand_built(p, [1, 2, 3], count=2), "has trailing bytes: header says 2 tokens"),
        (lambda p: p.write_bytes(b"\x00" * 100), "shorter than the 1024-byte header"),
        (lambda p: None, "shard not found"),
    ],
    ids=["magic", "version", "truncated", "trailing", "short-header", "missing"],
)
def test_header_errors_name_the_file(tmp_path, make, message):
    path = tmp_path / "fineweb_val_000000.bin"
    make(path)
    with pytest.raises(DataError) as err:
        read_shard(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_truncated_download_is_rejected(tmp_path):
    path = tmp_path / "s.bin"
    write_shard(path, np.arange(1000))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_header(path)


@pytest.mark.parametrize("bad", [65536, 70_000, -1])
def test_token_ids_outside_uint16_are_rejected(tmp_path, bad):
    path = tmp_path / "s.bin"
    with pytest.raises(DataError, match=f"token id {bad} does not fit"):
        write_shard(path, [1, 2, bad])
    assert not path.exists()
    with ShardWriter(tmp_path, "train", 10) as writer, pytest.raises(DataError, match=f"token id {bad}"):
        writer.write(np.array([1, bad]))


def test_shard_writer_splits_the_stream(tmp_path):
    stream = np.arange(2_500, dtype=np.int64) % 1024
    with ShardWriter(tmp_path, "val", 1_000) as writer:
        for piece in np.array_split(stream, 7):  # pieces cross shard boundaries
            writer.write(piece)
        paths = writer.close()
    assert [p.name for p in paths] == [shard_name("val", i) for i in range(3)]
    assert [read_header(p) for p in paths] == [1_000, 1_000, 500]
    np.testing.assert_array_equal(np.concatenate([read_shard(p) for p in paths]), stream)


def test_shard_writer_exact_multiple_leaves_no_empty_shard(tmp_path):
    with ShardWriter(tmp_path, "train", 100) as writer:
        writer.write(np.ones(200, dtype=np.uint16))
        assert len(writer.close()) == 2


def test_shard_paths_sorted_and_filtered(tmp_path):
    for name in ["fineweb_train_000002.bin", "fineweb_train_000000.bin", "fineweb_val_000000.bin",
                 "fineweb_train_01.bin", "notes.txt", "fineweb_train_000001.bin.tmp"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in shard_paths(tmp_path, "train")] == ["fineweb_train_000000.bin", "fineweb_train_000002.bin"]
    assert [p.name for p in shard_paths(tmp_path, "val")] == ["fineweb_val_000000.bin"]
    assert shard_paths(tmp_path / "missing", "val") == []
    assert shard_name("train", 12) == "fineweb_train_000012.bin"
