"""The phased-TTT configurations that scripts/parity/ttt_parity.py runs on both sides and
tests/evaluate/test_ttt.py pins: a toy model, a stream of 40 random documents, byte tables;
and pgolf's GPT with the frontier's switches at a tiny size (`GPT_CASES`), whose weights
the script copies into the record's GPT."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from pipeline.config import ModelConfig, PhasedTttConfig, load_params
from pipeline.evaluate.bytes import ByteLuts
from pipeline.evaluate.scoring import EvalSums
from pipeline.evaluate.ttt import ScoreLedger, phased_ttt
from pipeline.model import GPT
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


# pgolf's GPT: every frontier switch (LeakyReLU², token smear with the BOS mask, skip gates,
# sparse attention gate, two lanes from layer 3, layers 1-2 looped once more, XSA everywhere),
# tiny; the rotary reference length covers the windows, as the record's ROPE_YARN=0.
ROOT = Path(__file__).resolve().parents[2]
GPT_DOCS, GPT_SEQ_LEN = 12, 32
_GPT_TTT = dataclasses.replace(_BASE, chunk_size=8, batch_docs=4, prefix_docs=6, global_chunk_tokens=128)
GPT_CASES: dict[str, tuple[dict, PhasedTttConfig]] = {
    # Every adapter (q, k, v, MLP, attention output, head), one global phase.
    "gpt_looped": ({}, _GPT_TTT),
    # q, v and head only, two phases, a plain U-Net (no recurrence), the lanes' attention lane.
    "gpt_plain_two_phases": (dict(num_loops=0, final="attn"),
                             dataclasses.replace(_GPT_TTT, k_lora=False, mlp_lora=False, o_lora=False,
                                                 num_phases=2, grad_steps=2)),
}


def gpt_config(name: str) -> ModelConfig:
    """The frontier switch set on the committed record params' model, at a tiny size."""
    extra = GPT_CASES[name][0]
    m = load_params(ROOT / "params.yaml").model
    return dataclasses.replace(
        m, vocab_size=VOCAB, num_layers=5, model_dim=32, num_heads=4, num_kv_heads=2, mlp_mult=2, rope_dims=4,
        rope_ref_len=GPT_SEQ_LEN, xsa_last_n=5, bigram_buckets=0, smear=True, smear_window=8, smear_bos_mask=True,
        canon=dataclasses.replace(m.canon, placements=""), embed_dtype="fp32", mlp_leaky_slope=0.5,
        skip_gates=True, attn_gate=dataclasses.replace(m.attn_gate, enabled=True, window=8, scale=0.5),
        lanes=dataclasses.replace(m.lanes, start_layer=3, final=extra.get("final", "mean")),
        recurrence=dataclasses.replace(m.recurrence, num_loops=extra.get("num_loops", 1), loop_start=1, loop_end=2))


def gpt_model(name: str) -> GPT:
    """pgolf's GPT of a case, every tensor of its state filled from one seeded generator."""
    torch.manual_seed(0)
    model = GPT(gpt_config(name)).eval()
    g = torch.Generator().manual_seed(4321)
    state = model.state_dict()
    with torch.no_grad():
        for key in sorted(state):
            state[key].copy_(torch.randn(state[key].shape, generator=g) * 0.3)
    return model


def case_inputs(name: str):
    """(model, tokens, luts, sidecar or None, cfg, seq_len, seed) of one case; fresh each call."""
    if name in GPT_CASES:
        return (gpt_model(name), toy_stream(VOCAB, GPT_DOCS, seed=11, max_len=70), toy_luts(), None,
                GPT_CASES[name][1], GPT_SEQ_LEN, SEED)
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
