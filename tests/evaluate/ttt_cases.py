"""The phased-TTT configurations that scripts/parity/ttt_parity.py runs on both sides and
tests/evaluate/test_ttt.py pins: a toy model, a stream of 40 random documents, byte tables."""

from __future__ import annotations

import copy
import dataclasses

import torch

from pipeline.config import PhasedTttConfig
from pipeline.evaluate.bytes import ByteLuts
from pipeline.evaluate.scoring import EvalSums
from pipeline.evaluate.ttt import ScoreLedger, phased_ttt
from pipeline.runtime import Runtime
from tests.evaluate.ttt_toy import ToyTttModel, toy_stream

VOCAB, SEQ_LEN, DOCS, SEED = 48, 64, 40, 1234

_BASE = PhasedTttConfig(chunk_size=16, batch_docs=8, lora_rank=4, lora_alpha=8.0, lora_lr=0.01, prefix_docs=12,
                        num_phases=1, global_lr=0.01, global_chunk_tokens=256, global_batch_seqs=2)
CASES: dict[str, PhasedTttConfig] = {
    "one_phase": _BASE,
    "three_phases": dataclasses.replace(_BASE, num_phases=3, prefix_docs=20, grad_steps=2),
    "no_global": dataclasses.replace(_BASE, prefix_docs=0, warm_start_a=False, k_lora=False),
    "sgd_lora": dataclasses.replace(_BASE, optimizer="sgd", beta1=0.9, weight_decay=0.0, lora_lr=0.05),
    "sidecar": _BASE,
}


def toy_luts() -> ByteLuts:
    ids = torch.arange(VOCAB)
    return ByteLuts((ids % 4 + 1).to(torch.int32) * (ids >= 4), (ids % 3 == 0) & (ids >= 4), ids < 4)


def case_inputs(name: str):
    """(model, tokens, luts, sidecar or None, cfg, seq_len, seed) of one case; fresh each call."""
    torch.manual_seed(0)
    model = ToyTttModel(VOCAB)
    tokens = toy_stream(VOCAB, DOCS, seed=7)
    sidecar = None
    if name == "sidecar":
        g = torch.Generator().manual_seed(3)
        sidecar = torch.randint(0, 6, (tokens.numel(),), generator=g) * (tokens != 1)
    return model, tokens, toy_luts(), sidecar, CASES[name], SEQ_LEN, SEED


def run_pgolf(name: str, ledger: ScoreLedger | None = None) -> EvalSums:
    model, tokens, luts, sidecar, cfg, seq_len, seed = case_inputs(name)
    torch.manual_seed(seed)
    rt = Runtime(torch.device("cpu"), "gloo", None)
    return phased_ttt(model, tokens, luts, cfg, seq_len, rt, sidecar=sidecar, ledger=ledger)
