"""Throughput of the configured model on the available device, with synthetic tokens.

Times full training steps (forward, backward, Muon + AdamW) at one device's
share of the record batch — `train_batch_tokens / 8` tokens, i.e. 48 x 2048
for the record — or the sliding-window evaluation (`--eval`), or works out the
training memory at that batch without timing anything (`--memory`).  No data is
needed: tokens are uniform random ids, which exercise the same kernels.

FLOPs per token (training): 6 x (matrix parameters that multiply every token,
the tied head included) + 6 x layers x seq_len x model_dim for causal
attention (QK^T and AV, forward 2·T·d per token each halved by the mask, x3
for backward).  With depth recurrence (model.recurrence) a looped block counts
once per pass, matrices and attention alike: the model is timed looped, its
steady state for the last 65 % of the record's training.  MFU is that times tokens/s over the device's dense bf16 peak.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from pipeline.activation_memory import MemoryEstimate, estimate_training_memory
from pipeline.config import ModelConfig, Params, TrainConfig
from pipeline.evaluate.bytes import ByteLuts
from pipeline.evaluate.scoring import evaluate_sliding_window
from pipeline.model import GPT
from pipeline.model.naming import counts_flops
from pipeline.optim import build_optimizers, muon_momentum
from pipeline.runtime import Runtime

# Dense bf16 tensor-core peaks (vendor datasheets, SXM parts), by device-name substring.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


@dataclass(frozen=True)
class BenchResult:
    mode: str
    device: str
    batch_seqs: int
    seq_len: int
    steps: int
    seconds: float
    tokens: int
    tokens_per_s: float
    ms_per_step: float
    flops_per_token: float
    achieved_tflops: float
    mfu: float | None
    peak_memory_bytes: int
    compile_seconds: float
    compiled: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters of the matrices every token passes through: those whose rule in
    `pipeline.model.naming.PARAM_RULES` counts FLOPs (blocks' linears, bigram.proj, the tied head).

    A block that depth recurrence runs several times counts once per pass
    (`GPT.layer_order()`, the model's current mode: looped for a model built
    from the config)."""
    encoder, decoder = model.layer_order() if hasattr(model, "layer_order") else ([], [])
    passes = [0] * len(model.blocks)
    for i in (encoder + decoder) or range(len(model.blocks)):
        passes[i] += 1
    total = 0
    for name, p in model.named_parameters():
        if counts_flops(name):
            total += p.numel() * (passes[int(name.split(".")[1])] if name.startswith("blocks.") else 1)
    return total


def block_passes(model: torch.nn.Module, cfg: ModelConfig) -> int:
    """Blocks run per forward: num_layers, more with depth recurrence on."""
    if hasattr(model, "layer_order"):
        encoder, decoder = model.layer_order()
        return len(encoder) + len(decoder)
    return cfg.num_layers


def train_flops_per_token(model: torch.nn.Module, cfg: ModelConfig, seq_len: int) -> float:
    return 6.0 * matmul_params(model) + 6.0 * block_passes(model, cfg) * seq_len * cfg.model_dim


def peak_tflops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None


def device_batch_seqs(tcfg: TrainConfig) -> int:
    """Sequences in one device's share of the record batch (8 GPUs, no accumulation)."""
    return max(1, tcfg.train_batch_tokens // (8 * tcfg.seq_len))


def bench_memory(params: Params, rt: Runtime, batch_seqs: int | None = None) -> MemoryEstimate:
    """Training memory at one device's batch, from the compiled graph (see activation_memory).
    Always under autocast, in the runtime's dtype or bf16 on a CPU: the GPU's training precision."""
    torch.manual_seed(0)
    model = GPT(params.model).to(rt.device)
    return estimate_training_memory(model, batch_seqs or device_batch_seqs(params.train), params.train.seq_len,
                                    rt.autocast_dtype or torch.bfloat16, rt.device)


def _random_batch(batch: int, seq_len: int, vocab: int, rt: Runtime, gen: torch.Generator):
    ids = torch.randint(0, vocab, (batch, seq_len + 1), generator=gen).to(rt.device)
    return ids[:, :-1], ids[:, 1:]


def bench_train(params: Params, rt: Runtime, steps: int, warmup: int, batch_seqs: int | None = None,
                compile_model: bool | None = None) -> BenchResult:
    """Time `steps` training steps after `warmup` (compile-priming) steps."""
    cfg, tcfg = params.model, params.train
    seq_len = tcfg.seq_len
    batch = batch_seqs or device_batch_seqs(tcfg)
    compiled = tcfg.compile if compile_model is None else compile_model
    torch.manual_seed(0)
    model = GPT(cfg).to(rt.device)
    fwd = torch.compile(model, fullgraph=True, dynamic=False) if compiled else model
    opt = build_optimizers(model, tcfg, rt)
    gen = torch.Generator().manual_seed(0)
    batches = [_random_batch(batch, seq_len, cfg.vocab_size, rt, gen) for _ in range(2)]

    def step(i: int) -> torch.Tensor:
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        with rt.autocast():
            loss = fwd(x, y)
        loss.backward()
        opt.set_schedule(1.0, muon_momentum(i, tcfg))
        torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip_norm or float("inf"))
        opt.step()
        return loss

    rt.synchronize()
    t0 = time.perf_counter()
    for i in range(warmup):
        step(i)
    rt.synchronize()
    compile_seconds = time.perf_counter() - t0
    rt.reset_peak_memory()
    t0 = time.perf_counter()
    for i in range(steps):
        loss = step(i)
    loss.item()
    rt.synchronize()
    seconds = time.perf_counter() - t0
    tokens = steps * batch * seq_len
    flops = train_flops_per_token(model, cfg, seq_len)
    return _result("train", rt, batch, seq_len, steps, seconds, tokens, flops, compile_seconds, compiled)


def bench_eval(params: Params, rt: Runtime, tokens: int, compile_model: bool | None = None) -> BenchResult:
    """Time the sliding-window evaluation (eval params) over `tokens` random validation tokens."""
    cfg, ecfg = params.model, params.eval
    compiled = rt.is_cuda if compile_model is None else compile_model
    torch.manual_seed(0)
    model = GPT(cfg).to(rt.device).eval()
    fwd = torch.compile(model, dynamic=False) if compiled else model
    gen = torch.Generator().manual_seed(0)
    stream = torch.randint(0, cfg.vocab_size, (tokens + 1,), generator=gen)
    ones = torch.ones(cfg.vocab_size, dtype=torch.int32)
    luts = ByteLuts(ones, torch.zeros(cfg.vocab_size, dtype=torch.bool), torch.zeros(cfg.vocab_size, dtype=torch.bool))
    # Exactly `tokens` targets are timed: the whole stream, not cut to whole windows.
    ecfg = dataclasses.replace(ecfg, stream="full")
    warm_cfg = dataclasses.replace(ecfg, max_tokens=min(tokens, ecfg.seq_len * 2))
    t0 = time.perf_counter()
    evaluate_sliding_window(fwd, stream, luts, warm_cfg, rt)  # compile + warm-up
    rt.synchronize()
    compile_seconds = time.perf_counter() - t0
    rt.reset_peak_memory()
    t0 = time.perf_counter()
    sums = evaluate_sliding_window(fwd, stream, luts, dataclasses.replace(ecfg, max_tokens=tokens), rt)
    rt.synchronize()
    seconds = time.perf_counter() - t0
    windows = -(-sums.tokens // ecfg.stride)
    forward_tokens = windows * ecfg.seq_len
    flops = (2.0 * matmul_params(model) + 2.0 * block_passes(model, cfg) * ecfg.seq_len * cfg.model_dim)
    result = _result("eval", rt, ecfg.batch_seqs, ecfg.seq_len, windows, seconds, sums.tokens,
                     flops * forward_tokens / max(sums.tokens, 1), compile_seconds, compiled)
    return result


def _result(mode: str, rt: Runtime, batch: int, seq_len: int, steps: int, seconds: float, tokens: int,
            flops_per_token: float, compile_seconds: float, compiled: bool) -> BenchResult:
    tokens_per_s = tokens / seconds
    achieved = flops_per_token * tokens_per_s / 1e12
    peak = peak_tflops(rt.device_name()) if rt.is_cuda else None
    return BenchResult(
        mode=mode, device=rt.device_name(), batch_seqs=batch, seq_len=seq_len, steps=steps,
        seconds=seconds, tokens=tokens, tokens_per_s=tokens_per_s, ms_per_step=1000.0 * seconds / max(steps, 1),
        flops_per_token=flops_per_token, achieved_tflops=achieved,
        mfu=achieved / peak if peak else None, peak_memory_bytes=rt.peak_memory_bytes(),
        compile_seconds=compile_seconds, compiled=compiled,
    )
