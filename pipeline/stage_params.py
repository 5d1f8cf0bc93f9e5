"""Which params each pipeline stage reads: one list for `dvc.yaml` and the stage fingerprints.

DVC re-runs a stage when one of its `params:` keys changes; `Params.stage_digest`
fingerprints exactly those keys, so pgolf's own checks agree with DVC on what
a change touches: `--resume` compares only the train stage's digest (changing
`eval.stride` mid-run is fine), and `pgolf export` refuses a run whose train,
swa or quantize params changed since it was packed (size.json records them).
tests/test_dvc_pipeline.py checks that dvc.yaml lists exactly these keys.

A key is a top-level section (``model``: all of it) or a dotted leaf (``swa.every``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "prepare": ("data",),
    "train": ("model", "train", "swa.enabled", "swa.every", "swa.start_lrmul", "swa.max_snapshots"),
    "swa": ("swa.method", "swa.last_k", "swa.min_snapshots"),
    # model: the artifact records the model config, and the weights are checked against it.
    "quantize": ("model", "quant", "train.seq_len"),  # train.seq_len: GPTQ calibration rows
    "evaluate": ("eval", "model", "train.nproc_per_node", "train.launcher"),
    "report": ("report", "seeds"),
}

# The stages whose params shape the packed artifact; size.json records their digests.
PACKED_STAGES: tuple[str, ...] = ("train", "swa", "quantize")

# Where a stage's files live, not what they hold: left out of the stage digests, so a run
# reached through another directory (a moved or linked workspace) still resumes and exports.
LOCATION_KEYS: tuple[str, ...] = ("data.out_dir", "train.out_dir")


def fingerprint_values(params: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """`stage_values` without the `LOCATION_KEYS`: what `Params.stage_digest` hashes."""
    values = stage_values(params, stage)
    for location in LOCATION_KEYS:
        section, _, leaf = location.partition(".")
        values.pop(location, None)
        if isinstance(values.get(section), Mapping):
            values[section] = {k: v for k, v in values[section].items() if k != leaf}
    return values


def stage_values(params: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """{key: value} for each of `stage`'s keys, read from the plain params dict (`Params.to_dict()`)."""
    if stage not in STAGE_PARAMS:
        raise ValueError(f"unknown stage {stage!r}; the stages are {', '.join(STAGE_PARAMS)}")
    values: dict[str, Any] = {}
    for key in STAGE_PARAMS[stage]:
        node: Any = params
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise KeyError(f"stage {stage!r} reads params key {key!r}, which the params do not have")
            node = node[part]
        values[key] = node
    return values
