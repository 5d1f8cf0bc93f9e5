"""The training loop of SPEC §3, the same on one CPU process and on 8 GPUs.

One step: `8 / world_size` micro-batches (gradients synchronised on the last),
LR multiplier and Muon momentum from the schedules, global-norm clip, the
optimiser step; then late QAT, SWA snapshots and EMA by their rules.  Timed
training excludes compile warm-up, validation and checkpoint writing.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import math
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel as DDP
from pipeline import atomic
from pipeline.config import Params
from pipeline.data.layout import as_data_layout
from pipeline.data.documents import DocumentLoader
from pipeline.data.loader import DistributedTokenLoader
from pipeline.data.tokenizer import load_tokenizer
from pipeline.errors import TrainingError
from pipeline.model import GPT
from pipeline.model.attention import CU_SEQLENS_BUCKET, Segments
from pipeline.optim import build_optimizers, lr_multiplier, muon_momentum, training_frac
from pipeline.progress import progress_bar, write_line
from pipeline.runtime import Runtime
from pipeline.train.averaging import EMA, SnapshotKeeper, snapshot_due
from pipeline.train.checkpoint import load_checkpoint, save_checkpoint
from pipeline.train.clock import TrainClock
from pipeline.records import TrainSummary
from pipeline.stage_files import write_train_summary
from pipeline.train.outputs import output_digests
from pipeline.train.qat import configure_qat
from pipeline.layout import RunLayout
from pipeline.train.steplog import CurveWriter, StepRow, ValRow
from pipeline.train.validation import Validator

GRAD_ACCUM_BASE = 8  # SPEC §1: grad_accum_steps = 8 / world_size


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def wrap_ddp(model: nn.Module, rt: Runtime) -> nn.Module:
    """DDP without per-forward buffer broadcasts (the buffers, QAT flags and rotary tables,
    are identical on every rank); the keyword changed name in recent torch releases."""
    ids = [rt.device.index] if rt.is_cuda else None
    if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters:
        return DDP(model, device_ids=ids, forward_sync_buffers=False)
    return DDP(model, device_ids=ids, broadcast_buffers=False)


@dataclass
class LoopState:
    """Everything about progress that a checkpoint must restore."""

    step: int = 0
    qat_step: int | None = None
    # Step at which depth recurrence (model.recurrence) switched on.
    loop_step: int | None = None
    stop_after_step: int | None = None
    nonfinite_step: int | None = None
    step_rows: list[StepRow] = field(default_factory=list)
    val_rows: list[ValRow] = field(default_factory=list)


class _TermFlag:
    """Set by SIGTERM/SIGINT; the loop checkpoints at the next agreed step and exits."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_TermFlag":
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. some test runners)
                pass
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)


class Interrupted(Exception):
    """Training was asked to stop (SIGTERM); a checkpoint was written."""

    def __init__(self, step: int, path: Path):
        super().__init__(f"interrupted at step {step}; checkpoint written to {path} (resume with --resume)")
        self.step = step
        self.path = path


class Trainer:
    def __init__(self, params: Params, seed: int, data_dir: Path, run_dir: Path, rt: Runtime, progress: bool = True,
                 on_row: Callable[[StepRow | ValRow], None] | None = None):
        self.params = params
        self.cfg = params.train
        self.seed = seed
        self.rt = rt
        self.layout = RunLayout(Path(run_dir))
        self.progress = progress and rt.is_main
        if GRAD_ACCUM_BASE % rt.world_size:
            raise TrainingError(f"world size {rt.world_size} must divide {GRAD_ACCUM_BASE}")
        self.grad_accum = GRAD_ACCUM_BASE // rt.world_size

        seed_everything(seed)
        self.model = GPT(params.model).to(rt.device)
        self.model.set_looping(False)  # depth recurrence starts at model.recurrence.enable_at
        configure_qat(self.model, self.cfg.qat_targets, params.quant)  # before compiling: fixes the QAT grids
        self.compiled = torch.compile(self.model, fullgraph=True, dynamic=False) if self.cfg.compile else self.model
        self.ddp = wrap_ddp(self.compiled, rt) if rt.distributed else self.compiled
        self.opt = build_optimizers(self.model, self.cfg, rt)
        data = as_data_layout(data_dir)
        load_tokenizer(data.tokenizer, params.model.vocab_size)  # fail early on a mismatched vocabulary
        # train.batch_layout: (B, seq_len) rows of the stream, or packed documents (1, N) with segments.
        loader_class = DocumentLoader if self.cfg.batch_layout == "documents" else DistributedTokenLoader
        self.loader = loader_class(data.train_files(), rt.rank, rt.world_size, params.model.vocab_size)
        self.validator = (
            Validator(params, data, rt) if self.cfg.val_loss_every > 0 else None
        )
        self.keeper = SnapshotKeeper(params.swa.max_snapshots)
        self.ema = EMA(self.model, self.cfg.ema_decay) if self.cfg.ema_enabled else None
        cap_ms = 1000.0 * self.cfg.max_wallclock_seconds if self.cfg.max_wallclock_seconds > 0 else None
        self.clock = TrainClock(rt, cap_ms)
        self.state = LoopState()
        self.compile_seconds = 0.0
        self.on_row = on_row  # called with every step-table and validation row on rank 0 (the export's log)

    # ------------------------------------------------------------------ one step
    def _train_step(self, lr_mul: float, momentum: float) -> Tensor:
        cfg, rt = self.cfg, self.rt
        self.opt.zero_grad()
        total = torch.zeros((), device=rt.device)
        for micro in range(self.grad_accum):
            x, y, *rest = self.loader.next_batch(cfg.train_batch_tokens, cfg.seq_len, self.grad_accum)
            x, y = rt.to_device(x), rt.to_device(y)
            # The documents layout's segments: cu_seqlens to the device, max_len (= seq_len) a constant.
            extra = {"segments": Segments(rt.to_device(rest[0].cu_seqlens), rest[0].max_len)} if rest else {}
            last = micro == self.grad_accum - 1
            sync = contextlib.nullcontext() if (last or not rt.distributed) else self.ddp.no_sync()
            with sync:
                with rt.autocast():
                    loss = self.ddp(x, y, **extra)
                (loss / self.grad_accum).backward()
            total += loss.detach()
        self.opt.set_schedule(lr_mul, momentum)
        if cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip_norm)
        self.opt.step()
        return total / self.grad_accum

    # ------------------------------------------------------------------ warm-up
    def _compile_warmup(self) -> None:
        """Prime compilation, then restore weights, optimiser state and data position (SPEC §3)."""
        steps = self.cfg.warmup_steps
        if steps <= 0:
            return
        t0 = time.perf_counter()
        model_state = copy.deepcopy(self.model.state_dict())
        opt_state = copy.deepcopy(self.opt.state_dict())
        loader_state = copy.deepcopy(self.loader.state_dict())
        self._prime_segment_buckets()
        for _ in progress_bar(self.progress, range(steps), desc="compile warm-up", leave=False):
            self._train_step(1.0, muon_momentum(0, self.cfg))
        if self.params.model.recurrence.num_loops > 0:
            # The looped order is a second graph: compile it now, not in the timed run.
            self.model.set_looping(True)
            self._prime_segment_buckets()
            for _ in progress_bar(self.progress, range(steps), desc="compile warm-up (looped)", leave=False):
                self._train_step(1.0, muon_momentum(0, self.cfg))
            self.model.set_looping(False)
        self.model.load_state_dict(model_state)
        self.opt.load_state_dict(opt_state)
        self.loader.load_state_dict(loader_state)
        self.opt.zero_grad()
        self.rt.synchronize()
        self.compile_seconds = time.perf_counter() - t0

    def _prime_segment_buckets(self, buckets: int = 4) -> None:
        """Documents layout, compiled: one forward and backward per cu_seqlens length 64, 128, ...
        (each length is a graph of its own), as the record's warm-up; no optimiser step."""
        if self.cfg.batch_layout != "documents" or not self.cfg.compile:
            return
        x, y, segments = self.loader.next_batch(self.cfg.train_batch_tokens, self.cfg.seq_len, self.grad_accum)
        x, y = self.rt.to_device(x), self.rt.to_device(y)
        n = x.size(1)
        bounds = Segments.from_starts([], n, self.cfg.seq_len).bounds  # every seq_len: the fewest a row has
        for k in range(1, buckets + 1):
            if len(bounds) > k * CU_SEQLENS_BUCKET:
                continue  # no batch has so few segments
            cu = torch.full((k * CU_SEQLENS_BUCKET,), n, dtype=torch.int32)
            cu[: len(bounds)] = torch.tensor(bounds, dtype=torch.int32)
            with self.rt.autocast():
                loss = self.ddp(x, y, segments=Segments(self.rt.to_device(cu), segments.max_len))
            (loss / self.grad_accum).backward()
        self.opt.zero_grad()

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "params_digest": self.params.stage_digest("train"),  # what --resume compares
            "world_size": self.rt.world_size,
            "seed": self.seed,
            "model": self.model.state_dict(),
            "optimizers": self.opt.state_dict(),
            "loader": self.loader.state_dict(),
            "clock": self.clock.state_dict(),
            "loop": dataclasses.asdict(self.state),
            "snapshots": self.keeper.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
        }

    def save_checkpoint(self) -> Path:
        self.clock.pause()
        path = save_checkpoint(self.layout.work_dir, self.rt.rank, self._checkpoint_state())
        self.rt.barrier()
        self.clock.start()
        return path

    def resume(self) -> None:
        state = load_checkpoint(self.layout.work_dir, self.rt.rank, self.params.stage_digest("train"),
                                self.rt.world_size)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizers"])
        self.loader.load_state_dict(state["loader"])
        self.clock.load_state_dict(state["clock"])
        loop = state["loop"]
        loop["step_rows"] = [StepRow(**r) for r in loop["step_rows"]]
        loop["val_rows"] = [ValRow(**r) for r in loop["val_rows"]]
        self.state = LoopState(**loop)
        self.keeper.load_state_dict(state["snapshots"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        if self.state.qat_step is not None:
            self.model.set_qat(True)
        if self.state.loop_step is not None:
            self.model.set_looping(True)

    # ------------------------------------------------------------------ main loop
    def run(self, resume: bool = False) -> TrainSummary:
        self._compile_warmup()  # before resuming: the warm-up restores what it changes
        if resume:
            self.resume()
        cfg, rt, st = self.cfg, self.rt, self.state
        bar = progress_bar(self.progress, total=cfg.iterations, initial=st.step, desc=f"train seed {self.seed}",
                           unit="step", dynamic_ncols=True)
        nonfinite = torch.full((), -1, dtype=torch.int64, device=rt.device)
        self._last_log = (self.clock.local_ms(), st.step)
        loss = torch.zeros((), device=rt.device)
        lr_mul, momentum = 1.0, muon_momentum(st.step, cfg)
        with _TermFlag() as term:
            self.clock.start()
            while True:
                reading = self.clock.read(st.step, term.requested)
                if reading.terminate:
                    bar.close()
                    raise Interrupted(st.step, self.save_checkpoint())
                if st.stop_after_step is None and reading.reached_cap:
                    st.stop_after_step = st.step
                last_step = st.step >= cfg.iterations or st.stop_after_step is not None
                if self.validator and (last_step or st.step % cfg.val_loss_every == 0):
                    self._validate()
                if last_step:
                    break
                lr_mul = lr_multiplier(st.step, reading.elapsed_ms, cfg)
                momentum = muon_momentum(st.step, cfg)
                if cfg.qat_enabled and st.qat_step is None and lr_mul < cfg.qat_threshold:
                    self.model.set_qat(True)
                    st.qat_step = st.step
                    self._say(f"late QAT on at step {st.step} (lr_mul {lr_mul:.4f} < {cfg.qat_threshold})")
                rec = self.params.model.recurrence
                if (rec.num_loops > 0 and st.loop_step is None
                        and training_frac(st.step, reading.elapsed_ms, cfg) >= rec.enable_at):
                    self.model.set_looping(True)
                    st.loop_step = st.step
                    self._say(f"depth recurrence on at step {st.step}: blocks {self.model.layer_order()}")
                loss = self._train_step(lr_mul, momentum)
                st.step += 1
                nonfinite = torch.where((nonfinite < 0) & ~torch.isfinite(loss),
                                        torch.full_like(nonfinite, st.step), nonfinite)
                if self.ema is not None:
                    self.ema.update(self.model)
                if snapshot_due(st.step, lr_mul, self.params.swa):
                    self.keeper.add(st.step, self.model)
                if cfg.log_every > 0 and (st.step <= 10 or st.step % cfg.log_every == 0):
                    self._log_step(loss, lr_mul, momentum, nonfinite, bar)
                bar.update(1)
                if cfg.checkpoint_every > 0 and st.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
            self.clock.pause()
        if st.step > 0 and (not st.step_rows or st.step_rows[-1].step != st.step):
            self._log_step(loss, lr_mul, momentum, nonfinite, bar)
        bar.close()
        bad = int(nonfinite.item())
        if bad >= 0:
            raise TrainingError(f"non-finite training loss at step {bad}; stopping (seed {self.seed})")
        return self._summary()

    def _log_step(self, loss: Tensor, lr_mul: float, momentum: float, nonfinite: Tensor, bar: Any) -> None:
        """Append a row to the step table; the only place a step waits for the device."""
        st = self.state
        bad = int(nonfinite.item())
        if bad >= 0:
            raise TrainingError(f"non-finite training loss at step {bad}; stopping (seed {self.seed})")
        now_ms = self.clock.local_ms()
        last_ms, last_step = self._last_log
        step_ms = (now_ms - last_ms) / max(st.step - last_step, 1)
        self._last_log = (now_ms, st.step)
        tokens_per_s = self.cfg.train_batch_tokens / (step_ms / 1000.0) if step_ms > 0 else 0.0
        row = StepRow(st.step, float(loss.item()), lr_mul, momentum, step_ms, tokens_per_s,
                      int(st.qat_step is not None), now_ms)
        st.step_rows.append(row)
        if self.on_row is not None and self.rt.is_main:
            self.on_row(row)
        if self.clock.cap_ms is not None and now_ms > 0:  # ETA by the clock: the steps the cap allows
            bar.total = min(self.cfg.iterations, max(st.step, int(self.clock.cap_ms * st.step / now_ms)))
        bar.set_postfix(loss=f"{row.train_loss:.4f}", lr=f"{lr_mul:.3f}", ms=f"{step_ms:.0f}")

    def _say(self, message: str) -> None:
        """A line in the log on rank 0 (stderr, above the progress bar when there is one)."""
        if self.rt.is_main:
            write_line(f"[seed {self.seed}] {message}")

    def _validate(self) -> None:
        self.clock.pause()
        loss, bpb = self.validator.evaluate(self.model)
        row = ValRow(self.state.step, loss, bpb, self.clock.local_ms())
        self.state.val_rows.append(row)
        if self.on_row is not None and self.rt.is_main:
            self.on_row(row)
        self._say(f"step {row.step}: val_loss {loss:.4f} val_bpb {bpb:.4f}")
        self.clock.start()

    def _summary(self) -> TrainSummary:
        st = self.state
        train_ms = self.clock.local_ms()
        return TrainSummary(
            seed=self.seed,
            world_size=self.rt.world_size,
            device=self.rt.device_name(),
            process_group=self.rt.backend if self.rt.distributed else None,
            steps=st.step,
            stopped_by="wallclock" if st.stop_after_step is not None else "iterations",
            train_seconds=train_ms / 1000.0,
            mean_step_ms=train_ms / max(st.step, 1),
            tokens_seen=st.step * self.cfg.train_batch_tokens,
            tokens_per_second=st.step * self.cfg.train_batch_tokens / max(train_ms / 1000.0, 1e-9),
            compile_warmup_seconds=self.compile_seconds,
            peak_memory_bytes=self.rt.peak_memory_bytes(),
            qat_step=st.qat_step,
            loop_step=st.loop_step,
            snapshot_steps=list(self.keeper.steps),
            params_digest=self.params.digest(),
            final_train_loss=st.step_rows[-1].train_loss if st.step_rows else math.nan,
        )

    # ------------------------------------------------------------------ outputs
    def write_outputs(self, summary: TrainSummary, curves: CurveWriter | None = None) -> TrainSummary:
        """Rank 0 writes the stage outputs: weights into a fresh directory, then the curves (when
        `curves` is given: the train stage passes `pipeline.train.curves.write_curves`), then the
        summary with their digests, and last the directory swapped in (`pipeline.train.outputs`).
        Returns the summary as written (with the digests; unchanged on other ranks)."""
        if not self.rt.is_main:
            return summary
        layout = self.layout
        with atomic.atomic_dir(layout.train_dir, kind="train") as tmp:
            final = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            torch.save(final, tmp / layout.final_weights.name)
            torch.save({"steps": self.keeper.steps, "states": list(self.keeper.snapshots.values())},
                       tmp / layout.snapshots.name)
            if self.ema is not None:
                torch.save(self.ema.averaged_state(final), tmp / layout.ema_weights.name)
            if curves is not None:
                curves(layout.live_dir, self.state.step_rows, self.state.val_rows, summary.to_dict())
            summary = dataclasses.replace(summary, outputs_sha256=output_digests(layout, tmp / layout.final_weights.name))
            write_train_summary(layout.train_summary, summary)
        return summary


def training_files(params: Params, seed: int, resume: bool = False) -> None:
    """`preflight` for one seed's run: the prepared data (and the resume checkpoint) are
    readable and every output under ``train.out_dir`` can be written, before the run starts."""
    from pipeline.layout import seed_dir
    from pipeline.preflight import prepared_data, preflight
    from pipeline.train.checkpoint import checkpoint_path

    layout = RunLayout(seed_dir(Path(params.train.out_dir), seed))
    splits = ["train", "val"] if params.train.val_loss_every > 0 else ["train"]
    reads = prepared_data(Path(params.data.out_dir), params.model.vocab_size, splits)
    if resume:
        reads.append((checkpoint_path(layout.work_dir, 0), "no checkpoint to resume from; start without --resume"))
    key = "train.out_dir"
    writes = [(layout.train_summary, key), (checkpoint_path(layout.work_dir, 0), key)]
    preflight(reads=reads, writes=writes, builds=[(layout.live_dir, key), (layout.train_dir, key)])


def train(params: Params, seed: int, data_dir: Path, run_dir: Path, rt: Runtime,
          resume: bool = False, progress: bool = True,
          on_row: Callable[[StepRow | ValRow], None] | None = None,
          curves: CurveWriter | None = None) -> TrainSummary:
    """Train one seed; rank 0 writes the outputs listed in `RunLayout` (the dvclive curves
    only with `curves`: the exported script has no dvclive). Returns the summary."""
    trainer = Trainer(params, seed, data_dir, run_dir, rt, progress, on_row)
    summary = trainer.write_outputs(trainer.run(resume=resume), curves)
    rt.barrier()
    trainer.layout.clear_work()
    return summary
