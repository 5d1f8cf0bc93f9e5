"""`train.batch_layout: documents` in the training loop (embedded corpus, one CPU process):
the packed rows and their segments reach the model, and the warm-up leaves the data
position where it was (the loader ends where a fresh one does after the trained micro-steps),
having primed the compiled graph's cu_seqlens lengths as the record's warm-up does."""

from __future__ import annotations

import dataclasses
import math

import torch

from pipeline.data.documents import DocumentLoader
from pipeline.layout import seed_dir
from pipeline.runtime import detect_runtime
from pipeline.train.loop import Trainer
from pipeline.train.validation import PackedDocuments, Validator
from tests.scripts import load_script
from tests.train.helpers import SEQ_LEN, tiny_params

# The record's eval_val on packed documents (frontier switches, small size; three batches of two
# 32-token windows), printed by scripts/parity/document_parity.py (pgolf's differs by 1.6e-07;
# the row layout gives 8.579277).
RECORD_VAL_LOSS = 8.546791


def _params(record_params, embedded_data, runs, **train):
    p = tiny_params(record_params, embedded_data.layout.root, runs, train=dict(iterations=4, **train))
    return dataclasses.replace(p, train=dataclasses.replace(p.train, batch_layout="documents"))


def test_training_on_packed_documents(record_params, embedded_data, tmp_path, monkeypatch):
    # compile on (so the warm-up primes the cu_seqlens lengths), torch.compile itself the identity here.
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: model)
    p = _params(record_params, embedded_data, tmp_path / "runs", warmup_steps=1, compile=True)
    trainer = Trainer(p, 1, embedded_data.layout.root, seed_dir(tmp_path / "runs", 1), detect_runtime(),
                      progress=False)
    assert isinstance(trainer.loader, DocumentLoader)
    assert Validator(p, embedded_data.layout.root, detect_runtime()).documents  # validation follows the layout
    seen = []
    forward = trainer.model.forward

    def spy(ids, targets, reduction="mean", segments=None):
        seen.append((ids.shape, segments))
        return forward(ids, targets, reduction, segments)

    monkeypatch.setattr(trainer.model, "forward", spy)
    start = dict(trainer.loader.state_dict())
    summary = trainer.run()
    assert math.isfinite(summary.final_train_loss)
    local = p.train.train_batch_tokens // 8
    assert all(shape == (1, local) and seg is not None and seg.max_len == SEQ_LEN for shape, seg in seen)
    # The warm-up: one pass per cu_seqlens length 64..256, then 1 step; then 4 steps; 8 micro-steps a step.
    assert [seg.cu_seqlens.numel() for _, seg in seen[:4]] == [64, 128, 192, 256]
    assert len(seen) == 4 + 8 * 5
    # The data position after the warm-up was restored: the loader stands where a fresh one does.
    fresh = DocumentLoader(embedded_data.layout.train_files(), 0, 1, p.model.vocab_size)
    assert fresh.state_dict() == start
    for _ in range(8 * 4):
        fresh.next_batch(p.train.train_batch_tokens, SEQ_LEN, 8)
    assert trainer.loader.state_dict() == fresh.state_dict()


def test_validation_scores_packed_documents():
    """PackedDocuments (the Validator under the documents layout): a batch of consecutive windows
    scores as every document run on its own, across the windows' edges."""
    from pipeline.model import GPT
    from tests.conftest import tiny_model_config
    from tests.model.helpers import fill_like_spec

    torch.manual_seed(0)
    # No BigramHash (it reads the previous token across a BOS); the smear stops at a BOS.
    model = GPT(tiny_model_config(canon=dict(placements=""), bigram_buckets=0, smear_bos_mask=True)).eval()
    fill_like_spec(model, 3, std=0.1)
    g = torch.Generator().manual_seed(4)
    stream = torch.randint(2, 64, (3 * 16 + 1,), generator=g)
    stream[[5, 9, 20, 30, 40, 47]] = 1
    x, y = stream[:-1].view(3, 16), stream[1:].view(3, 16)
    with torch.no_grad():
        packed = PackedDocuments(model, 16)(x, y)
        flat_x, flat_y = x.reshape(1, -1), y.reshape(1, -1)
        bounds = (0, 5, 9, 20, 30, 40, 47, 48)  # at every BOS; no piece reaches seq_len
        alone = torch.cat([model(flat_x[:, a:b], flat_y[:, a:b], reduction="none")[0]
                           for a, b in zip(bounds, bounds[1:])])
        rows = model(x, y, reduction="none")
    torch.testing.assert_close(packed.reshape(-1), alone, rtol=0, atol=2e-5)
    assert (packed - rows).abs().max() > 1e-3  # rows attend across the documents


def test_packed_validation_matches_the_records_eval_val():
    parity = load_script("scripts/parity/document_parity.py")
    assert abs(parity.pgolf_val_loss() - RECORD_VAL_LOSS) < 1e-5
