"""Reading shards back for training and evaluation (SPEC §1, train loader).

Training reads one stream over the train shards in name order, wrapping
around at the end.  Every optimizer micro-step takes ``world_size x
(local_tokens + 1)`` consecutive tokens from it; rank r keeps slice r and
builds ``x = slice[:-1]``, ``y = slice[1:]``.  Every rank reads the same
stream, so the ranks agree on the data without talking to each other, and a
run's data order depends only on the shards and the batch shape.

The stream's position (file index, offset) is the whole of its state, so a
resumed run continues on exactly the tokens it would have seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.data.shards import read_header, read_shard
from pipeline.errors import DataError


def checked_shard(path: str | Path, vocab_size: int) -> np.ndarray:
    """`read_shard`, refusing a shard whose largest token id is not below `vocab_size`.

    One vectorised pass per shard: a stray id would otherwise index past the
    embedding table (an IndexError, or garbage on a GPU) mid-run.
    """
    tokens = read_shard(path)
    top = int(tokens.max()) if tokens.size else 0
    if top >= vocab_size:
        raise DataError(f"{path}: holds token id {top}, not below model.vocab_size={vocab_size}")
    return tokens


def resume_file_index(state: dict[str, Any], files: Sequence[Path], what: str) -> int:
    """The shard index a saved loader state points at, refused (naming `what`) unless the state
    was saved over these same shards, in this order."""
    names = [f.name for f in files]
    if list(state["files"]) != names:
        raise DataError(f"cannot resume {what}: saved over {len(state['files'])} shards "
                        f"({state['files'][:1]}...), now given {len(names)} ({names[:1]}...)")
    index = int(state["file_index"])
    if not 0 <= index < len(files):
        raise DataError(f"cannot resume {what}: file index {index} out of range")
    return index


class TokenStream:
    """Consecutive tokens across `files` in name order (SPEC §1), wrapping around.

    Each shard's ids are checked against `vocab_size` the first time it is opened.
    """

    def __init__(self, files: Sequence[str | Path], vocab_size: int) -> None:
        self.files = sorted((Path(f) for f in files), key=lambda p: (p.name, str(p)))
        if not self.files:
            raise DataError("no train shards given to the token stream")
        counts = [read_header(f) for f in self.files]  # fail now, naming the bad file
        if sum(counts) == 0:
            raise DataError(f"train shards {self.files[0]} ... hold no tokens")
        self.vocab_size = vocab_size
        self._checked: set[int] = set()
        self.file_index = 0
        self.position = 0
        self._tokens = self._read(0)

    def take(self, n: int) -> np.ndarray:
        """The next `n` tokens (uint16), crossing file boundaries as needed."""
        parts: list[np.ndarray] = []
        remaining = n
        while remaining > 0:
            available = self._tokens.size - self.position
            if available <= 0:
                self._open((self.file_index + 1) % len(self.files))
                continue
            k = min(remaining, available)
            parts.append(np.asarray(self._tokens[self.position : self.position + k]))
            self.position += k
            remaining -= k
        if not parts:
            return np.zeros(0, dtype=np.uint16)
        return np.concatenate(parts) if len(parts) > 1 else parts[0].copy()

    def state_dict(self) -> dict[str, Any]:
        return {"file_index": self.file_index, "position": self.position, "files": [f.name for f in self.files]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        index, position = resume_file_index(state, self.files, "the token stream"), int(state["position"])
        self._open(index)
        if not 0 <= position <= self._tokens.size:
            raise DataError(f"cannot resume the token stream: position {position} beyond {self.files[index]}")
        self.position = position

    def _open(self, index: int) -> None:
        self.file_index = index
        self._tokens = self._read(index)
        self.position = 0

    def _read(self, index: int) -> np.ndarray:
        if index in self._checked:
            return read_shard(self.files[index])
        tokens = checked_shard(self.files[index], self.vocab_size)
        self._checked.add(index)
        return tokens


class DistributedTokenLoader:
    """Per-rank (x, y) batches from the shared train stream (the SPEC §1 rule)."""

    def __init__(self, files: Sequence[str | Path], rank: int, world_size: int, vocab_size: int) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.rank = rank
        self.world_size = world_size
        self.stream = TokenStream(files, vocab_size)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One micro-step's inputs and targets for this rank: int64 CPU tensors of shape (-1, seq_len)."""
        shards_per_step = self.world_size * grad_accum_steps
        if global_tokens % shards_per_step:
            raise ValueError(f"global_tokens={global_tokens} is not divisible by world_size x grad_accum_steps "
                             f"= {shards_per_step}")
        local_tokens = global_tokens // shards_per_step
        if local_tokens % seq_len:
            raise ValueError(f"local_tokens={local_tokens} is not a multiple of seq_len={seq_len}")
        span = local_tokens + 1
        chunk = self.stream.take(span * self.world_size)
        local = torch.from_numpy(chunk[self.rank * span : (self.rank + 1) * span].astype(np.int64))
        return local[:-1].reshape(-1, seq_len), local[1:].reshape(-1, seq_len)

    def state_dict(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)


def load_validation_tokens(files: Sequence[str | Path], vocab_size: int) -> torch.Tensor:
    """Every validation token, concatenated in file order, as an int64 CPU tensor (ids checked < `vocab_size`).

    No trimming here: the evaluator cuts it to whole windows.
    """
    if not files:
        raise DataError("no validation shards given")
    shards = [checked_shard(f, vocab_size) for f in files]
    tokens = np.concatenate(shards) if len(shards) > 1 else np.array(shards[0])
    return torch.from_numpy(tokens.astype(np.int64))
