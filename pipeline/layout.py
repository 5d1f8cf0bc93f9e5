"""Where each stage writes: one seed's files (`runs/seed_N/...`) and the metrics.

    train/              weights written when training ends (final.pt, snapshots.pt, ema.pt)
    dvclive/            curves: step metrics, metrics.json, their dvc.yaml  } written with train/, small
    train_summary.json  steps, time, memory, output digests                 } files git keeps (cache: false)
    work/               resume checkpoints (not a DVC output; its checkpoints removed when training ends)
    .pgolf-lock         the run lock (`pipeline.locks`), held by train, swa and quantize
    averaged.pt         swa stage output
    model.int6.ptz      quantize stage output, with size.json
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def seed_dir(runs_dir: Path, seed: int) -> Path:
    return Path(runs_dir) / f"seed_{seed}"


@dataclass(frozen=True)
class RunLayout:
    run_dir: Path

    @property
    def train_dir(self) -> Path:
        return self.run_dir / "train"

    @property
    def work_dir(self) -> Path:
        return self.run_dir / "work"

    @property
    def final_weights(self) -> Path:
        return self.train_dir / "final.pt"

    @property
    def snapshots(self) -> Path:
        return self.train_dir / "snapshots.pt"

    @property
    def ema_weights(self) -> Path:
        return self.train_dir / "ema.pt"

    @property
    def live_dir(self) -> Path:
        """The seed's dvclive directory (`pipeline.train.curves`)."""
        return self.run_dir / "dvclive"

    @property
    def train_summary(self) -> Path:
        return self.run_dir / "train_summary.json"

    @property
    def averaged(self) -> Path:
        return self.run_dir / "averaged.pt"

    @property
    def artifact(self) -> Path:
        return self.run_dir / "model.int6.ptz"

    @property
    def size_report(self) -> Path:
        return self.run_dir / "size.json"

    def clear_work(self) -> None:
        """Remove the resume checkpoints (and what killed writes of them left); nothing else.

        The directory itself goes only if that leaves it empty: a file of the user's stays.
        """
        from pipeline.atomic import clean_stale
        from pipeline.train.checkpoint import is_checkpoint_name

        if not self.work_dir.is_dir():
            return
        for entry in self.work_dir.iterdir():
            base = entry.name[1:].split(".pt.", 1)[0] + ".pt" if entry.name.startswith(".") else entry.name
            if not is_checkpoint_name(base):
                continue
            clean_stale(self.work_dir / base)  # temp files of killed checkpoint writes
            if entry.name == base and entry.is_file() and not entry.is_symlink():
                entry.unlink()
        try:
            self.work_dir.rmdir()
        except OSError:  # not empty: something that is not ours
            pass


@dataclass(frozen=True)
class MetricsLayout:
    """Evaluation metrics per seed and the multi-seed summary (`metrics/...`)."""

    root: Path = Path("metrics")

    def seed(self, seed: int) -> Path:
        return self.root / "seeds" / f"seed_{seed}.json"

    @property
    def seeds_dir(self) -> Path:
        return self.root / "seeds"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def summary_table(self) -> Path:
        return self.root / "summary.md"
