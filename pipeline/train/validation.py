"""Periodic validation during training (`train.val_loss_every`): standard bpb on the val shards.

Uses the training sequence length and the per-device micro-batch as batch
size, so it reads no evaluation parameters (changing `eval.*` never retrains).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from pipeline.config import EvalConfig, Params
from pipeline.data.sidecar_files import load_sidecar
from pipeline.data.layout import DataLayout, as_data_layout
from pipeline.data.loader import load_validation_tokens
from pipeline.data.tokenizer import load_tokenizer
from pipeline.evaluate import build_byte_luts, evaluate_standard
from pipeline.runtime import Runtime


class Validator:
    def __init__(self, params: Params, data_dir: Path | DataLayout, rt: Runtime):
        layout = as_data_layout(data_dir)
        sp = load_tokenizer(layout.tokenizer, params.model.vocab_size)
        self.luts = build_byte_luts(sp, params.model.vocab_size)
        self.tokens = load_validation_tokens(layout.val_files(), params.model.vocab_size)
        self.sidecar = load_sidecar(layout.shards_dir, len(self.tokens))  # None unless prepare wrote one
        t = params.train
        self.cfg = EvalConfig(
            seq_len=t.seq_len,
            stride=t.seq_len,
            batch_seqs=max(1, t.train_batch_tokens // (8 * t.seq_len)),
            max_tokens=t.val_max_tokens,
            stream="truncated",  # standard windows drop the partial tail either way
        )
        self.rt = rt

    def evaluate(self, model: nn.Module) -> tuple[float, float]:
        """(mean loss in nats, bits per byte) of `model` on the validation stream."""
        sums = evaluate_standard(model, self.tokens, self.luts, self.cfg, self.rt, sidecar=self.sidecar)
        return sums.loss, sums.bpb
