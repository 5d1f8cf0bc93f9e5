"""Legal test-time training: every target is scored once, before any update that saw it.

Two schemes of the challenge's records, chosen by ``eval.ttt.mode``:

- ``score_first`` (2026-03-23 record): the validation stream is cut into
  chunks; each chunk's sliding windows are scored with no gradient, then the
  model (all but the first ``freeze_blocks`` blocks) takes SGD steps on that
  chunk, and the next chunk is scored by the updated model.  The last chunk is
  never trained on.
- ``phased`` (1.0611 record): documents are scored in batches (by length), each
  document chunk by chunk with a per-document LoRA that trains on a chunk right
  after scoring it and is reset for the next batch; after the first
  ``prefix_docs`` documents (split into ``num_phases`` boundaries) the base
  model takes global SGD steps on the documents already scored.

`ScoreLedger` is the guard: the engines tell it which target positions they
score and which they train on; it refuses a second score of a target, a score
of a target that an update has already seen, and training on a target not yet
scored, and at the end checks that every target was scored exactly once.

Ranks share the work as the records do: score-first splits each chunk's
windows and sequences by rank and averages gradients; phased lets ranks claim
document batches from a shared counter file (one node) and gathers the scored
documents for the global phase.  Sums are added across ranks at the end.
"""

from __future__ import annotations

import fcntl
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.config import PhasedTttConfig, ScoreFirstTttConfig
from pipeline.errors import PgolfError
from pipeline.evaluate.bytes import ByteLuts, token_bytes
from pipeline.evaluate.lora import DocumentAdapters
from pipeline.evaluate.scoring import EvalSums, per_token_losses
from pipeline.evaluate.windows import plan_sliding
from pipeline.runtime import Runtime


class TttOrderError(PgolfError):
    """A target was scored twice, scored after an update saw it, or trained on before being scored."""


class ScoreLedger:
    """Per target position (index of the predicted token): scored? seen by an update?"""

    def __init__(self, num_tokens: int) -> None:
        self.scored = np.zeros(num_tokens, dtype=np.int32)
        self.trained = np.zeros(num_tokens, dtype=np.bool_)
        self.scored_elsewhere = np.zeros(num_tokens, dtype=np.bool_)  # by another rank (phased: gathered lists)

    def score(self, positions: np.ndarray) -> None:
        positions = np.asarray(positions, dtype=np.int64)
        if positions.size == 0:
            return
        if np.unique(positions).size != positions.size or self.scored[positions].any():
            again = positions[self.scored[positions] > 0]
            first = int(again[0]) if again.size else int(positions[0])
            raise TttOrderError(f"target {first} is scored a second time")
        if self.trained[positions].any():
            first = int(positions[self.trained[positions]][0])
            raise TttOrderError(f"target {first} is scored after an update that trained on it")
        self.scored[positions] += 1

    def scored_by_another_rank(self, positions: np.ndarray) -> None:
        """Targets another rank reports as scored (training on them is then legal here)."""
        self.scored_elsewhere[np.asarray(positions, dtype=np.int64)] = True

    def train(self, positions: np.ndarray) -> None:
        positions = np.asarray(positions, dtype=np.int64)
        seen = (self.scored[positions] > 0) | self.scored_elsewhere[positions]
        if positions.size and not seen.all():
            first = int(positions[~seen][0])
            raise TttOrderError(f"an update trains on target {first} before it is scored")
        self.trained[positions] = True

    def check_complete(self, targets: np.ndarray) -> None:
        """Every position of `targets` scored exactly once (across ranks: call on the summed ledger)."""
        counts = self.scored[np.asarray(targets, dtype=np.int64)]
        if not (counts == 1).all():
            bad = int(np.asarray(targets)[counts != 1][0])
            raise TttOrderError(f"target {bad} was scored {int(self.scored[bad])} times, not once")


@dataclass(frozen=True)
class TttResult:
    sums: EvalSums
    seconds: float
    budget_seconds: float

    @property
    def within_budget(self) -> bool:
        return self.seconds <= self.budget_seconds

    def figures(self, prefix: str) -> dict[str, Any]:
        return {f"{prefix}_loss": self.sums.loss, f"{prefix}_bpb": self.sums.bpb, f"{prefix}_tokens": self.sums.tokens,
                f"{prefix}_seconds": self.seconds, f"{prefix}_budget_seconds": self.budget_seconds,
                f"{prefix}_within_budget": self.within_budget}


class _Sums:
    """float64 device accumulators, as the records keep them."""

    def __init__(self, device: torch.device) -> None:
        self.loss = torch.zeros((), dtype=torch.float64, device=device)
        self.bytes = torch.zeros((), dtype=torch.float64, device=device)
        self.tokens = torch.zeros((), dtype=torch.float64, device=device)

    def reduce(self, rt: Runtime) -> EvalSums:
        packed = torch.stack([self.loss, self.tokens, self.bytes])
        if rt.distributed:
            dist.all_reduce(packed, op=dist.ReduceOp.SUM)
        loss, tokens, nbytes = packed.tolist()
        return EvalSums(loss, round(tokens), round(nbytes))


def _target_bytes(inputs: Tensor, targets: Tensor, target_index: Tensor, luts: ByteLuts,
                  sidecar: Tensor | None) -> Tensor:
    """Bytes of each target: the sidecar's count at its index when there is one, else the tables'."""
    if sidecar is not None:
        return sidecar[target_index.clamp(max=sidecar.numel() - 1)].to(torch.float64)
    return token_bytes(inputs, targets, luts).to(torch.float64)


# =========================================================================== score-first


def _sliding_windows(total: int, seq_len: int, stride: int) -> list[tuple[int, int, int]]:
    """(window start, first scored offset, window length) covering targets 0..total-1 exactly once.

    pgolf's sliding plan (`plan_sliding`: the last window is anchored to the
    stream's end).  The 2026-03-23 record's own rule scores up to stride-1 of
    the last targets twice when the stream length is not a multiple of the
    stride; the ledger would refuse it.
    """
    plan = plan_sliding(total, seq_len, stride)
    return [(int(a), int(b), plan.length) for a, b in zip(plan.starts, plan.score_from)]


@contextmanager
def _restored_after_adaptation(model: nn.Module) -> Iterator[None]:
    """Whatever happens while TTT adapts `model` (freezing blocks, train mode, an error
    mid-way), hand it back as it came: every parameter trainable, eval mode."""
    try:
        yield
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
        model.eval()


def score_first_ttt(
    model: nn.Module, tokens: Tensor, luts: ByteLuts, cfg: ScoreFirstTttConfig, seq_len: int, stride: int,
    batch_seqs: int, rt: Runtime, *, sidecar: Tensor | None = None, ledger: ScoreLedger | None = None,
    loss_fn: Callable[[nn.Module, Tensor, Tensor], Tensor] | None = None,
) -> EvalSums:
    """Score each chunk's sliding windows, then SGD on the chunk; returns every rank's total.

    The per-token loss comes from `loss_fn(model, x, y)`, by default
    `per_token_losses` (``model(ids, targets, reduction="none")`` or ``model.logits``).
    """
    device = rt.device
    total = tokens.numel() - 1
    chunk = cfg.chunk_tokens
    num_chunks = (total + chunk - 1) // chunk
    per_chunk: list[list[tuple[int, int, int]]] = [[] for _ in range(num_chunks)]
    for start, offset, length in _sliding_windows(total, seq_len, stride):
        per_chunk[min((start + offset) // chunk, num_chunks - 1)].append((start, offset, length))
    frozen = {f"blocks.{i}." for i in range(cfg.freeze_blocks)}
    params = []
    for name, p in model.named_parameters():
        train = not any(name.startswith(prefix) or f".{prefix}" in name for prefix in frozen)
        p.requires_grad_(train)
        if train:
            params.append(p)
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    losses = loss_fn or per_token_losses
    sums = _Sums(device)
    tokens_dev = tokens.to(device)
    with _restored_after_adaptation(model):
        for ci, windows in enumerate(per_chunk):
            mine = windows[len(windows) * rt.rank // rt.world_size:len(windows) * (rt.rank + 1) // rt.world_size]
            model.eval()
            with torch.no_grad():
                for first in range(0, len(mine), batch_seqs):
                    _score_windows(model, tokens_dev, mine[first:first + batch_seqs], seq_len, luts, sidecar,
                                   sums, ledger, losses, rt)
            if ci == num_chunks - 1 or cfg.epochs <= 0:
                continue
            chunk_start, chunk_end = ci * chunk, min((ci + 1) * chunk, total)
            seqs = (chunk_end - chunk_start) // seq_len
            if seqs <= 0:
                continue
            lr = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * ci / max(num_chunks - 1, 1)))
            for group in optimizer.param_groups:
                group["lr"] = lr
            lo, hi = seqs * rt.rank // rt.world_size, seqs * (rt.rank + 1) // rt.world_size
            if ledger is not None:  # every rank trains on its share; the ledger sees the whole chunk
                ledger.train(np.arange(chunk_start + 1, chunk_start + seqs * seq_len + 1))
            model.train()
            for _ in range(cfg.epochs):
                for b in range(lo, hi, cfg.batch_seqs):
                    e = min(b + cfg.batch_seqs, hi)
                    local = tokens_dev[chunk_start + b * seq_len:chunk_start + e * seq_len + 1].to(torch.int64)
                    x, y = local[:-1].reshape(-1, seq_len), local[1:].reshape(-1, seq_len)
                    optimizer.zero_grad(set_to_none=True)
                    with rt.autocast():
                        loss = losses(model, x, y).mean()
                    loss.backward()
                    _average_grads(params, rt)
                    if cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                    optimizer.step()
    return sums.reduce(rt)


def _score_windows(model, tokens, windows, seq_len, luts, sidecar, sums, ledger, losses, rt) -> None:
    device = tokens.device
    x = torch.zeros(len(windows), seq_len, dtype=torch.int64, device=device)
    y = torch.zeros_like(x)
    for i, (start, _, length) in enumerate(windows):
        piece = tokens[start:start + length + 1].to(torch.int64)
        x[i, :length], y[i, :length] = piece[:-1], piece[1:]
    with rt.autocast():
        nll = losses(model, x, y).float()
    cols = torch.arange(seq_len, device=device)
    starts = torch.tensor([w[0] for w in windows], device=device)
    offsets = torch.tensor([w[1] for w in windows], device=device)
    lengths = torch.tensor([w[2] for w in windows], device=device)
    mask = (cols[None] >= offsets[:, None]) & (cols[None] < lengths[:, None])
    index = starts[:, None] + 1 + cols[None]
    nbytes = _target_bytes(x, y, index, luts.to(device), sidecar.to(device) if sidecar is not None else None)
    sums.loss += torch.where(mask, nll.to(torch.float64), 0.0).sum()
    sums.bytes += torch.where(mask, nbytes, 0.0).sum()
    sums.tokens += mask.sum().to(torch.float64)
    if ledger is not None:
        ledger.score(index[mask].cpu().numpy())


def _average_grads(params: Sequence[Tensor], rt: Runtime) -> None:
    if not rt.distributed:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.mul_(1.0 / rt.world_size)


# =========================================================================== phased


class PhasedModel(Protocol):
    """What phased TTT needs of a model (the frontier GPT offers it; tests use a toy)."""

    def ttt_adapters(self, batch: int, cfg: PhasedTttConfig) -> DocumentAdapters: ...

    def ttt_token_losses(self, x: Tensor, y: Tensor, adapters: DocumentAdapters) -> Tensor: ...

    def ttt_stream_loss(self, x: Tensor, y: Tensor, max_segment: int = 0) -> Tensor:
        """Mean loss of a packed 1-D stream, attention within each document, documents
        cut every `max_segment` tokens (the record's cu_seqlens at eval_seq_len)."""
        ...


def find_documents(tokens: Tensor, bos_id: int) -> list[tuple[int, int]]:
    """(start, length) of each document; all but the last extend over the next BOS,
    so a document's last target is the next document's BOS (the records' rule)."""
    starts = (tokens == bos_id).nonzero(as_tuple=True)[0].tolist()
    docs = []
    for i, start in enumerate(starts):
        end = starts[i + 1] + 1 if i + 1 < len(starts) else tokens.numel()
        if end - start < 2:
            raise PgolfError(f"validation document at token {start} has no target")
        docs.append((start, end - start))
    return docs


def chunk_window(ci: int, pred_len: int, num_chunks: int, chunk: int, seq_len: int) -> tuple[int, int, int, int]:
    """For chunk `ci` of a document with `pred_len` targets: (window start, window length,
    offset of the chunk in the window, chunk length); the window is the last `seq_len`
    targets up to the chunk's end."""
    chunk_end = pred_len if ci == num_chunks - 1 else (ci + 1) * chunk
    win_start = max(0, chunk_end - seq_len)
    chunk_start = ci * chunk
    return win_start, chunk_end - win_start, chunk_start - win_start, chunk_end - chunk_start


def document_batches(docs: list[tuple[int, int]], batch_docs: int) -> list[tuple[int, list[tuple[int, tuple[int, int]]]]]:
    """Documents sorted by length (stable) in groups of `batch_docs`, longest group first:
    (batch index in length order, [(document index, (start, length)), ...])."""
    ordered = sorted(enumerate(docs), key=lambda entry: entry[1][1])
    batches = list(enumerate(ordered[i:i + batch_docs] for i in range(0, len(ordered), batch_docs)))
    batches.sort(key=lambda b: -max(length for _, (_, length) in b[1]))
    return batches


class _Coordination:
    """Batch claiming, the count of scored prefix documents and the phase flag.

    One process keeps them in memory; ranks on one node share three small files
    in `workdir` under a lock, as the record does.
    """

    def __init__(self, rt: Runtime, workdir: Path | None) -> None:
        self.rt = rt
        self._next = 0
        self._prefix = 0
        self._paused = False
        self._files: tuple[Path, Path, Path] | None = None
        if rt.distributed:
            if workdir is None:
                raise PgolfError("phased TTT on several ranks needs a shared working directory")
            names = [str(workdir / f".ttt_{n}") for n in ("counter", "prefix", "pause")]
            dist.broadcast_object_list(names, src=0)
            self._files = tuple(Path(n) for n in names)
            if rt.is_main:
                self._files[0].write_bytes((0).to_bytes(8, "little"))
                self._files[1].write_bytes((0).to_bytes(8, "little"))
                self._files[2].unlink(missing_ok=True)
            dist.barrier()

    def _add(self, path: Path, delta: int) -> int:
        with open(path, "r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            value = int.from_bytes(f.read(8), "little", signed=True)
            f.seek(0)
            f.write((value + delta).to_bytes(8, "little", signed=True))
            f.flush()
        return value + delta

    def claim(self) -> int:
        if self._files is None:
            self._next += 1
            return self._next - 1
        return self._add(self._files[0], 1) - 1

    def add_prefix(self, n: int) -> int:
        if self._files is None:
            self._prefix += n
            return self._prefix
        return self._add(self._files[1], n)

    def raise_flag(self) -> None:
        if self._files is None:
            self._paused = True
            return
        try:
            with open(self._files[2], "x"):
                pass
        except FileExistsError:
            pass

    def flagged(self) -> bool:
        return self._paused if self._files is None else self._files[2].exists()

    def clear_flag(self) -> None:
        if self._files is None:
            self._paused = False
        elif self.rt.is_main:
            self._files[2].unlink(missing_ok=True)

    def close(self) -> None:
        if self._files is not None and self.rt.is_main:
            for path in self._files:
                path.unlink(missing_ok=True)


def _lora_optimizer(adapters: nn.Module, cfg: PhasedTttConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(adapters.parameters(), lr=cfg.lora_lr, momentum=cfg.beta1,
                               weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(adapters.parameters(), lr=cfg.lora_lr, betas=(cfg.beta1, cfg.beta2), eps=1e-10,
                             weight_decay=cfg.weight_decay, fused=True)


def _zero_state(optimizer: torch.optim.Optimizer) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, Tensor):
                value.zero_()
            elif key == "step":
                state[key] = 0


def phased_ttt(
    model: PhasedModel, tokens: Tensor, luts: ByteLuts, cfg: PhasedTttConfig, seq_len: int, rt: Runtime,
    *, bos_id: int = 1, sidecar: Tensor | None = None, ledger: ScoreLedger | None = None,
    workdir: Path | None = None,
) -> EvalSums:
    """Phased TTT over every document of `tokens`; returns every rank's total."""
    device = rt.device
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    docs = find_documents(tokens, bos_id)
    prefix_limit = max(0, min(len(docs), cfg.prefix_docs))
    boundaries = [prefix_limit * (i + 1) // cfg.num_phases for i in range(cfg.num_phases)]
    phase = 0
    batches = document_batches(docs, cfg.batch_docs)
    coord = _Coordination(rt, workdir)
    sums = _Sums(device)
    all_tokens = tokens.to(torch.int32)
    side = sidecar.to(torch.int32) if sidecar is not None else None
    luts = luts.to(device)
    chunk = cfg.chunk_size
    reusable = model.ttt_adapters(cfg.batch_docs, cfg).to(device)
    reusable_opt = _lora_optimizer(reusable, cfg)
    scored_docs: list[tuple[int, int, int, int]] = []
    global_done = prefix_limit == 0

    def run_phase() -> None:
        """Global SGD on the first scored documents, then fresh adapters (all ranks together)."""
        nonlocal phase, global_done, reusable, reusable_opt
        if rt.distributed:
            dist.barrier()
            gathered: list[Any] = [None] * rt.world_size
            dist.all_gather_object(gathered, scored_docs)
            if ledger is not None:
                for other, rank_docs in enumerate(gathered):
                    for _, _, start, length in (rank_docs if other != rt.rank else ()):
                        ledger.scored_by_another_rank(np.arange(start + 1, start + length))
        else:
            gathered = [scored_docs]
        chosen = _global_documents(gathered, boundaries[phase], docs)
        pieces = [tokens[start:start + length] for _, _, start, length in chosen]
        stream = torch.cat(pieces) if pieces else tokens[:0]
        if ledger is not None:
            for _, _, start, length in chosen:
                ledger.train(np.arange(start + 1, start + length))
        _global_sgd(model, stream, cfg, seq_len, rt)
        for p in model.parameters():
            p.requires_grad_(False)
        reusable = model.ttt_adapters(cfg.batch_docs, cfg).to(device)
        reusable_opt = _lora_optimizer(reusable, cfg)
        phase += 1
        if phase >= cfg.num_phases:
            global_done = True
        else:
            coord.clear_flag()
        if rt.distributed:
            dist.barrier()

    with _restored_after_adaptation(model):
        while True:
            queue_index = coord.claim()
            if queue_index >= len(batches):
                break
            batch_index, entries = batches[queue_index]
            batch = [doc for _, doc in entries]
            size = len(batch)
            if size == reusable.batch:
                reusable.reset()
                _zero_state(reusable_opt)
                adapters, optimizer = reusable, reusable_opt
            else:
                adapters = model.ttt_adapters(size, cfg).to(device)
                optimizer = _lora_optimizer(adapters, cfg)
            _adapt_batch(model, adapters, optimizer, batch, all_tokens, side, luts, cfg, seq_len, rt, sums,
                         ledger)
            if global_done:
                continue
            scored_docs.extend((batch_index, pos, start, length) for pos, (start, length) in enumerate(batch))
            if coord.add_prefix(len(entries)) >= boundaries[phase]:
                coord.raise_flag()
            if coord.flagged():
                run_phase()
        if rt.distributed:
            # A rank out of batches still takes part in the phases the others run (their
            # barriers and gathers are collective); the record's loop would leave them waiting.
            while not global_done:
                if coord.add_prefix(0) >= boundaries[phase]:
                    coord.raise_flag()
                if coord.flagged():
                    run_phase()
                else:
                    time.sleep(0.01)
            dist.barrier()  # every rank is past its last claim before the files go
        coord.close()
    return sums.reduce(rt)


def _global_documents(gathered: list[Any], boundary: int, docs: list[tuple[int, int]]) -> list[tuple[int, int, int, int]]:
    """The documents the global phase trains on: the first `boundary` scored ones, in
    (batch, position) order, from every rank's list of (batch, position, start, length)."""
    return sorted(d for rank_docs in gathered if rank_docs for d in rank_docs)[:boundary]


def _adapt_batch(model, adapters, optimizer, batch, all_tokens, sidecar, luts, cfg, seq_len, rt, sums,
                 ledger) -> None:
    """Score a batch of documents chunk by chunk; after each chunk, train their adapters on it."""
    device = rt.device
    size = len(batch)
    chunk = cfg.chunk_size
    pred_lens = [length - 1 for _, length in batch]
    num_chunks = [(n + chunk - 1) // chunk for n in pred_lens]
    num_chunks_t = torch.tensor(num_chunks, dtype=torch.int64, device=device)
    for ci in range(max(num_chunks)):
        starts = torch.zeros(size, dtype=torch.int64)
        lengths = torch.zeros(size, dtype=torch.int64)
        offsets = torch.zeros(size, dtype=torch.int64)
        chunk_lens = torch.zeros(size, dtype=torch.int64)
        for b, (doc_start, _) in enumerate(batch):
            if ci >= num_chunks[b]:
                continue
            win_start, win_len, offset, clen = chunk_window(ci, pred_lens[b], num_chunks[b], chunk, seq_len)
            starts[b], lengths[b], offsets[b], chunk_lens[b] = doc_start + win_start, win_len, offset, clen
        _, context, _, _ = chunk_window(ci, (ci + 1) * chunk, ci + 1, chunk, seq_len)
        train_offset = _train_offset(ci, chunk, seq_len)
        cols = torch.arange(context + 1)
        index = (starts[:, None] + cols[None]).clamp_(max=all_tokens.numel() - 1)
        gathered = all_tokens[index].to(device=device, dtype=torch.int64)
        valid = (cols[None, :context] < lengths[:, None]).to(device)
        x = torch.where(valid, gathered[:, :context], 0)
        y = torch.where(valid, gathered[:, 1:], 0)
        with rt.autocast():
            losses = model.ttt_token_losses(x, y, adapters)
        target_index = (starts[:, None] + 1 + cols[None, :context]).to(device)
        pos = torch.arange(context, device=device)[None]
        off, clen = offsets.to(device)[:, None], chunk_lens.to(device)[:, None]
        mask = (clen > 0) & (pos >= off) & (pos < off + clen)
        with torch.no_grad():
            if sidecar is not None:
                nbytes = torch.where(valid, sidecar[target_index.clamp(max=sidecar.numel() - 1).cpu()].to(device), 0)
                nbytes = nbytes.to(torch.float64)
            else:
                nbytes = token_bytes(x, y, luts).to(torch.float64)
            weight = mask.to(torch.float64)
            sums.loss += (losses.detach().to(torch.float64) * weight).sum()
            sums.bytes += (nbytes * weight).sum()
            sums.tokens += chunk_lens.to(torch.float64).sum()
        if ledger is not None:
            ledger.score(target_index[mask].cpu().numpy())
        if not any(ci < n - 1 for n in num_chunks):
            continue
        training = (num_chunks_t - 1 > ci).float()
        if ledger is not None:
            rows = (num_chunks_t - 1 > ci).cpu().numpy()
            ledger.train(target_index[:, train_offset:train_offset + chunk].cpu().numpy()[rows].ravel())
        for step in range(cfg.grad_steps):
            if step:
                with rt.autocast():
                    losses = model.ttt_token_losses(x, y, adapters)
            per_doc = losses[:, train_offset:train_offset + chunk].mean(dim=-1)
            optimizer.zero_grad(set_to_none=True)
            (per_doc * training).sum().backward()
            optimizer.step()


def _train_offset(ci: int, chunk: int, seq_len: int) -> int:
    """Where chunk `ci`'s targets sit in a full-length window: the slice the adapters train on,
    the targets just scored (a document still training is never on its last, shorter chunk)."""
    return chunk_window(ci, (ci + 1) * chunk, ci + 1, chunk, seq_len)[2]


def _global_sgd(model: PhasedModel, stream: Tensor, cfg: PhasedTttConfig, seq_len: int, rt: Runtime) -> None:
    """SGD on the base model over the scored documents' tokens, chunk by chunk (cosine lr, last chunk skipped)."""
    device = rt.device
    total = stream.numel() - 1
    size = cfg.global_chunk_tokens
    num_chunks = (total + size - 1) // size
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.SGD(params, lr=cfg.global_lr, momentum=cfg.global_momentum)
    warmup = max(0, min(cfg.global_warmup_chunks, num_chunks - 1))
    for ci in range(num_chunks):
        chunk_start, chunk_end = ci * size, min((ci + 1) * size, total)
        if ci == num_chunks - 1 or cfg.global_epochs <= 0:
            continue
        seqs = (chunk_end - chunk_start) // seq_len
        if seqs <= 0:
            continue
        if warmup > 0 and ci < warmup:
            lr = cfg.global_warmup_start_lr + (cfg.global_lr - cfg.global_warmup_start_lr) * ci / max(warmup - 1, 1)
        else:
            lr = cfg.global_lr * 0.5 * (1.0 + math.cos(math.pi * max(ci - warmup, 0) / max(num_chunks - 1 - warmup, 1)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        lo, hi = seqs * rt.rank // rt.world_size, seqs * (rt.rank + 1) // rt.world_size
        model.train()
        for _ in range(cfg.global_epochs):
            for b in range(0, hi - lo, cfg.global_batch_seqs):
                e = min(b + cfg.global_batch_seqs, hi - lo)
                first, last = chunk_start + (lo + b) * seq_len, chunk_start + (lo + e) * seq_len + 1
                if last > stream.numel():
                    continue
                local = stream[first:last].to(device=device, dtype=torch.int64)
                optimizer.zero_grad(set_to_none=True)
                with rt.autocast():
                    loss = model.ttt_stream_loss(local[:-1], local[1:], max_segment=seq_len)
                loss.backward()
                _average_grads(params, rt)
                if cfg.global_grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.global_grad_clip)
                optimizer.step()
        model.eval()


def timed(fn: Callable[[], EvalSums], budget_seconds: float, rt: Runtime) -> TttResult:
    """Run an evaluation and measure its seconds (device synchronised) against the budget."""
    rt.synchronize()
    t0 = time.perf_counter()
    sums = fn()
    rt.synchronize()
    return TttResult(sums, time.perf_counter() - t0, budget_seconds)
