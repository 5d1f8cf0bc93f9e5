"""conf/profile/gpu_check.yaml: the record run cut to one short device call (issue 20's
end-to-end check) -- the record's model, compile and evaluation unchanged, every
late-training stage reached, no download."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Params, load_params
from pipeline.optim.schedule import lr_multiplier
from pipeline.train.averaging import snapshot_due
from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Params, Params]:
    out = tmp_path_factory.mktemp("gpu_check") / "params.yaml"
    load_script("scripts/compose-params").compose(out, ["profile=gpu_check"])
    return load_params(out), load_params(ROOT / "params.yaml")


def test_the_record_model_quantisation_and_evaluation_unchanged(pair):
    check, record = pair
    d = check.to_dict()
    r = record.to_dict()
    for section in ("model", "quant", "eval"):
        assert d[section] == r[section], section
    assert check.train.compile and check.train.seq_len == record.train.seq_len == 2048
    assert check.eval.stride == 64
    assert check.swa.method == "snapshots" and check.train.qat_enabled


def test_one_gpu_one_seed_no_download_fixed_steps(pair):
    check, _ = pair
    t = check.train
    assert check.seeds == (1337,) or list(check.seeds) == [1337]
    assert t.nproc_per_node == 1
    assert check.data.source == "embedded"
    assert t.max_wallclock_seconds == 0  # the same steps on an H100 and an H200
    assert 200 <= t.iterations <= 500
    # 8 micro-batches (one GPU) of whole sequences.
    assert t.train_batch_tokens % (8 * t.seq_len) == 0 and t.train_batch_tokens // 8 >= t.seq_len
    assert 0 < t.val_loss_every < t.iterations


def test_swa_snapshots_and_late_qat_happen_before_the_end(pair):
    check, _ = pair
    t, s = check.train, check.swa
    muls = [lr_multiplier(step, 0.0, t) for step in range(t.iterations)]
    qat_steps = [i for i, mul in enumerate(muls) if mul < t.qat_threshold]
    # The loop's rule: lr_mul of step i decides the snapshot taken after it (step i + 1).
    snapshots = [i + 1 for i, mul in enumerate(muls) if snapshot_due(i + 1, mul, s)]
    assert qat_steps and t.iterations - qat_steps[0] >= 10, "QAT must run for several steps"
    assert len(snapshots) >= max(3, s.min_snapshots), snapshots
    assert s.max_snapshots == 0 or s.max_snapshots >= len(snapshots)
