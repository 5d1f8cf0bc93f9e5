"""The quantize stage's two outputs belong together: ``size.json`` names its artifact's sha256.

quantize writes ``size.json`` first and the artifact last, each atomically.
A kill between the two leaves a new ``size.json`` beside the old artifact;
the artifact header carries the sha256 of its payload, and
`check_size_report` compares it with the one ``size.json`` records before
evaluate or report --export use either file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import ArtifactError
from pipeline.quant.artifact import _HEADER, HEADER_BYTES, MAGIC_PREFIX
from pipeline.stage_files import read_json_object, read_size_report


def artifact_sha256(path: Path) -> str:
    """The payload sha256 recorded in an artifact's header (the file's identity)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read artifact: {exc.strerror or exc}") from None
    if len(head) < HEADER_BYTES or not head.startswith(MAGIC_PREFIX):
        raise ArtifactError(f"{path}: not a pgolf artifact (bad or short header)")
    return _HEADER.unpack_from(head)[3].hex()


def check_size_report(artifact: Path, size_report: Path, seed: int) -> dict[str, Any]:
    """The size report, once it is known to describe `artifact` (raise ArtifactError otherwise)."""
    if not size_report.is_file():
        raise ArtifactError(f"{size_report}: missing (run `pgolf quantize --seed {seed}`)")
    read_size_report(size_report)  # readable, with the size fields later stages use
    report = read_json_object(size_report, f"run `pgolf quantize --seed {seed}`")
    recorded = report.get("artifact", {}).get("sha256") if isinstance(report.get("artifact"), dict) else None
    if not isinstance(recorded, str):
        raise ArtifactError(f"{size_report}: not a size report with artifact.sha256 "
                            f"(run `pgolf quantize --seed {seed}` again)")
    actual = artifact_sha256(artifact)
    if recorded != actual:
        raise ArtifactError(f"{size_report}: describes another artifact than {artifact} (sha256 "
                            f"{str(recorded)[:12]} vs {actual[:12]}; a quantize run was interrupted?); "
                            f"run `pgolf quantize --seed {seed}` again")
    return report
