"""How many bytes of text each predicted token stands for (SPEC §5).

Bits per byte divides the loss by the UTF-8 length of the text rather than by
the token count, so that tokenizers of different granularity compare fairly.
The length is read off three per-token lookup tables built once from the
SentencePiece model:

- ``base_bytes``: UTF-8 length of the piece without its leading "▁"; a byte
  token (``<0xAB>``) is one byte; control, unknown and unused tokens are 0;
- ``has_leading_space``: the piece starts with "▁" (a space in the text);
- ``is_boundary``: control/unknown/unused tokens (BOS among them), after which
  a leading "▁" is not a space of the text: documents start without one.

Bytes of a target = base + 1 if it has a leading space and the previous
token is not a boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch
from torch import Tensor

_SPACE = "\u2581"


@dataclass(frozen=True)
class ByteLuts:
    """Per-token-id tables; ids beyond the SentencePiece vocabulary count 0 and are boundaries."""

    base_bytes: Tensor  # int32 (V,)
    has_leading_space: Tensor  # bool (V,)
    is_boundary: Tensor  # bool (V,)

    def to(self, device: torch.device | str) -> ByteLuts:
        return ByteLuts(self.base_bytes.to(device), self.has_leading_space.to(device), self.is_boundary.to(device))

    def __len__(self) -> int:
        return int(self.base_bytes.numel())


def build_byte_luts(sp: spm.SentencePieceProcessor | str | Path, vocab_size: int = 0) -> ByteLuts:
    """Tables of size max(tokenizer vocab, `vocab_size`) from a processor or a .model path."""
    if not isinstance(sp, spm.SentencePieceProcessor):
        sp = spm.SentencePieceProcessor(model_file=str(sp))
    n = int(sp.vocab_size())
    size = max(n, vocab_size)
    base = np.zeros(size, dtype=np.int32)
    space = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    for tid in range(n):
        if sp.is_control(tid) or sp.is_unknown(tid) or sp.is_unused(tid):
            continue
        boundary[tid] = False
        if sp.is_byte(tid):
            base[tid] = 1
            continue
        piece = sp.id_to_piece(tid)
        if piece.startswith(_SPACE):
            space[tid] = True
            piece = piece[1:]
        base[tid] = len(piece.encode("utf-8"))
    return ByteLuts(torch.from_numpy(base), torch.from_numpy(space), torch.from_numpy(boundary))


def token_bytes(prev_ids: Tensor, target_ids: Tensor, luts: ByteLuts) -> Tensor:
    """Bytes of each target token given the token before it (same shapes, int32)."""
    extra = luts.has_leading_space[target_ids] & ~luts.is_boundary[prev_ids]
    return luts.base_bytes[target_ids] + extra.to(torch.int32)


def stream_bytes(tokens: Tensor, luts: ByteLuts) -> int:
    """Total bytes of every target of a token stream (targets are tokens[1:])."""
    t = tokens.to(torch.int64)
    return int(token_bytes(t[:-1], t[1:], luts).sum(dtype=torch.int64))
