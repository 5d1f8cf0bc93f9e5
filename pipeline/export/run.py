"""The program of the exported train_gpt.py: train, average, pack, check the cap, score, log.

It calls the same functions as `pgolf train`, `swa`, `quantize` and
`evaluate`, in that order, so the same params and data give the same weights,
artifact bytes and scores.  What differs is only where things are:

- data in the challenge's layout, ``./data/datasets/fineweb10B_sp<V>/`` and
  ``./data/tokenizers/fineweb_<V>_bpe.model`` (V = vocabulary size), or where
  the challenge's environment variables DATA_PATH and TOKENIZER_PATH point;
- the run's files under ``./runs/<RUN_ID>/`` (pgolf's `RunLayout`) and the log,
  printed and written to ``./logs/<RUN_ID>.txt``, in the record scripts' line formats;
- the code bytes are the script's own file size.

SEED picks the seed (default: the first of params `seeds`); nothing else is
read from the environment: the hyperparameters are the script's PARAMS.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.distributed as dist

from pipeline import atomic
from pipeline.config import Params, params_from_dict
from pipeline.data.layout import DataLayout
from pipeline.errors import PgolfError
from pipeline.evaluate.session import Evaluator, seed_metrics
from pipeline.layout import RunLayout
from pipeline.quant.packing import pack_run, write_packed
from pipeline.quant.size import SizeReport
from pipeline.records import SeedMetrics
from pipeline.stage_files import write_seed_metrics
from pipeline.runtime import Runtime, init_runtime, shutdown_runtime
from pipeline.train.averaging import averaged_weights
from pipeline.train.loop import train
from pipeline.train.steplog import StepRow, ValRow

METRICS_FILE = "metrics.json"  # in the run directory: the per-seed figures, as `pgolf evaluate` writes them


@dataclasses.dataclass(frozen=True)
class ChallengeDataLayout(DataLayout):
    """The challenge's directories: shards in one folder, the tokenizer file elsewhere."""

    shards: Path = Path(".")
    tokenizer_file: Path = Path(".")

    @property
    def tokenizer(self) -> Path:
        return self.tokenizer_file

    @property
    def shards_dir(self) -> Path:
        return self.shards


def challenge_layout(vocab_size: int, env: Mapping[str, str]) -> ChallengeDataLayout:
    shards = env.get("DATA_PATH") or f"./data/datasets/fineweb10B_sp{vocab_size}"
    tokenizer = env.get("TOKENIZER_PATH") or f"./data/tokenizers/fineweb_{vocab_size}_bpe.model"
    return ChallengeDataLayout(root=Path(shards), shards=Path(shards), tokenizer_file=Path(tokenizer))


class Log:
    """Rank 0 prints each line and appends it to the log file."""

    def __init__(self, path: Path, enabled: bool):
        self.enabled = enabled
        self.path = path
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")

    def __call__(self, line: str) -> None:
        if not self.enabled:
            return
        print(line, flush=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def row_line(row: StepRow | ValRow, iterations: int) -> str:
    """A step-table or validation row in the record scripts' format."""
    avg = row.train_time_ms / max(row.step, 1)
    if isinstance(row, ValRow):
        head = f"step:{row.step}/{iterations} val_loss:{row.val_loss:.4f} val_bpb:{row.val_bpb:.4f}"
    else:
        head = f"step:{row.step}/{iterations} train_loss:{row.train_loss:.4f}"
    return f"{head} train_time:{row.train_time_ms:.0f}ms step_avg:{avg:.2f}ms"


def size_lines(averaged_bytes: int | None, size: SizeReport) -> list[str]:
    """The size figures in the record scripts' wording (`size` from `size_report`)."""
    lines = [] if averaged_bytes is None else [f"Serialized model: {averaged_bytes} bytes"]
    return lines + [
        f"Code size: {size.code_bytes} bytes",
        f"Serialized model int6+zstd: {size.model_bytes} bytes",
        f"Total submission size int6+zstd: {size.total_bytes} bytes (cap {size.cap_bytes}, "
        f"headroom {size.headroom_bytes})",
    ]


def final_lines(metrics: SeedMetrics, stride: int) -> list[str]:
    """The scores of `seed_metrics` in the record scripts' wording, rounded and exact."""
    lines = []
    for label, key in (("final_prequant", "prequant_final_standard"), ("final_int6_roundtrip", "int6_standard"),
                       ("final_int6_sliding_window", "sliding")):
        figures = getattr(metrics, key)
        loss, bpb = figures.loss, figures.bpb
        extra = f" stride:{stride}" if key == "sliding" else ""
        lines.append(f"{label} val_loss:{loss:.4f} val_bpb:{bpb:.4f}{extra} "
                     f"eval_time:{1000 * figures.seconds:.0f}ms")
        lines.append(f"{label}_exact val_loss:{loss:.8f} val_bpb:{bpb:.8f}")
    return lines


def _agree(ok: bool, rt: Runtime) -> bool:
    """Rank 0's verdict on every rank (the others wait for it instead of hanging in a collective)."""
    if not rt.distributed:
        return ok
    flag = [ok]
    dist.broadcast_object_list(flag, src=0)
    return bool(flag[0])


def run(p: Params, seed: int, data: DataLayout, layout: RunLayout, script: Path, rt: Runtime, log: Log) -> SeedMetrics:
    """One seed from scratch to its metrics (rank 0 writes every file)."""
    iterations = p.train.iterations
    code = script.stat().st_size
    if code >= p.quant.cap_bytes and not p.quant.allow_oversize:
        raise PgolfError(f"{script.name} is {code:,} bytes: at or over the {p.quant.cap_bytes:,}-byte cap "
                         f"(quant.cap_bytes) before any model byte; refusing to train")
    log(f"pgolf export: params {p.digest()[:12]} seed:{seed} world_size:{rt.world_size} device:{rt.device_name()}")
    log(f"train_shards:{len(data.train_files())} val_shards:{len(data.val_files())} tokenizer:{data.tokenizer}")
    summary = train(p, seed, data, layout.run_dir, rt, progress=False, on_row=lambda r: log(row_line(r, iterations)))
    log(f"stopping at step:{summary.steps}/{iterations} train_time:{1000 * summary.train_seconds:.0f}ms "
        f"({summary.stopped_by}); peak memory allocated: {summary.peak_memory_bytes // 2**20} MiB")
    ok, error = True, ""
    if rt.is_main:
        try:
            state, info = averaged_weights(layout, p.swa)
            atomic.torch_save(state, layout.averaged)
            log(f"averaged: {info['method']} over {len(info.get('snapshot_steps') or [])} snapshot(s)")
            packed = pack_run(layout, p, seed, script.read_bytes())
            for line in size_lines(layout.averaged.stat().st_size, packed.size):
                log(line)
            write_packed(layout, packed, p.quant)
        except PgolfError as exc:
            ok, error = False, str(exc)
    if not _agree(ok, rt):
        raise PgolfError(error or "rank 0 failed to average or pack the weights")
    rt.barrier()
    ev = Evaluator(p.model, p.eval, data, rt)
    metrics = dataclasses.replace(seed_metrics(ev, layout), seed=seed, eval=dataclasses.asdict(p.eval))
    for line in final_lines(metrics, p.eval.stride):
        log(line)
    if rt.is_main:
        write_seed_metrics(layout.run_dir / METRICS_FILE, metrics)
    return metrics


def main(params: Mapping[str, Any], script_path: str, env: Mapping[str, str] | None = None) -> None:
    """Entry point of train_gpt.py: PARAMS (a literal of pgolf's Params), the script's own path."""
    env = os.environ if env is None else env
    rt = None
    try:
        p = params_from_dict(dict(params))
        seed_text = env.get("SEED") or str(p.seeds[0])
        if not seed_text.isdigit():
            raise PgolfError(f"SEED: expected a non-negative integer, got {seed_text!r}")
        seed = int(seed_text)
        run_id = env.get("RUN_ID") or f"seed_{seed}"
        rt = init_runtime()
        log = Log(Path("logs") / f"{run_id}.txt", rt.is_main)
        t0 = time.perf_counter()
        run(p, seed, challenge_layout(p.model.vocab_size, env), RunLayout(Path("runs") / run_id),
            Path(script_path), rt, log)
        log(f"total wall time: {time.perf_counter() - t0:.1f}s")
    except PgolfError as exc:
        if rt is None or rt.is_main:
            print(f"train_gpt.py: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        if rt is not None:
            shutdown_runtime(rt)
