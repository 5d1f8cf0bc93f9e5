"""Training batches as packed documents (`train.batch_layout: documents`), the 1.0611 record's order.

Each rank gets one flat (1, N) row per micro-step, N = global_tokens / (world_size
x grad_accum_steps), with `Segments` that cut it at every BOS and every `seq_len`
tokens within a document, so no token attends across a document boundary.

Order (the record's DocumentPackingLoader): shards in name order, wrapping; a
shard's cursor starts at its first BOS; every micro-step takes world_size x (N + 1)
consecutive tokens from the cursor, rank r keeps span r (x = span[:-1],
y = span[1:]); when the rest of a shard cannot hold a whole global span it is
dropped and the next shard starts at its first BOS.  The state is (file, cursor),
so a resumed run reads exactly the tokens it would have read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.loader import checked_shard, resume_file_index
from pipeline.data.shards import read_header, read_shard
from pipeline.data.tokenizer import BOS_ID
from pipeline.errors import DataError
from pipeline.model.attention import Segments


class DocumentLoader:
    """Per-rank (x, y, segments) micro-batches of packed documents (see the module docstring)."""

    def __init__(self, files: Sequence[str | Path], rank: int, world_size: int, vocab_size: int,
                 bos_id: int = BOS_ID) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if not 0 <= bos_id < vocab_size:
            raise DataError(f"BOS id {bos_id} is not below model.vocab_size={vocab_size}")
        self.files = sorted((Path(f) for f in files), key=lambda p: (p.name, str(p)))
        if not self.files:
            raise DataError("no train shards given to the document loader")
        self.sizes = [read_header(f) for f in self.files]  # fail now, naming the bad file
        self.rank, self.world_size = rank, world_size
        self.vocab_size, self.bos_id = vocab_size, bos_id
        self._checked: set[int] = set()
        self._open(0)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int
                   ) -> tuple[torch.Tensor, torch.Tensor, Segments]:
        """One micro-step for this rank: x, y int64 (1, N) CPU tensors and their Segments
        (cu_seqlens int32 on the CPU, max_len = seq_len, the record's max_seqlen)."""
        parts = self.world_size * grad_accum_steps
        if global_tokens % parts:
            raise ValueError(f"global_tokens={global_tokens} is not divisible by world_size x grad_accum_steps "
                             f"= {parts}")
        local = global_tokens // parts
        span = local + 1
        self._seek(span * self.world_size)
        start = self.cursor + self.rank * span
        chunk = torch.from_numpy(np.asarray(self._tokens[start : start + span]).astype(np.int64))
        lo, hi = np.searchsorted(self._bos, [start, start + local], side="left")
        starts = (self._bos[lo:hi] - start).tolist()
        segments = Segments.from_starts(starts, local, seq_len, bound=seq_len)
        self.cursor += span * self.world_size
        return chunk[None, :-1], chunk[None, 1:], segments

    def state_dict(self) -> dict[str, Any]:
        return {"layout": "documents", "file_index": self.file_index, "cursor": self.cursor,
                "files": [f.name for f in self.files]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("layout") != "documents":
            raise DataError("cannot resume the document loader from a checkpoint of the rows layout "
                            "(train.batch_layout changed)")
        index, cursor = resume_file_index(state, self.files, "the document loader"), int(state["cursor"])
        self._open(index)
        if not int(self._bos[0]) <= cursor <= self._tokens.size:
            raise DataError(f"cannot resume the document loader: cursor {cursor} outside {self.files[index]}")
        self.cursor = cursor

    def _seek(self, need: int) -> None:
        """Move to the next shard (wrapping) until `need` tokens remain from the cursor."""
        tried = 0
        while self.cursor + need > self._tokens.size:
            tried += 1
            if tried > len(self.files):
                raise DataError(f"no train shard holds {need} tokens after its first BOS "
                                f"(world_size x (tokens per micro-step + 1)); shards {self.files[0]} ... "
                                f"are too small for train.train_batch_tokens")
            self._open((self.file_index + 1) % len(self.files))

    def _open(self, index: int) -> None:
        path = self.files[index]
        tokens = read_shard(path) if index in self._checked else checked_shard(path, self.vocab_size)
        self._checked.add(index)
        bos = np.flatnonzero(tokens == self.bos_id)
        if bos.size == 0:
            raise DataError(f"{path}: holds no BOS token (id {self.bos_id}); the documents layout "
                            f"(train.batch_layout) packs documents that each start with one")
        self.file_index, self._tokens, self._bos = index, tokens, bos
        self.cursor = int(bos[0])
