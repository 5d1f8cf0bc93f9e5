"""The SentencePiece BPE tokenizer: training with SPEC §1's settings, loading, checking.

Training is reproducible to the byte.  Two things would otherwise leak into
the ``.model`` file: the ``model_prefix`` path it was trained under (avoided
by training through ``model_writer``, an in-memory sink, so no path is ever
given) and the trainer's thread count, which the model records.  The thread
count is pinned to `TRAINING_THREADS`; with sentencepiece 0.2.3 the learned
pieces and scores are the same for any thread count, so the pin costs nothing
but keeps the bytes independent of the machine.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sentencepiece as spm

from pipeline.config import TokenizerConfig
from pipeline.errors import DataError

TRAINING_THREADS = 16
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


def trainer_settings(cfg: TokenizerConfig, symbols: tuple[str, ...] = ()) -> dict[str, Any]:
    """SentencePieceTrainer arguments for SPEC's tokenizer (recorded in the manifest).

    `symbols` become pieces of their own (``user_defined_symbols``): CaseOps's operators.
    """
    extra: dict[str, Any] = {"user_defined_symbols": list(symbols)} if symbols else {}
    return {
        "model_type": "bpe",
        "vocab_size": cfg.vocab_size,
        "character_coverage": cfg.character_coverage,
        "byte_fallback": cfg.byte_fallback,
        "split_digits": cfg.split_digits,
        "normalization_rule_name": cfg.normalization_rule_name,
        "add_dummy_prefix": cfg.add_dummy_prefix,
        "pad_id": PAD_ID,
        "bos_id": BOS_ID,
        "eos_id": EOS_ID,
        "unk_id": UNK_ID,
        "hard_vocab_limit": cfg.hard_vocab_limit,
        "num_threads": TRAINING_THREADS,
        **extra,
    }


def train_tokenizer(texts: Iterable[str], cfg: TokenizerConfig, symbols: tuple[str, ...] = ()) -> bytes:
    """Train on `texts` (already cleaned) and return the serialized ``.model``.

    An exception raised while producing `texts` (a malformed input line, say)
    is carried across SentencePiece's C++ training loop and re-raised here.
    """
    guarded = _GuardedIterator(texts)
    sink = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=guarded, model_writer=sink, minloglevel=2, **trainer_settings(cfg, symbols)
        )
    except RuntimeError as exc:
        if guarded.error is not None:
            raise guarded.error from None
        raise DataError(f"SentencePiece training failed: {_first_line(exc)}") from None
    if guarded.error is not None:
        raise guarded.error
    return sink.getvalue()


def load_tokenizer(
    path: str | Path,
    expected_vocab_size: int | None = None,
    expected_from: str = "model.vocab_size",
    label: str | None = None,
) -> spm.SentencePieceProcessor:
    """Load a ``.model`` file; with `expected_vocab_size`, insist that its vocabulary matches.

    `expected_from` names the parameter the expectation comes from and `label`
    how to call the tokenizer (its path by default), both for the error.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: tokenizer not found")
    try:
        processor = spm.SentencePieceProcessor(model_file=str(path))
        for piece_id in range(processor.vocab_size()):  # a damaged piece fails here, not mid-evaluation
            processor.id_to_piece(piece_id)
    except Exception as exc:  # noqa: BLE001 - RuntimeError, OSError, UnicodeDecodeError, ... from the C++ side
        raise DataError(f"{path}: not a SentencePiece model ({type(exc).__name__}: {_first_line(exc)})") from None
    if expected_vocab_size is not None:
        check_vocab_size(processor, label or str(path), expected_vocab_size, expected_from)
    if processor.bos_id() < 0:
        raise DataError(f"{path}: tokenizer has no BOS piece; every document starts with one (SPEC §1)")
    return processor


def check_vocab_size(processor: spm.SentencePieceProcessor, label: str, expected: int, expected_from: str) -> None:
    """DataError "tokenizer <label> has vocab N but <expected_from> is M" unless they agree."""
    actual = int(processor.vocab_size())
    if actual != expected:
        raise DataError(f"tokenizer {label} has vocab {actual} but {expected_from} is {expected}")


class _GuardedIterator(Iterator[str]):
    """Stops cleanly on an exception and keeps it, so it is never lost inside C++."""

    def __init__(self, texts: Iterable[str]) -> None:
        self._texts = iter(texts)
        self.error: BaseException | None = None

    def __next__(self) -> str:
        if self.error is not None:
            raise StopIteration
        try:
            return next(self._texts)
        except StopIteration:
            raise
        except BaseException as exc:  # noqa: BLE001 - re-raised by train_tokenizer
            self.error = exc
            raise StopIteration from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
