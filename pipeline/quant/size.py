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

from pipeline.config import QuantConfig
from pipeline.errors import ArtifactError
from pipeline.records import CodeFile, SizeReport

__all__ = ["CodeFile", "SizeReport", "check_cap", "size_report"]


def size_report(
    model_bytes: int,
    cfg: QuantConfig,
    code_bytes: int,
    files: Sequence[CodeFile] = (),
    enforce: bool = True,
    modules_sha256: str = "",
    stage_digests: dict[str, str] | None = None,
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
        stage_digests=dict(stage_digests or {}),
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
