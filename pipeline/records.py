"""The typed records one stage hands to the next, as the library returns them.

    TrainSummary   train_summary.json          `pipeline.train.loop.train`
    SizeReport     size.json's "size" section   `pipeline.quant.size.size_report`
    SeedMetrics    metrics/seeds/seed_N.json    `pipeline.evaluate.session.seed_metrics`

Each has `to_dict()`, the JSON the stage writes (the keys README.md documents;
DVC shows them as metrics).  Reading them back, with every way a file can be
damaged turned into one line naming it, is `pipeline.stage_files`'s job; no
other module reads these files by string keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class CodeFile:
    path: str  # relative to the source root (the directory holding `pipeline/`), POSIX separators
    bytes: int


@dataclass(frozen=True)
class SizeReport:
    model_bytes: int
    code_bytes: int
    total_bytes: int
    cap_bytes: int
    headroom_bytes: int  # cap - total; negative when over the cap
    within_cap: bool
    files: list[CodeFile] = field(default_factory=list)
    modules_sha256: str = ""  # of the pgolf modules train_gpt.py embeds (the export checks they still match)
    # Params digest of each stage that shaped the artifact (train, swa, quantize; `Params.stage_digest`):
    # the export refuses a run whose stages' params have changed since.
    stage_digests: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainSummary:
    """One seed's training run (train_summary.json)."""

    seed: int
    world_size: int
    device: str
    steps: int
    stopped_by: str  # "iterations" | "wallclock"
    train_seconds: float
    mean_step_ms: float
    tokens_seen: int
    tokens_per_second: float
    compile_warmup_seconds: float
    peak_memory_bytes: int
    qat_step: int | None
    snapshot_steps: list[int]
    params_digest: str
    final_train_loss: float
    # sha256 of final.pt and both logs, by run-relative name (`pipeline.train.outputs`); set when written.
    outputs_sha256: dict[str, str] = field(default_factory=dict)
    # Step at which depth recurrence switched on (model.recurrence); None without it.
    loop_step: int | None = None
    # The process group's backend (nccl | gloo) when training took the distributed path (several
    # processes, or one started by torchrun: train.launcher); None for one plain process.
    process_group: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Figures:
    """Loss (nats/token), bpb, tokens scored and seconds of one evaluation pass."""

    loss: float
    bpb: float
    tokens: int
    seconds: float

    def to_dict(self, prefix: str) -> dict[str, Any]:
        return {f"{prefix}_{k}": v for k, v in asdict(self).items()}


# The evaluation passes of a seed, in the order the metrics file lists them (SPEC §5).
PASSES = ("prequant_final_standard", "prequant_averaged_standard", "int6_standard", "sliding")


@dataclass(frozen=True)
class SeedMetrics:
    """One seed's figures (metrics/seeds/seed_N.json); `sliding.bpb` is the score."""

    prequant_final_standard: Figures
    prequant_averaged_standard: Figures
    int6_standard: Figures
    sliding: Figures
    steps: int
    train_seconds: float
    mean_step_ms: float
    model_bytes: int
    code_bytes: int
    total_bytes: int
    seed: int | None = None
    # eval.ttt's figures (ttt_loss, ttt_bpb, ttt_tokens, ttt_seconds, ttt_budget_seconds, ttt_within_budget);
    # None when eval.ttt.mode is off.
    ttt: dict[str, Any] | None = None
    eval: dict[str, Any] | None = None  # the eval params it was scored with
    provenance: dict[str, Any] | None = None

    @property
    def sliding_bpb(self) -> float:
        return self.sliding.bpb

    @property
    def sliding_loss(self) -> float:
        return self.sliding.loss

    def with_run(self, seed: int | None, eval_params: dict[str, Any], provenance: dict[str, Any]) -> SeedMetrics:
        return dataclasses.replace(self, seed=seed, eval=eval_params, provenance=provenance)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {} if self.seed is None else {"seed": self.seed}
        for name in PASSES:
            out.update(getattr(self, name).to_dict(name))
        if self.ttt is not None:
            out.update(self.ttt)
        for name in ("steps", "train_seconds", "mean_step_ms", "model_bytes", "code_bytes", "total_bytes"):
            out[name] = getattr(self, name)
        if self.eval is not None:
            out["eval"] = self.eval
        if self.provenance is not None:
            out["provenance"] = self.provenance
        return out
