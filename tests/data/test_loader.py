"""The train loader follows SPEC §1's rule exactly, wraps around, and resumes exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data.loader import DistributedTokenLoader, TokenStream, load_validation_tokens
from pipeline.data.shards import shard_name, write_shard
from pipeline.errors import DataError

VOCAB = 1024


@pytest.fixture()
def train_files(tmp_path):
    """Three shards of unequal length holding random ids; the stream is their concatenation."""
    rng = np.random.default_rng(7)
    files, parts = [], []
    for index, length in enumerate((5_003, 3_001, 4_099)):
        tokens = rng.integers(0, 1024, size=length)
        path = tmp_path / shard_name("train", index)
        write_shard(path, tokens)
        files.append(path)
        parts.append(tokens)
    return files, np.concatenate(parts)


def spec_batch(stream, step, global_tokens, seq_len, grad_accum, rank, world):
    """SPEC §1 computed directly on the (cyclic) concatenated stream."""
    local = global_tokens // (world * grad_accum)
    span = local + 1
    start = step * world * span
    chunk = np.take(stream, np.arange(start, start + world * span), mode="wrap")
    mine = chunk[rank * span : (rank + 1) * span].astype(np.int64)
    return mine[:-1].reshape(-1, seq_len), mine[1:].reshape(-1, seq_len)


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_batches_follow_the_spec_rule(train_files, world):
    files, stream = train_files
    seq_len, grad_accum = 16, 8 // world
    global_tokens = 8 * seq_len * 4  # 4 sequences per micro-step on every world size
    loaders = [DistributedTokenLoader(files, rank, world, VOCAB) for rank in range(world)]
    steps = 2 * stream.size // (global_tokens // grad_accum) + 3  # about two laps: wraps around
    for step in range(steps):
        for rank, loader in enumerate(loaders):
            x, y = loader.next_batch(global_tokens, seq_len, grad_accum)
            ex, ey = spec_batch(stream, step, global_tokens, seq_len, grad_accum, rank, world)
            assert x.dtype == torch.int64 and x.device.type == "cpu" and x.shape == (4, seq_len)
            np.testing.assert_array_equal(x.numpy(), ex)
            np.testing.assert_array_equal(y.numpy(), ey)


def test_state_dict_resumes_identically(train_files):
    files, _ = train_files
    loader = DistributedTokenLoader(files, 1, 2, VOCAB)
    for _ in range(37):
        loader.next_batch(512, 32, 4)
    state = loader.state_dict()
    expected = [loader.next_batch(512, 32, 4) for _ in range(40)]
    resumed = DistributedTokenLoader(files, 1, 2, VOCAB)
    resumed.load_state_dict(state)
    for (ex, ey), _ in zip(expected, range(40)):
        x, y = resumed.next_batch(512, 32, 4)
        assert torch.equal(x, ex) and torch.equal(y, ey)


def test_stream_wraps_across_shards(train_files):
    files, stream = train_files
    tokens = TokenStream(files, VOCAB)
    first = tokens.take(stream.size - 10)
    across = tokens.take(25)  # last 10 tokens of the last shard, then the first 15 again
    np.testing.assert_array_equal(first, stream[:-10])
    np.testing.assert_array_equal(across, np.concatenate([stream[-10:], stream[:15]]))
    assert tokens.state_dict()["file_index"] == 0 and tokens.state_dict()["position"] == 15


def test_resume_against_other_files_is_refused(train_files):
    files, _ = train_files
    state = TokenStream(files, VOCAB).state_dict()
    with pytest.raises(DataError, match="cannot resume"):
        TokenStream(files[:2], VOCAB).load_state_dict(state)


def test_bad_shard_fails_at_construction(train_files):
    files, _ = train_files
    files[2].write_bytes(files[2].read_bytes()[:500])
    with pytest.raises(DataError, match="fineweb_train_000002.bin"):
        DistributedTokenLoader(files, 0, 1, VOCAB)


def test_batch_shape_must_divide(train_files):
    files, _ = train_files
    loader = DistributedTokenLoader(files, 0, 2, VOCAB)
    with pytest.raises(ValueError, match="not divisible"):
        loader.next_batch(1000, 16, 3)
    with pytest.raises(ValueError, match="multiple of seq_len"):
        loader.next_batch(2 * 4 * 24, 16, 4)


def test_validation_tokens_are_every_val_token_in_order(tmp_path):
    parts = [np.arange(100) % 1024, np.arange(7) + 900]
    files = []
    for index, tokens in enumerate(parts):
        files.append(tmp_path / shard_name("val", index))
        write_shard(files[-1], tokens)
    val = load_validation_tokens(files, VOCAB)
    assert val.dtype == torch.int64
    assert val.tolist() == np.concatenate(parts).tolist()
    with pytest.raises(DataError):
        load_validation_tokens([], VOCAB)


def test_token_id_outside_the_vocab_names_the_shard_when_it_is_opened(train_files):
    files, _ = train_files
    tokens = np.zeros(2_000, dtype=np.int64)
    tokens[1_234] = VOCAB  # one id past the end of the embedding table
    write_shard(files[1], tokens)
    stream = TokenStream(files, VOCAB)  # shard 0 is fine; shard 1 is checked when the stream reaches it
    stream.take(5_003)
    with pytest.raises(DataError) as info:
        stream.take(1)
    assert str(info.value) == f"{files[1]}: holds token id {VOCAB}, not below model.vocab_size={VOCAB}"
    with pytest.raises(DataError, match="fineweb_train_000001.bin: holds token id 1024"):
        load_validation_tokens(files, VOCAB)
