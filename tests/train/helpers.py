"""Tiny, fast training configurations on the prepared embedded corpus."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import Params, params_from_dict
from tests.conftest import tiny_model_config

SEQ_LEN = 64
SEQS_PER_MICRO_STEP = 2  # global batch = 8 micro-steps x 2 sequences x 64 tokens


def link_data(data_dir: Path, workspace: Path) -> Path:
    """`workspace/data`, a symlink to a prepared data directory shared between tests.

    Stages refuse output directories outside the workspace (the params file's
    directory); the link puts the shared corpus inside it without copying.
    """
    link = Path(workspace) / "data"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path(data_dir).resolve(), target_is_directory=True)
    return link


def tiny_params(record: Params, data_dir: Path, runs_dir: Path, train: dict[str, Any] | None = None,
                swa: dict[str, Any] | None = None, seeds: tuple[int, ...] = (1,),
                workspace: Path | None = None) -> Params:
    """The record params shrunk to seconds on CPU (every feature still on), validated.

    With `workspace` (where the params file will be written, for the CLI) the data
    directory is reached through a link inside it (`link_data`).
    """
    if workspace is not None:
        data_dir = link_data(data_dir, workspace)
    base_train = dict(
        nproc_per_node=1, train_batch_tokens=8 * SEQS_PER_MICRO_STEP * SEQ_LEN, seq_len=SEQ_LEN,
        iterations=24, max_wallclock_seconds=0.0, warmup_steps=0, warmdown_iters=12, log_every=1,
        val_loss_every=0, val_max_tokens=2048, compile=False, out_dir=str(runs_dir),
        muon_momentum_warmup_steps=10, checkpoint_every=0,
    )
    base_train.update(train or {})
    base_swa = dict(every=2, start_lrmul=0.5, max_snapshots=3)
    base_swa.update(swa or {})
    p = dataclasses.replace(
        record,
        seeds=seeds,
        data=dataclasses.replace(record.data, source="embedded", out_dir=str(data_dir)),
        model=tiny_model_config(record.model),
        train=dataclasses.replace(record.train, **base_train),
        swa=dataclasses.replace(record.swa, **base_swa),
        eval=dataclasses.replace(record.eval, seq_len=SEQ_LEN, stride=16, batch_seqs=8, max_tokens=2048),
    )
    return params_from_dict(p.to_dict())


def write_params(p: Params, path: Path) -> Path:
    path.write_text(yaml.safe_dump(p.to_dict(), sort_keys=False))
    return path
