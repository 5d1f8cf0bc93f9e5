"""Scoring weights on the validation split: rebuild the model, then standard and sliding bpb.

Loads the tokenizer's byte tables and the validation stream once, so a seed's
three figures (pre-quantisation, int6 round trip, int6 sliding window) share them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from pipeline.config import EvalConfig, ModelConfig
from pipeline.errors import ArtifactError, PgolfError
from pipeline.layout import RunLayout
from pipeline.quant.artifact import read_artifact
from pipeline.data.layout import DataLayout
from pipeline.data.loader import load_validation_tokens
from pipeline.data.tokenizer import load_tokenizer
from pipeline.evaluate.bytes import build_byte_luts
from pipeline.evaluate.scoring import EvalSums, evaluate_sliding_window, evaluate_standard
from pipeline.model import GPT
from pipeline.runtime import Runtime


class Evaluator:
    def __init__(self, model_cfg: ModelConfig, eval_cfg: EvalConfig, data_dir: Path, rt: Runtime,
                 progress: bool = False):
        data = DataLayout(Path(data_dir))
        sp = load_tokenizer(data.tokenizer, model_cfg.vocab_size)
        self.luts = build_byte_luts(sp, model_cfg.vocab_size)
        self.tokens = load_validation_tokens(data.val_files())
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
        bar = tqdm(desc=label, unit="window", disable=not self.progress, dynamic_ncols=True)

        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        self.rt.synchronize()
        t0 = time.perf_counter()
        with bar:
            sums = fn(model, self.tokens, self.luts, self.cfg, self.rt, progress=advance)
        self.rt.synchronize()
        return sums, time.perf_counter() - t0

    def standard(self, model: nn.Module) -> tuple[EvalSums, float]:
        """Non-overlapping windows of eval.seq_len: (sums, seconds)."""
        return self._timed(evaluate_standard, model, "standard eval")

    def sliding(self, model: nn.Module) -> tuple[EvalSums, float]:
        """Sliding windows (eval.stride), every target scored once: (sums, seconds)."""
        return self._timed(evaluate_sliding_window, model, "sliding-window eval")


def figures(prefix: str, sums: EvalSums, seconds: float) -> dict[str, Any]:
    """`{prefix}_loss`, `{prefix}_bpb`, `{prefix}_tokens`, `{prefix}_seconds` for the metrics file."""
    return {
        f"{prefix}_loss": sums.loss,
        f"{prefix}_bpb": sums.bpb,
        f"{prefix}_tokens": sums.tokens,
        f"{prefix}_seconds": seconds,
    }


def seed_metrics(ev: Evaluator, layout: RunLayout) -> dict[str, Any]:
    """SPEC §5's per-seed figures: pre-quantisation standard, int6 round-trip standard and
    int6 sliding-window bpb, plus steps, train time and sizes from the earlier stages."""
    for needed in (layout.averaged, layout.artifact, layout.train_summary, layout.size_report):
        if not needed.is_file():
            raise PgolfError(f"{needed}: missing (run the earlier stages first)")
    state, meta = read_artifact(layout.artifact)
    if meta.get("model") != dataclasses.asdict(ev.model_cfg):
        raise ArtifactError(f"{layout.artifact}: built for a different model configuration than params `model`")
    metrics: dict[str, Any] = {}
    averaged = torch.load(layout.averaged, map_location="cpu", weights_only=True)
    metrics.update(figures("prequant_standard", *ev.standard(ev.model_from_state(averaged))))
    model = ev.model_from_state(state)
    metrics.update(figures("int6_standard", *ev.standard(model)))
    metrics.update(figures("sliding", *ev.sliding(model)))
    train = json.loads(layout.train_summary.read_text())
    size = json.loads(layout.size_report.read_text())["size"]
    metrics.update({
        "steps": train["steps"],
        "train_seconds": train["train_seconds"],
        "mean_step_ms": train["mean_step_ms"],
        "model_bytes": size["model_bytes"],
        "code_bytes": size["code_bytes"],
        "total_bytes": size["total_bytes"],
    })
    return metrics


def load_weights(path: Path) -> dict[str, Tensor]:
    """A state dict from a .ptz artifact or a plain .pt state dict (tensors only, weights_only)."""
    if not path.is_file():
        raise PgolfError(f"{path}: checkpoint not found")
    if path.suffix == ".ptz":
        return read_artifact(path)[0]
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncation, foreign formats
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # torch's text runs to many lines
        raise PgolfError(f"{path}: not a loadable state dict of tensors ({first})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise PgolfError(f"{path}: expected a dict of tensors (a state dict)")
    return state


def checkpoint_metrics(ev: Evaluator, path: Path) -> dict[str, Any]:
    """Standard and sliding-window figures of any reference-named checkpoint."""
    model = ev.model_from_state(load_weights(path))
    return {"checkpoint": str(path), **figures("standard", *ev.standard(model)),
            **figures("sliding", *ev.sliding(model))}
