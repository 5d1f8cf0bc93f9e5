"""Per-stage params fingerprints: one list of each stage's params keys (pipeline/stage_params.py)."""

from __future__ import annotations

import dataclasses

import pytest

from pipeline.errors import TrainingError
from pipeline.stage_params import STAGE_PARAMS, stage_values


def _with(p, section: str, **changes):
    return dataclasses.replace(p, **{section: dataclasses.replace(getattr(p, section), **changes)})


def test_a_stage_digest_moves_only_with_that_stages_params(record_params):
    base = {stage: record_params.stage_digest(stage) for stage in STAGE_PARAMS}

    def moved(p) -> set[str]:
        return {stage for stage in STAGE_PARAMS if p.stage_digest(stage) != base[stage]}

    assert moved(_with(record_params, "eval", stride=32)) == {"evaluate"}
    assert moved(_with(record_params, "train", matrix_lr=0.03)) == {"train"}
    assert moved(_with(record_params, "train", nproc_per_node=4)) == {"train", "evaluate"}
    assert moved(_with(record_params, "swa", every=10)) == {"train"}
    assert moved(_with(record_params, "swa", last_k=3)) == {"swa"}
    assert moved(_with(record_params, "quant", zstd_level=3)) == {"quantize"}
    assert moved(_with(record_params, "model", num_layers=9)) == {"train", "quantize", "evaluate"}
    assert moved(dataclasses.replace(record_params, seeds=(1, 2))) == {"report"}
    assert moved(_with(record_params, "report", p_threshold=0.05)) == {"report"}
    # Where the files live is not what they hold: a moved workspace resumes and exports.
    assert moved(_with(_with(record_params, "train", out_dir="elsewhere/runs"), "data", out_dir="d")) == set()


def test_stage_values_read_dotted_keys(record_params):
    values = stage_values(record_params.to_dict(), "swa")
    assert values == {"swa.method": "snapshots", "swa.last_k": 0, "swa.min_snapshots": 2}
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        record_params.stage_digest("nope")


def test_resume_compares_only_the_train_stage(record_params, embedded_data, tmp_path):
    """A checkpoint resumes after an eval/quant change; a train param change refuses it."""
    from pipeline.runtime import detect_runtime
    from pipeline.train.loop import Trainer
    from tests.train.helpers import tiny_params

    p = tiny_params(record_params, embedded_data.layout.root, tmp_path)
    run_dir = tmp_path / "run"

    def trainer(params) -> Trainer:
        return Trainer(params, 1, embedded_data.layout.root, run_dir, detect_runtime(), progress=False)

    trainer(p).save_checkpoint()
    later = _with(_with(p, "eval", stride=32), "quant", zstd_level=3)
    trainer(later).resume()  # no error
    with pytest.raises(TrainingError, match="made with different params for the train stage"):
        trainer(_with(p, "train", matrix_lr=0.03)).resume()


def test_export_refuses_a_run_whose_packed_stages_params_changed(record_params, tmp_path):
    """size.json records the train, swa and quantize digests; the export compares them."""
    import json

    from pipeline.errors import PgolfError
    from pipeline.quant.size import size_report
    from pipeline.stage_files import read_size_report
    from pipeline.stage_params import PACKED_STAGES
    from pipeline.submission import check_packed_with

    report = size_report(1000, record_params.quant, 200, modules_sha256="c" * 64,
                         stage_digests=record_params.stage_digests(PACKED_STAGES))
    path = tmp_path / "size.json"
    path.write_text(json.dumps({"artifact": {}, "size": report.to_dict()}))
    assert read_size_report(path) == report
    check_packed_with(path, "1", "c" * 64, record_params)
    check_packed_with(path, "1", "c" * 64, _with(record_params, "eval", stride=32))  # evaluate re-runs; fine
    for changed, stage in ((_with(record_params, "train", matrix_lr=0.03), "train"),
                           (_with(record_params, "swa", last_k=2), "swa"),
                           (_with(record_params, "quant", zstd_level=3), "quantize")):
        with pytest.raises(PgolfError, match=f"seed 1 was made with other params for the {stage} stage"):
            check_packed_with(path, "1", "c" * 64, changed)
    with pytest.raises(PgolfError, match="was packed by other pgolf code"):
        check_packed_with(path, "1", "d" * 64, record_params)
