"""Sliding-window (and standard) evaluation throughput (SPEC §5), tiny on CPU by default.

Scores a random token stream with a small GPT built from params.yaml's
architecture (Canon, XSA, bigram, smear on), or the record model itself with
--record-model, reporting tokens scored per second and windows per second.
Sliding scoring runs every window over seq_len tokens to score `stride` of
them, so it costs ~seq_len/stride times standard evaluation; the figures show
that ratio.  Runs on the device `detect_runtime` picks (--cpu forces CPU).

    python benchmarks/bench_sliding_eval.py [--tokens 16384] [--seq-len 256] [--stride 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from pipeline.config import load_params
from pipeline.evaluate.bytes import ByteLuts
from pipeline.evaluate.scoring import evaluate_sliding_window, evaluate_standard
from pipeline.evaluate.windows import plan_sliding
from pipeline.model import GPT
from pipeline.runtime import detect_runtime

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--stride", type=int, default=64)
    parser.add_argument("--batch-seqs", type=int, default=16)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--record-model", action="store_true", help="params.yaml's model as is")
    parser.add_argument("--cpu", action="store_true", help="stay on CPU even if CUDA is there")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs (shared machines are noisy)")
    args = parser.parse_args()

    params = load_params(ROOT / "params.yaml")
    model_cfg = params.model if args.record_model else dataclasses.replace(
        params.model, num_layers=args.layers, model_dim=args.dim, num_heads=4, num_kv_heads=2,
        xsa_last_n=min(2, args.layers), canon=dataclasses.replace(params.model.canon, last_n=min(2, args.layers)),
    )
    eval_cfg = dataclasses.replace(params.eval, seq_len=args.seq_len, stride=args.stride,
                                   batch_seqs=args.batch_seqs, max_tokens=0)
    rt = detect_runtime(force_cpu=args.cpu)
    torch.manual_seed(0)
    model = GPT(model_cfg).to(rt.device)
    vocab = model_cfg.vocab_size
    tokens = torch.randint(0, vocab, (args.tokens + 1,), dtype=torch.int32)
    luts = ByteLuts(torch.full((vocab,), 3, dtype=torch.int32), torch.zeros(vocab, dtype=torch.bool),
                    torch.zeros(vocab, dtype=torch.bool))
    windows = len(plan_sliding(args.tokens, args.seq_len, args.stride))

    def best(fn):
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = fn(model, tokens, luts, eval_cfg, rt)
            rt.synchronize()
            times.append(time.perf_counter() - t0)
        return result, min(times)

    evaluate_standard(model, tokens[: 4 * args.seq_len + 1], luts, eval_cfg, rt)  # warm-up
    std, std_s = best(evaluate_standard)
    sld, sld_s = best(evaluate_sliding_window)

    n_params = sum(p.numel() for p in model.parameters())
    print(f"device: {rt.device_name()}, autocast {rt.autocast_dtype}, torch threads {torch.get_num_threads()}")
    print(f"model: {model_cfg.num_layers} layers, dim {model_cfg.model_dim}, {n_params:,} parameters")
    print(f"stream: {args.tokens:,} targets, seq_len {args.seq_len}, stride {args.stride}, batch {args.batch_seqs}")
    print(f"best of {args.repeat} runs each")
    print(f"standard: {std.tokens:,} tokens in {std_s:.2f} s = {std.tokens / std_s:,.0f} tokens/s")
    print(f"sliding:  {sld.tokens:,} tokens ({windows:,} windows) in {sld_s:.2f} s = "
          f"{sld.tokens / sld_s:,.0f} tokens/s, {windows / sld_s:,.1f} windows/s")
    print(f"sliding / standard time per token: {(sld_s / sld.tokens) / (std_s / std.tokens):.1f}x")


if __name__ == "__main__":
    main()
