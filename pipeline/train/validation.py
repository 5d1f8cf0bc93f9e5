"""Periodic validation during training (`train.val_loss_every`): standard bpb on the val shards.

Uses the training sequence length and the per-device micro-batch as batch
size, so it reads no evaluation parameters (changing `eval.*` never retrains).
With `train.batch_layout: documents` each batch of consecutive windows is scored
as one packed row with attention within each document (cut every seq_len), as
the 1.0611 record's `eval_val` does; its batches hold `val_batch_tokens` (524,288)
where pgolf's hold one training micro-batch, so cuts at batch edges can differ.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from pipeline.config import EvalConfig, Params
from pipeline.data.sidecar_files import load_sidecar
from pipeline.data.layout import DataLayout, as_data_layout
from pipeline.data.loader import load_validation_tokens
from pipeline.data.tokenizer import load_tokenizer
from pipeline.data.tokenizer import BOS_ID
from pipeline.evaluate import build_byte_luts, evaluate_standard
from pipeline.model.attention import Segments
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
        self.documents = t.batch_layout == "documents"
        self.rt = rt

    def evaluate(self, model: nn.Module) -> tuple[float, float]:
        """(mean loss in nats, bits per byte) of `model` on the validation stream."""
        scored = PackedDocuments(model, self.cfg.seq_len) if self.documents else model
        sums = evaluate_standard(scored, self.tokens, self.luts, self.cfg, self.rt, sidecar=self.sidecar)
        return sums.loss, sums.bpb


class PackedDocuments(nn.Module):
    """Scores a batch of consecutive windows (B, T) as one (1, B*T) row whose tokens attend
    only within their document, cut every `seq_len` tokens (the record's eval_val)."""

    def __init__(self, model: nn.Module, seq_len: int) -> None:
        super().__init__()
        self.model = model
        self.seq_len = seq_len

    def forward(self, ids: Tensor, targets: Tensor, reduction: str = "none") -> Tensor:
        flat = ids.reshape(1, -1)
        segments = Segments.at_documents(flat[0], BOS_ID, self.seq_len)
        losses = self.model(flat, targets.reshape(1, -1), reduction="none", segments=segments).view_as(targets)
        return losses.mean() if reduction == "mean" else losses
