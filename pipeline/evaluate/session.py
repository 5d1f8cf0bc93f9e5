"""Scoring weights on the validation split: rebuild the model, then standard and sliding bpb.

Loads the tokenizer's byte tables and the validation stream once, so a seed's
three figures (pre-quantisation, int6 round trip, int6 sliding window) share them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.config import EvalConfig, ModelConfig
from pipeline.errors import ArtifactError, PgolfError
from pipeline.layout import RunLayout
from pipeline.quant.artifact import read_artifact
from pipeline.data.layout import DataLayout, as_data_layout
from pipeline.data.sidecar_files import load_sidecar
from pipeline.data.loader import load_validation_tokens
from pipeline.data.tokenizer import load_tokenizer
from pipeline.evaluate.bytes import build_byte_luts
from pipeline.evaluate.scoring import (
    EvalSums,
    as_token_stream,
    evaluate_sliding_window,
    evaluate_standard,
    truncate_to_windows,
)
from pipeline.evaluate.ttt import ScoreLedger, phased_ttt, score_first_ttt, timed
from pipeline.model import GPT
from pipeline.progress import progress_bar
from pipeline.records import Figures, SeedMetrics
from pipeline.runtime import Runtime
from pipeline.stage_files import read_size_report, read_state_dict, read_train_summary
from pipeline.weights_check import check_weights


class Evaluator:
    def __init__(self, model_cfg: ModelConfig, eval_cfg: EvalConfig, data_dir: Path | DataLayout, rt: Runtime,
                 progress: bool = False):
        data = as_data_layout(data_dir)
        sp = load_tokenizer(data.tokenizer, model_cfg.vocab_size)
        self.luts = build_byte_luts(sp, model_cfg.vocab_size)
        self.tokens = load_validation_tokens(data.val_files(), model_cfg.vocab_size)
        # Each validation token's original bytes, when prepare wrote them (CaseOps, data.encoding).
        self.sidecar = load_sidecar(data.shards_dir, len(self.tokens))
        self.model_cfg = model_cfg
        self.cfg = eval_cfg
        self.rt = rt
        self.progress = progress

    def model_from_state(self, state: Mapping[str, Tensor]) -> nn.Module:
        """A fresh GPT holding `state` (strict names), in eval mode, compiled on CUDA."""
        model = GPT(self.model_cfg)
        try:
            model.load_state_dict(dict(state), strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()
            raise PgolfError(f"weights do not fit the configured model (params `model`): "
                             f"{' '.join(line.strip() for line in first[:3])}") from None
        model = model.to(self.rt.device).eval()
        return torch.compile(model, dynamic=False) if self.rt.is_cuda else model

    def _timed(self, fn, model: nn.Module, label: str) -> tuple[EvalSums, float]:
        bar = progress_bar(self.progress, desc=label, unit="window", dynamic_ncols=True)

        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        self.rt.synchronize()
        t0 = time.perf_counter()
        with bar:
            sums = fn(model, self.tokens, self.luts, self.cfg, self.rt, progress=advance, sidecar=self.sidecar)
        self.rt.synchronize()
        return sums, time.perf_counter() - t0

    def standard(self, model: nn.Module) -> tuple[EvalSums, float]:
        """Non-overlapping windows of eval.seq_len: (sums, seconds)."""
        return self._timed(evaluate_standard, model, "standard eval")

    def sliding(self, model: nn.Module) -> tuple[EvalSums, float]:
        """Sliding windows (eval.stride), every target scored once: (sums, seconds)."""
        return self._timed(evaluate_sliding_window, model, "sliding-window eval")

    def test_time_training(self, state: Mapping[str, Tensor]) -> dict[str, Any]:
        """`ttt_*` figures of eval.ttt on a fresh model holding `state` (its weights change), or {} when off.

        The stream is the one the other figures score (eval.max_tokens, eval.stream);
        the seconds cover the whole pass and are checked against eval.ttt.budget_seconds.
        """
        ttt_cfg = self.cfg.ttt
        if ttt_cfg.mode == "off":
            return {}
        stream = as_token_stream(self.tokens, self.cfg.max_tokens)
        if self.cfg.stream == "truncated":
            stream = truncate_to_windows(stream, self.cfg.seq_len)
        sidecar = None if self.sidecar is None else as_token_stream(self.sidecar)[: stream.numel()]
        model = GPT(self.model_cfg)
        model.load_state_dict(dict(state), strict=True)
        model = model.to(self.rt.device)
        ledger = ScoreLedger(stream.numel())
        if ttt_cfg.mode == "score_first":
            def run() -> EvalSums:
                return score_first_ttt(model, stream, self.luts, ttt_cfg.score_first, self.cfg.seq_len,
                                       self.cfg.stride, self.cfg.batch_seqs, self.rt, sidecar=sidecar, ledger=ledger)
        else:
            def run() -> EvalSums:
                with _coordination_dir(self.rt) as workdir:
                    return phased_ttt(model, stream, self.luts, ttt_cfg.phased, self.cfg.seq_len, self.rt,
                                      sidecar=sidecar, ledger=ledger, workdir=workdir)
        result = timed(run, ttt_cfg.budget_seconds, self.rt)
        if not self.rt.distributed:  # one process saw every target: all scored exactly once
            ledger.check_complete(np.arange(1, stream.numel()))
        return result.figures("ttt")


@contextlib.contextmanager
def _coordination_dir(rt: Runtime) -> Iterator[Path | None]:
    """Where ranks on one node share phased TTT's batch counter: a fresh folder of rank 0's
    (its path is what every rank uses), removed afterwards; None in one process."""
    if not rt.distributed:
        yield None
        return
    if not rt.is_main:
        yield Path(tempfile.gettempdir())  # a placeholder: rank 0's file names are broadcast
        return
    folder = Path(tempfile.mkdtemp(prefix="pgolf-ttt-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def figures(prefix: str, sums: EvalSums, seconds: float) -> dict[str, Any]:
    """`{prefix}_loss`, `{prefix}_bpb`, `{prefix}_tokens`, `{prefix}_seconds` for a checkpoint's metrics file."""
    return pass_figures(sums, seconds).to_dict(prefix)


def pass_figures(sums: EvalSums, seconds: float) -> Figures:
    return Figures(loss=sums.loss, bpb=sums.bpb, tokens=sums.tokens, seconds=seconds)


def _same_weights(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)
def evaluation_inputs(layout: RunLayout, seed: int) -> list[tuple[Path, str]]:
    """The earlier stages' files `seed_metrics` reads, with the command that writes each."""
    return [
        (layout.final_weights, f"run `pgolf train --seed {seed}` first"),
        (layout.averaged, f"run `pgolf swa --seed {seed}` first"),
        (layout.artifact, f"run `pgolf quantize --seed {seed}` first"),
        (layout.train_summary, f"run `pgolf train --seed {seed}` first"),
        (layout.size_report, f"run `pgolf quantize --seed {seed}` first"),
    ]


def seed_metrics(ev: Evaluator, layout: RunLayout) -> SeedMetrics:
    """SPEC §5's per-seed figures: pre-quantisation standard, int6 round-trip standard and
    int6 sliding-window bpb, plus steps, train time and sizes from the earlier stages.

    Two pre-quantisation figures: `prequant_final_standard_*` on the live weights
    at the end of training (the figure the reference logs, before it averages) and
    `prequant_averaged_standard_*` on the weights the swa stage wrote (the ones
    that get quantised).  When these are the same weights, one pass serves both.
    Every input is read and checked before the first window is scored.
    """
    for needed in (layout.final_weights, layout.averaged, layout.artifact, layout.train_summary,
                   layout.size_report):
        if not needed.is_file():
            raise PgolfError(f"{needed}: missing (run the earlier stages first)")
    train = read_train_summary(layout.train_summary)
    size = read_size_report(layout.size_report)
    state, meta = read_artifact(layout.artifact)
    if meta.get("model") != dataclasses.asdict(ev.model_cfg):
        raise ArtifactError(f"{layout.artifact}: built for a different model configuration than params `model`")
    check_weights(state, ev.model_cfg, layout.artifact)
    averaged = read_state_dict(layout.averaged, "written by `pgolf swa`")
    check_weights(averaged, ev.model_cfg, layout.averaged)
    final = read_state_dict(layout.final_weights, "written by `pgolf train`")
    check_weights(final, ev.model_cfg, layout.final_weights)
    final_figures = ev.standard(ev.model_from_state(final))
    averaged_figures = final_figures if _same_weights(final, averaged) else ev.standard(ev.model_from_state(averaged))
    model = ev.model_from_state(state)
    int6_figures = ev.standard(model)
    sliding_figures = ev.sliding(model)
    return SeedMetrics(
        prequant_final_standard=pass_figures(*final_figures),
        prequant_averaged_standard=pass_figures(*averaged_figures),
        int6_standard=pass_figures(*int6_figures),
        sliding=pass_figures(*sliding_figures),
        ttt=ev.test_time_training(state) or None,
        steps=train.steps,
        train_seconds=train.train_seconds,
        mean_step_ms=train.mean_step_ms,
        model_bytes=size.model_bytes,
        code_bytes=size.code_bytes,
        total_bytes=size.total_bytes,
    )


def load_weights(path: Path) -> dict[str, Tensor]:
    """A state dict from a .ptz artifact or a plain .pt state dict (tensors only, weights_only)."""
    if not path.is_file():
        raise PgolfError(f"{path}: checkpoint not found")
    if path.suffix == ".ptz":
        return read_artifact(path)[0]
    return read_state_dict(path, "--checkpoint")


def checkpoint_metrics(ev: Evaluator, path: Path) -> dict[str, Any]:
    """Standard and sliding-window figures of any reference-named checkpoint."""
    state = load_weights(path)
    check_weights(state, ev.model_cfg, path)
    model = ev.model_from_state(state)
    return {"checkpoint": str(path), **figures("standard", *ev.standard(model)),
            **figures("sliding", *ev.sliding(model))}
