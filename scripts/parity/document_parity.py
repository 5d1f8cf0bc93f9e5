#!/usr/bin/env python3
"""Parity of pgolf's documents layout (`train.batch_layout: documents`) with the 1.0611 record.

    python scripts/parity/document_parity.py [--mirror PATH]

The record (PR #1855) is read from the challenge's bare git mirror and imported as
scripts/parity/frontier_parity.py does (FlashAttention stubbed: its varlen call
becomes one causal SDPA per cu_seqlens segment; Triton inert; compile the identity).

Loader: three train shards of synthetic documents (`write_shards`: seeded lengths,
some longer than the sequence length, one shard opening mid-document; BOS = 1) are
read by the record's DocumentPackingLoader (pinned memory made a no-op on the CPU)
and by pgolf's DocumentLoader, two ranks, for LOADER_STEPS micro-steps (both shard
switches and the wrap back to the first shard happen); every (x, y, cu_seqlens) must
be equal, and their sha256 is printed for tests/data/test_documents.py.

Forward: the frontier profile's switches at frontier_parity's small size (looped),
one packed (1, N) row of documents with cu_seqlens cut every SEQ_LEN tokens; the
record's GPT(x, y, cu_seqlens, max_seqlen=SEQ_LEN) and pgolf's GPT(x, y, segments)
with the same weights; both losses are printed (CPU, fp32, eval mode) for
tests/model/test_document_parity.py.

Validation: the record's eval_val (one rank, VAL_SEQS windows of VAL_SEQ_LEN in
batches of VAL_BATCH_SEQS, each batch one packed row with cu_seqlens at every BOS,
cut every VAL_SEQ_LEN) on the same model against pgolf's standard evaluation
through PackedDocuments (train.batch_layout: documents) with the same batches;
both mean losses are printed for tests/train/test_documents_layout.py.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "parity"))

import frontier_parity as fp  # noqa: E402

from pipeline.data.documents import DocumentLoader  # noqa: E402
from pipeline.data.shards import write_shard  # noqa: E402
from pipeline.model.attention import Segments  # noqa: E402

BOS = 1
VOCAB = 64
WORLD = 2
GRAD_ACCUM = 4
SEQ_LEN = 16
GLOBAL_TOKENS = 512  # 64 tokens per rank and micro-step: a global span of 130
LOADER_STEPS = 24
SHARD_DOCS = (9, 14, 6)  # documents per shard


def write_shards(root: Path) -> list[Path]:
    """fineweb_train_00000{0,1,2}.bin of seeded documents `[BOS] + ids`; the second shard
    opens with the tail of a document (no BOS), so its cursor starts past it."""
    g = np.random.default_rng(1855)
    paths = []
    for i, docs in enumerate(SHARD_DOCS):
        parts = [g.integers(2, VOCAB, 7)] if i == 1 else []
        for _ in range(docs):
            n = int(g.choice([3, 8, 15, 16, 17, 40, 70]))
            parts.append(np.concatenate(([BOS], g.integers(2, VOCAB, n))))
        path = root / f"fineweb_train_{i:06d}.bin"
        write_shard(path, np.concatenate(parts).astype(np.uint16))
        paths.append(path)
    return paths


def batch_digest(batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> str:
    """sha256 over every batch's x, y (int64) and cu_seqlens (int32) bytes, in order."""
    h = hashlib.sha256()
    for x, y, cu in batches:
        for t in (x.to(torch.int64), y.to(torch.int64), cu.to(torch.int32)):
            h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def pgolf_batches(files: list[Path]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Rank-major: rank 0's LOADER_STEPS micro-batches, then rank 1's."""
    out = []
    for rank in range(WORLD):
        loader = DocumentLoader(files, rank, WORLD, VOCAB)
        for _ in range(LOADER_STEPS):
            x, y, seg = loader.next_batch(GLOBAL_TOKENS, SEQ_LEN, GRAD_ACCUM)
            assert seg.max_len == SEQ_LEN
            out.append((x, y, seg.cu_seqlens))
    return out


@contextlib.contextmanager
def _no_pinned_memory():
    """The record pins its host buffers; on a machine without CUDA that fails, so drop it."""
    empty, pin = torch.empty, torch.Tensor.pin_memory
    torch.empty = lambda *a, pin_memory=False, **k: empty(*a, **k)  # type: ignore[assignment]
    torch.Tensor.pin_memory = lambda self, *a, **k: self  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.empty, torch.Tensor.pin_memory = empty, pin  # type: ignore[assignment]


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def record_batches(module: types.ModuleType, files: list[Path]) -> list[Batch]:
    out = []
    with _no_pinned_memory():
        for rank in range(WORLD):
            h = types.SimpleNamespace(rank=rank, world_size=WORLD, train_seq_len=SEQ_LEN,
                                      train_files=str(files[0].parent / "fineweb_train_*.bin"))
            loader = module.DocumentPackingLoader(h, torch.device("cpu"))
            for _ in range(LOADER_STEPS):
                x, y, cu, _ = loader.next_batch(GLOBAL_TOKENS, GRAD_ACCUM)
                out.append((x, y, cu))
    return out


# --------------------------------------------------------------------------- forward

FORWARD_DOCS = (5, 20, 40, 3, 12)  # token counts after each BOS; the 40 is cut at FORWARD_SEQ_LEN
FORWARD_SEQ_LEN = 32


def forward_inputs(vocab: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """(1, N) x and y of packed documents (the row opens mid-document) and x's BOS positions."""
    g = torch.Generator().manual_seed(1855)
    parts = [torch.randint(2, vocab, (6,), generator=g)]
    for n in FORWARD_DOCS:
        parts.append(torch.cat((torch.tensor([BOS]), torch.randint(2, vocab, (n,), generator=g))))
    row = torch.cat(parts)
    x, y = row[None, :-1], row[None, 1:]
    return x, y, (x[0] == BOS).nonzero(as_tuple=True)[0].tolist()


def pgolf_forward_loss(base=None) -> float:
    case = fp.CASES[0]  # frontier-looped
    model, _ = fp.filled(fp.case_config(case, base), case.seq_len, case.looping)
    x, y, starts = forward_inputs(model.cfg.vocab_size)
    seg = Segments.from_starts(starts, x.size(1), FORWARD_SEQ_LEN, bound=FORWARD_SEQ_LEN)
    with torch.no_grad():
        return float(model(x, y, segments=seg).item())


def record_forward_loss(module: types.ModuleType) -> float:
    case = fp.CASES[0]
    cfg = fp.case_config(case)
    ours, _ = fp.filled(cfg, case.seq_len, case.looping)
    theirs = fp.record_model(module, case, cfg, ours)
    x, y, starts = forward_inputs(cfg.vocab_size)
    cu, _ = module._build_cu_seqlens(starts, x.size(1), torch.device("cpu"), FORWARD_SEQ_LEN, 64)
    with torch.no_grad():
        return float(theirs(x, y, cu_seqlens=cu, max_seqlen=FORWARD_SEQ_LEN).item())


# --------------------------------------------------------------------------- validation

VAL_SEQ_LEN = 32
VAL_BATCH_SEQS = 2
VAL_SEQS = 6  # three batches


def val_stream(vocab: int) -> torch.Tensor:
    """VAL_SEQS x VAL_SEQ_LEN + 1 tokens of seeded documents (some cut at VAL_SEQ_LEN, some
    crossing a window's or a batch's edge)."""
    g = torch.Generator().manual_seed(42)
    parts, total = [torch.randint(2, vocab, (4,), generator=g)], 4
    lengths = (9, 40, 3, 25, 70, 11, 30)
    while total < VAL_SEQS * VAL_SEQ_LEN + 1:
        n = lengths[len(parts) % len(lengths)]
        parts.append(torch.cat((torch.tensor([BOS]), torch.randint(2, vocab, (n,), generator=g))))
        total += n + 1
    return torch.cat(parts)[: VAL_SEQS * VAL_SEQ_LEN + 1]


def pgolf_val_loss(base=None) -> float:
    from pipeline.config import EvalConfig
    from pipeline.evaluate import evaluate_standard
    from pipeline.evaluate.bytes import ByteLuts
    from pipeline.runtime import detect_runtime
    from pipeline.train.validation import PackedDocuments

    case = fp.CASES[0]
    model, _ = fp.filled(fp.case_config(case, base), case.seq_len, case.looping)
    stream = val_stream(model.cfg.vocab_size)
    v = model.cfg.vocab_size
    no = torch.zeros(v, dtype=torch.bool)
    luts = ByteLuts(torch.ones(v, dtype=torch.int32), no, no)  # one byte a token: the loss is what is compared
    cfg = EvalConfig(seq_len=VAL_SEQ_LEN, stride=VAL_SEQ_LEN, batch_seqs=VAL_BATCH_SEQS, max_tokens=0,
                     stream="truncated")
    sums = evaluate_standard(PackedDocuments(model, VAL_SEQ_LEN), stream, luts, cfg, detect_runtime())
    return sums.loss


def record_val_loss(module: types.ModuleType) -> float:
    case = fp.CASES[0]
    cfg = fp.case_config(case)
    ours, _ = fp.filled(cfg, case.seq_len, case.looping)
    theirs = fp.record_model(module, case, cfg, ours)
    stream = val_stream(cfg.vocab_size)
    h = types.SimpleNamespace(eval_seq_len=VAL_SEQ_LEN, val_batch_tokens=VAL_BATCH_SEQS * VAL_SEQ_LEN,
                              world_size=1, grad_accum_steps=1, rank=0)
    data = types.SimpleNamespace(val_tokens=stream, val_bytes=torch.ones_like(stream))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its CUDA autocast, disabled on the CPU
        loss, _ = module.eval_val(h, torch.device("cpu"), data, theirs)
    return float(loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, default=fp.DEFAULT_MIRROR,
                        help="bare git mirror of openai/parameter-golf")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        module = fp.load_record(args.mirror, Path(tmp))
        files = write_shards(Path(tmp))
        theirs, ours = record_batches(module, files), pgolf_batches(files)
        same = all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
                   for a, b in zip(theirs, ours))
        print(f"loader: {len(theirs)} batches, shard sizes {[f.stat().st_size // 2 - 512 for f in files]}, "
              f"equal {same and len(theirs) == len(ours)}")
        print(f"record loader sha256 {batch_digest(theirs)}")
        ref, mine = record_forward_loss(module), pgolf_forward_loss()
        print(f"forward: record {ref:.6f}  pgolf {mine:.6f}  diff {abs(ref - mine):.2e}")
        ref, mine = record_val_loss(module), pgolf_val_loss()
        print(f"validation: record {ref:.6f}  pgolf {mine:.6f}  diff {abs(ref - mine):.2e}")


if __name__ == "__main__":
    main()
