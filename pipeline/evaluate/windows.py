"""Which windows of the validation stream the model reads, and which targets each one scores.

A stream of N+1 tokens has N targets: target i is token i+1, predicted from
tokens up to i.  A window with start s and length L feeds tokens [s, s+L) and
predicts targets [s, s+L); it *scores* only targets [s+score_from, s+L).

Standard plan: non-overlapping windows of seq_len; the last N mod seq_len
targets are dropped (SPEC §5).

Sliding plan (the score), seq_len L, stride S, every target scored once:

- N <= L: one window over the whole stream scores everything;
- otherwise windows start at 0, S, 2S, ... while start + L <= N; the first
  scores all L targets, each later one its last S, so target i (i >= L) is
  scored with at least L - S + 1 tokens of context;
- if the last of those ends before N (N - L not a multiple of S), one more
  window is anchored to the end (start N - L, full length L) and scores only
  the fewer-than-S targets nobody scored yet, which therefore see more than
  L - S tokens of context.

Every window of a plan has the same length, so batches need no padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowPlan:
    num_targets: int
    length: int  # tokens fed per window (all windows alike)
    starts: np.ndarray  # int64 (W,): first input token of each window
    score_from: np.ndarray  # int64 (W,): offset inside the window of its first scored target

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    @property
    def scored_targets(self) -> int:
        return int((self.length - self.score_from).sum())

    def rank_range(self, rank: int, world_size: int) -> tuple[int, int]:
        """Contiguous block of window indices [lo, hi) for `rank` of `world_size`."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world of {world_size}")
        n = len(self)
        return n * rank // world_size, n * (rank + 1) // world_size


def plan_standard(num_targets: int, seq_len: int) -> WindowPlan:
    """Non-overlapping windows of `seq_len`; a partial last window is dropped."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    count = num_targets // seq_len
    if count == 0:
        raise ValueError(f"standard evaluation needs at least seq_len={seq_len} targets, the stream has {num_targets}")
    starts = np.arange(count, dtype=np.int64) * seq_len
    return WindowPlan(num_targets, seq_len, starts, np.zeros(count, dtype=np.int64))


def plan_sliding(num_targets: int, seq_len: int, stride: int) -> WindowPlan:
    """Sliding windows that score every one of `num_targets` targets exactly once."""
    if not 1 <= stride <= seq_len:
        raise ValueError(f"stride must be in [1, seq_len={seq_len}], got {stride}")
    if num_targets < 1:
        raise ValueError(f"sliding evaluation needs at least one target, the stream has {num_targets}")
    if num_targets <= seq_len:
        zero = np.zeros(1, dtype=np.int64)
        return WindowPlan(num_targets, num_targets, zero, zero.copy())
    last = (num_targets - seq_len) // stride
    starts = np.arange(last + 1, dtype=np.int64) * stride
    score_from = np.full(last + 1, seq_len - stride, dtype=np.int64)
    score_from[0] = 0
    covered = int(starts[-1]) + seq_len
    if covered < num_targets:
        tail_start = num_targets - seq_len
        starts = np.append(starts, tail_start)
        score_from = np.append(score_from, covered - tail_start)
    return WindowPlan(num_targets, seq_len, starts, score_from)
