"""The documents layout's loader (pipeline/data/documents.py) against the 1.0611 record's
DocumentPackingLoader: the batches' digest pinned from scripts/parity/document_parity.py
(two ranks, 24 micro-steps over three shards: shard switches, a dropped tail, wraps),
recomputed here with pgolf alone; plus resume and the errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.data.documents import DocumentLoader
from pipeline.data.loader import DistributedTokenLoader
from pipeline.data.shards import write_shard
from pipeline.errors import DataError
from tests.scripts import load_script

# Printed by scripts/parity/document_parity.py from the record's DocumentPackingLoader (it also
# checks pgolf's batches equal the record's one by one).
RECORD_LOADER_SHA256 = "bf1cf57762cce63ff2dc3f633ffd98d35db19b12b4b22b7f8204f12f5c3ffe1e"


parity = load_script("scripts/parity/document_parity.py")


@pytest.fixture
def shards(tmp_path) -> list[Path]:
    return parity.write_shards(tmp_path)


def test_batches_equal_the_records(shards):
    assert parity.batch_digest(parity.pgolf_batches(shards)) == RECORD_LOADER_SHA256


def test_segments_start_at_every_bos_and_every_seq_len(shards):
    loader = DocumentLoader(shards, 1, parity.WORLD, parity.VOCAB)
    for _ in range(6):
        x, y, seg = loader.next_batch(parity.GLOBAL_TOKENS, parity.SEQ_LEN, parity.GRAD_ACCUM)
        n = x.size(1)
        assert x.shape == y.shape == (1, 64) and torch.equal(x[0, 1:], y[0, :-1])
        cu = seg.cu_seqlens
        assert cu.dtype == torch.int32 and cu.numel() % 64 == 0 and seg.max_len == parity.SEQ_LEN
        bounds = list(seg.bounds)
        assert bounds[0] == 0 and bounds[-1] == n and (cu[len(bounds):] == n).all()
        bos = (x[0] == parity.BOS).nonzero().flatten().tolist()
        assert set(bos) <= set(bounds)
        for a, b in zip(bounds, bounds[1:]):
            assert 0 < b - a <= parity.SEQ_LEN  # a piece never spans a BOS (checked above) nor passes seq_len


def test_resume_continues_on_the_same_tokens(shards):
    args = (parity.GLOBAL_TOKENS, parity.SEQ_LEN, parity.GRAD_ACCUM)
    straight = DocumentLoader(shards, 0, parity.WORLD, parity.VOCAB)
    first = DocumentLoader(shards, 0, parity.WORLD, parity.VOCAB)
    for _ in range(5):
        straight.next_batch(*args)
        first.next_batch(*args)
    resumed = DocumentLoader(shards, 0, parity.WORLD, parity.VOCAB)
    resumed.load_state_dict(first.state_dict())
    for _ in range(7):
        a, b = straight.next_batch(*args), resumed.next_batch(*args)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2].cu_seqlens, b[2].cu_seqlens)


def test_a_rows_checkpoint_is_refused(shards):
    rows = DistributedTokenLoader(shards, 0, 1, parity.VOCAB)
    with pytest.raises(DataError, match="rows layout"):
        DocumentLoader(shards, 0, 1, parity.VOCAB).load_state_dict(rows.state_dict())


def test_a_shard_without_bos_is_named(tmp_path):
    path = tmp_path / "fineweb_train_000000.bin"
    write_shard(path, np.full(300, 5, dtype=np.uint16))
    with pytest.raises(DataError, match="fineweb_train_000000.bin: holds no BOS"):
        DocumentLoader([path], 0, 1, parity.VOCAB)


def test_ids_are_checked_against_the_vocabulary(shards):
    with pytest.raises(DataError, match="not below model.vocab_size=32"):
        DocumentLoader(shards, 0, 1, 32)


def test_shards_too_small_for_the_batch_are_refused(shards):
    loader = DocumentLoader(shards, 0, parity.WORLD, parity.VOCAB)
    with pytest.raises(DataError, match="no train shard holds"):
        loader.next_batch(8 * 512, parity.SEQ_LEN, parity.GRAD_ACCUM)
