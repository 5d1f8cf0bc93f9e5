"""The per-step training table and validation table (TSV, drawable by `dvc plots`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pipeline import atomic


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


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def render_tsv(rows: list, row_type: type) -> str:
    header = "\t".join(f.name for f in fields(row_type))
    lines = [header] + ["\t".join(_format(v) for v in asdict(r).values()) for r in rows]
    return "\n".join(lines) + "\n"


def write_tsv(path: Path, rows: list, row_type: type) -> None:
    atomic.write_text(path, render_tsv(rows, row_type))


def read_tsv(path: Path) -> list[dict[str, float]]:
    """Read a table written by `write_tsv` back as dicts of numbers."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, (float(v) for v in line.split("\t")))) for line in lines[1:] if line]
