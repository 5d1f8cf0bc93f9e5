"""The rows of the per-step training table and of the validation table.

The train stage writes them as dvclive curves (`pipeline.train.curves`); the
exported script prints them as log lines (`pipeline.export.logfmt`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class StepRow:
    step: int
    train_loss: float
    lr_mul: float
    momentum: float
    step_ms: float
    tokens_per_s: float
    qat: int
    train_time_ms: float


@dataclass(frozen=True)
class ValRow:
    step: int
    val_loss: float
    val_bpb: float
    train_time_ms: float


# Writes a seed's curves (its dvclive directory, `pipeline.train.curves.write_curves`) from
# the rows and the summary; the train stage passes one to `pipeline.train.loop.train`.
CurveWriter = Callable[[Path, Sequence[StepRow], Sequence[ValRow], dict[str, Any]], None]
