"""One seed's averaged weights -> artifact + size report: the quantize stage and the exported script.

Packing and writing are separate steps so the caller can show the figures
before the cap is enforced: nothing is written for an artifact over the cap
(unless quant.allow_oversize).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from pipeline import atomic
from pipeline.config import Params, QuantConfig
from pipeline.errors import ArtifactError
from pipeline.layout import RunLayout
from pipeline.quant.artifact import ArtifactStats, pack_artifact
from pipeline.quant.methods import get_method
from pipeline.quant.size import CodeFile, SizeReport, check_cap, size_report
from pipeline.stage_files import read_state_dict, write_size_json
from pipeline.stage_params import PACKED_STAGES
from pipeline.weights_check import check_weights


@dataclass(frozen=True)
class PackedRun:
    blob: bytes
    stats: ArtifactStats
    size: SizeReport


def pack_run(layout: RunLayout, params: Params, seed: int, code: bytes,
             code_files: Sequence[CodeFile] = (), modules_sha256: str = "") -> PackedRun:
    """Quantise and compress `layout.averaged` and measure it, with `code` (the bytes of
    train_gpt.py), against the cap (not enforced yet)."""
    if not layout.averaged.is_file():
        raise ArtifactError(f"{layout.averaged}: missing (run `pgolf swa --seed {seed}` first)")
    state = read_state_dict(layout.averaged, f"run `pgolf swa --seed {seed}` first")
    check_weights(state, params.model, layout.averaged)  # finite, and the configured model's names and shapes
    meta = {"seed": seed, "params_digest": params.digest(), "model": dataclasses.asdict(params.model)}
    blob, stats = pack_artifact(state, params.quant, meta, method_inputs(params, state))
    size = size_report(len(blob), params.quant, len(code), code_files, enforce=False,
                       modules_sha256=modules_sha256, stage_digests=params.stage_digests(PACKED_STAGES))
    return PackedRun(blob, stats, size)


def method_inputs(params: Params, state: Mapping[str, Tensor]) -> dict[str, Any]:
    """What `quant.method` declares it needs (`pipeline.quant.methods.KNOWN_INPUTS`), built here."""
    inputs: dict[str, Any] = {}
    if "model" in get_method(params.quant.method).needs:
        from pipeline.model import GPT

        model = GPT(params.model)
        model.load_state_dict(state)
        inputs["model"] = model.eval()
    return inputs


def write_packed(layout: RunLayout, packed: PackedRun, cfg: QuantConfig) -> None:
    """Enforce the cap (ArtifactError, nothing written), then write size.json
    ({"artifact": stats, "size": size report}) and the artifact, each atomically.

    size.json first, naming the new artifact's sha256, the artifact last: a kill
    between the two leaves a pair that `pipeline.quant.pairing` refuses to use.
    """
    check_cap(packed.size, cfg)
    write_size_json(layout.size_report, packed.stats.to_dict(), packed.size)
    atomic.write_bytes(layout.artifact, packed.blob)
