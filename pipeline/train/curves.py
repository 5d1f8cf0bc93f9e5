"""Training curves through dvclive: one dvclive directory per seed, written by rank 0.

Why dvclive: it writes the step metrics in the layout DVC reads without any
declaration in the root dvc.yaml (``plots/metrics/<name>.tsv``, ``metrics.json``
with the latest values and the run's summary figures) and, beside them, a
``dvc.yaml`` of its own that declares both.  DVC finds every ``dvc.yaml`` in the
workspace, so ``dvc plots show`` and ``dvc exp show`` follow the seed
directories that exist, whatever seeds ``params.yaml`` lists at the time (after
``scripts/smoke`` it lists the record's, while ``runs/`` holds the smoke run's).

Layout of ``runs/seed_N/dvclive/`` (`RunLayout.live_dir`)::

    dvc.yaml                          metrics: [metrics.json]; plots: plots/metrics (x: step)
    metrics.json                      last value of every curve + the summary figures (SUMMARY_KEYS)
    plots/metrics/train/<field>.tsv   one per `StepRow` field: train_loss, lr_mul, momentum, ...
    plots/metrics/val/<field>.tsv     one per `ValRow` field: val_loss, val_bpb, train_time_ms

Each TSV has the columns ``step`` and the field.  The directory is built under a
temporary name and swapped into place (`pipeline.atomic.atomic_dir`), so a kill
leaves the previous curves or the new ones.  Reading back (`read_curves`) needs
no dvclive: the export renders its logs from these files.
"""

from __future__ import annotations

import math
import os
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from pipeline import atomic
from pipeline.errors import PgolfError
from pipeline.progress import write_line
from pipeline.train.steplog import CurveWriter, StepRow, ValRow

MARKER_KIND = "curves"
TRAIN, VAL = "train", "val"
# Figures of the train summary copied into metrics.json (numbers only; `dvc exp show` columns).
SUMMARY_KEYS = ("steps", "train_seconds", "mean_step_ms", "tokens_per_second", "compile_warmup_seconds",
                "peak_memory_bytes", "qat_step", "final_train_loss")

__all__ = ["CurveWriter", "read_curves", "write_curves"]


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_curves(live_dir: Path, step_rows: Sequence[StepRow], val_rows: Sequence[ValRow],
                 summary: dict[str, Any]) -> None:
    """Write the seed's dvclive directory at `live_dir` from the run's rows and summary."""
    try:
        from dvclive import Live
    except ImportError:
        raise PgolfError("dvclive is not installed; the train stage writes its curves with it: "
                         "pip install -e '.[dvc]'") from None

    class FilesOnly(Live):
        """dvclive's files without its repository integration: outside a DVC repository that
        integration runs `dvc init` in the enclosing git repository, it fails in a git
        repository without commits, and the stage's outputs are DVC's to record anyway."""

        def _init_dvc(self) -> None:
            self._dvc_file = self._init_dvc_file()

    rows: list[tuple[int, int, str, StepRow | ValRow]] = [(r.step, 0, TRAIN, r) for r in step_rows]
    rows += [(r.step, 1, VAL, r) for r in val_rows]
    rows.sort(key=lambda t: t[:2])
    with atomic.atomic_dir(live_dir, kind=MARKER_KIND) as tmp:
        live = FilesOnly(str(tmp), dvcyaml=str(tmp / "dvc.yaml"), save_dvc_exp=False, report=None)
        for step, _, group, row in rows:
            live.step = step
            for f in fields(row):
                if f.name != "step":
                    live.log_metric(f"{group}/{f.name}", getattr(row, f.name))
        for key in SUMMARY_KEYS:
            if _number(summary.get(key)):
                live.summary[key] = summary[key]
        live.end()
    _stage_for_experiment(Path(live_dir) / "dvc.yaml")


def _stage_for_experiment(dvcyaml: Path) -> None:
    """Run as a DVC stage, `git add` the directory's dvc.yaml, as dvclive does itself there.

    DVC commits an experiment with the files git tracks plus the metrics and plots
    the dvc.yaml files declare; a dvc.yaml new in this run would be left out of the
    commit, and with it the curves from `dvc exp show` and `dvc plots diff`.
    DVC_ROOT is set for every stage command (`dvc repro`, `dvc exp run` in the
    workspace or queued); `dvc exp run` in the workspace sets no variable of its own.
    """
    if not os.environ.get("DVC_ROOT"):
        return
    try:
        result = subprocess.run(["git", "add", "--", dvcyaml.name], cwd=dvcyaml.parent, capture_output=True,
                                text=True)
        problem = result.stderr.strip() if result.returncode != 0 else ""
    except OSError as exc:  # no git program (DVC itself may run on dulwich/pygit2)
        problem = f"cannot run git: {exc.strerror or exc}"
    if problem:
        write_line(f"pgolf: warning: could not `git add` {dvcyaml} for the experiment commit: {problem}")


def _read_tsv(path: Path, name: str) -> dict[int, float]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or lines[0].split("\t")[-2:] != ["step", name]:
        raise PgolfError(f"{path}: not a dvclive metric file with columns step, {name}")
    out: dict[int, float] = {}
    for line in lines[1:]:
        if line:
            cells = line.split("\t")
            out[int(cells[-2])] = float(cells[-1])
    return out


def _read_group(live_dir: Path, group: str, row_type: type) -> list:
    folder = Path(live_dir) / "plots" / "metrics" / group
    names = [f.name for f in fields(row_type) if f.name != "step"]
    if not folder.is_dir():
        return []
    columns = {}
    for name in names:
        path = folder / f"{name}.tsv"
        if not path.is_file():
            raise PgolfError(f"{path}: missing (run `pgolf train` again)")
        columns[name] = _read_tsv(path, name)
    steps = sorted(columns[names[0]])
    ints = {f.name for f in fields(row_type) if f.type in (int, "int")}
    rows = []
    for step in steps:
        missing = [n for n in names if step not in columns[n]]
        if missing:
            raise PgolfError(f"{folder}: step {step} is missing from {missing[0]}.tsv")
        values = {n: columns[n][step] for n in names}
        rows.append(row_type(step=step, **{n: (int(v) if n in ints and math.isfinite(v) else v)
                                           for n, v in values.items()}))
    return rows


def read_curves(live_dir: Path) -> tuple[list[StepRow], list[ValRow]]:
    """The step table and the validation table, read back from a dvclive directory."""
    return _read_group(live_dir, TRAIN, StepRow), _read_group(live_dir, VAL, ValRow)
