"""Window plans: every target scored exactly once, with the promised context."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.evaluate.windows import plan_sliding, plan_standard


def _coverage(plan) -> tuple[np.ndarray, np.ndarray]:
    """(times each target is scored, context tokens it was scored with)."""
    counts = np.zeros(plan.num_targets, dtype=np.int64)
    context = np.zeros(plan.num_targets, dtype=np.int64)
    for start, first in zip(plan.starts.tolist(), plan.score_from.tolist()):
        assert 0 <= start and start + plan.length <= plan.num_targets
        scored = np.arange(start + first, start + plan.length)
        counts[scored] += 1
        context[scored] = scored - start + 1
    return counts, context


@pytest.mark.parametrize("seq_len,stride", [(16, 4), (16, 16), (16, 1), (10, 3), (2048, 64)])
@pytest.mark.parametrize("extra", [0, 1, 2, 3, 5, 64, 127, 128, 1000])
def test_sliding_scores_every_target_once(seq_len, stride, extra):
    for n in {seq_len + extra, max(1, seq_len - extra), seq_len * 3 + extra}:
        plan = plan_sliding(n, seq_len, stride)
        counts, context = _coverage(plan)
        assert np.all(counts == 1), (n, seq_len, stride)
        assert plan.scored_targets == n
        # Full history for the first seq_len targets, at least seq_len - stride + 1 tokens after.
        need = np.minimum(np.arange(n) + 1, seq_len - stride + 1)
        assert np.all(context >= need)


def test_sliding_layout():
    plan = plan_sliding(40, 16, 4)  # 40 - 16 = 24 is a multiple of 4: no tail window
    assert plan.starts.tolist() == [0, 4, 8, 12, 16, 20, 24]
    assert plan.score_from.tolist() == [0] + [12] * 6
    plan = plan_sliding(42, 16, 4)  # two targets left over: one window anchored to the end
    assert plan.starts.tolist()[-2:] == [24, 26] and plan.score_from.tolist()[-1] == 14
    short = plan_sliding(7, 16, 4)  # shorter than seq_len: one shorter window
    assert (short.length, short.starts.tolist(), short.score_from.tolist()) == (7, [0], [0])


def test_standard_plan_drops_partial_window():
    plan = plan_standard(50, 16)
    assert plan.starts.tolist() == [0, 16, 32] and plan.scored_targets == 48
    counts, _ = _coverage(plan)
    assert counts[:48].tolist() == [1] * 48 and counts[48:].sum() == 0
    with pytest.raises(ValueError, match="at least seq_len"):
        plan_standard(15, 16)


def test_bad_stride():
    with pytest.raises(ValueError, match="stride"):
        plan_sliding(100, 16, 17)
    with pytest.raises(ValueError, match="stride"):
        plan_sliding(100, 16, 0)


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_rank_ranges_partition(world):
    plan = plan_sliding(1000, 32, 8)
    ranges = [plan.rank_range(r, world) for r in range(world)]
    assert ranges[0][0] == 0 and ranges[-1][1] == len(plan)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
