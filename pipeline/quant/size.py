"""Size accounting against the 16,000,000-byte cap (SPEC §4), counted the challenge's way.

What counts is the compressed model plus the code, and the challenge counts
the code as the bytes of the records folder's ``train_gpt.py``.  pgolf
generates that script from its own modules (`pipeline.export.script`), so
the code bytes here are the length of that generated script: the quantize
stage generates it in memory, the exported script measures its own file, and
both go through `size_report`.

Which modules the script embeds is computed from their imports
(`pipeline.export.closure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.config import QuantConfig
from pipeline.errors import ArtifactError


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def size_report(
    model_bytes: int,
    cfg: QuantConfig,
    code_bytes: int,
    files: Sequence[CodeFile] = (),
    enforce: bool = True,
    modules_sha256: str = "",
) -> SizeReport:
    """Model + code bytes against `cfg.cap_bytes`; over the cap raises unless `cfg.allow_oversize`
    (or `enforce` is False: the caller then shows the figures and calls `check_cap` itself).

    `code_bytes` is the size of the train_gpt.py that ships with the artifact
    (`pipeline.export.script.exported_script`); `files` lists the modules it embeds.
    """
    total = model_bytes + code_bytes
    report = SizeReport(
        model_bytes=model_bytes,
        code_bytes=code_bytes,
        total_bytes=total,
        cap_bytes=cfg.cap_bytes,
        headroom_bytes=cfg.cap_bytes - total,
        within_cap=total <= cfg.cap_bytes,
        files=list(files),
        modules_sha256=modules_sha256,
    )
    if enforce:
        check_cap(report, cfg)
    return report


def check_cap(report: SizeReport, cfg: QuantConfig) -> None:
    """Raise ArtifactError when `report` is over the cap and `cfg.allow_oversize` is off."""
    if not report.within_cap and not cfg.allow_oversize:
        raise ArtifactError(
            f"artifact too large: {report.model_bytes:,} model + {report.code_bytes:,} code = "
            f"{report.total_bytes:,} bytes > cap {report.cap_bytes:,} (set quant.allow_oversize to keep it anyway)"
        )
