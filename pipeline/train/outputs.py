"""The train stage's outputs belong together: a kill while writing them cannot pair old with new.

Training writes three outputs (`RunLayout`): the ``train/`` directory and, beside
it, the ``dvclive/`` curves and ``train_summary.json`` (small files git keeps for
DVC's plots and metrics, so they cannot live inside the cached ``train/``).  They
are written in this order: the weights into a temporary directory, the curves
(swapped in whole), the summary (which records the sha256 of the new
``final.pt`` and of every curve file), and last the directory is swapped in.  A kill anywhere leaves either everything old, or a
summary whose digests do not match the files beside it, which
`check_train_outputs` refuses with one line before anything reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.data.manifest import file_sha256
from pipeline.errors import TrainingError
from pipeline.layout import RunLayout

DIGESTS_KEY = "outputs_sha256"


def output_digests(layout: RunLayout, weights: Path) -> dict[str, str]:
    """sha256 of the new final weights (at `weights`, not yet in place) and of every file of the
    curves (when written), by run-relative name."""
    digests = {f"{layout.train_dir.name}/{layout.final_weights.name}": file_sha256(weights)}
    if layout.live_dir.is_dir():
        for path in sorted(p for p in layout.live_dir.rglob("*") if p.is_file()):
            digests[path.relative_to(layout.run_dir).as_posix()] = file_sha256(path)
    return digests


def check_train_outputs(layout: RunLayout, seed: int) -> dict[str, Any]:
    """The train summary, once its recorded digests match the files beside it."""
    path = layout.train_summary
    if not path.is_file():
        raise TrainingError(f"{path}: missing (run `pgolf train --seed {seed}` first)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        digests = summary[DIGESTS_KEY]
        items = list(digests.items())
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
        raise TrainingError(f"{path}: not a train summary with {DIGESTS_KEY!r} "
                            f"(run `pgolf train --seed {seed}` again)") from None
    for name, expected in items:
        target = layout.run_dir / name
        actual = file_sha256(target) if target.is_file() else None
        if actual != expected:
            raise TrainingError(f"{path}: does not belong with {target} (sha256 differs; a train run was "
                                f"interrupted while writing?); run `pgolf train --seed {seed}` again")
    return summary


def ready_train_outputs(layout: RunLayout, world_size: int) -> None:
    """Before training: undo what a killed earlier run left and refuse a ``train/`` pgolf did not write.

    Removes stale temp files next to each output and next to each rank's resume
    checkpoint (the checkpoints themselves stay: `--resume` needs them).
    """
    from pipeline.atomic import check_replaceable, clean_stale
    from pipeline.train.checkpoint import checkpoint_path

    for output in (layout.live_dir, layout.train_summary):
        clean_stale(output)
    for rank in range(world_size):
        clean_stale(checkpoint_path(layout.work_dir, rank))
    check_replaceable(layout.train_dir, "train")
    check_replaceable(layout.live_dir, "curves")
