"""Causal attention kernels at the record's shapes: which one the model should call.

Times forward + backward of causal softmax attention with GQA (8 query heads
reading 4 KV heads, head_dim 64) for each scaled_dot_product_attention backend
PyTorch has (flash, memory-efficient, cuDNN; math on CPU only), both with
`enable_gqa=True` and with the KV heads expanded to the query heads first (what
a backend without GQA support needs; the expansion is timed too), and
FlashAttention-3 when `flash_attn_interface` is installed.  Inputs use the
model's layout: (B, T, H, D) tensors transposed to (B, H, T, D) views.  A
backend that cannot run a variant is reported as such, not skipped silently.

Training FLOPs per call: causal forward 2·B·H·T²·D, backward 2.5× that.

    python benchmarks/bench_attention.py                 # tiny, on the CPU
    python benchmarks/bench_attention.py --record        # one device's record batch (48 x 2048) on a GPU
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from pipeline.bench import device_batch_seqs
from pipeline.config import load_params
from pipeline.runtime import detect_runtime

try:  # the Hopper-only FlashAttention-3 wheel, as pipeline.model.attention imports it
    from flash_attn_interface import flash_attn_func
except ImportError:
    flash_attn_func = None

ROOT = Path(__file__).resolve().parents[1]


def sdpa_variant(backend: SDPBackend, expand: bool):
    def attend(q, k, v):
        if expand:
            rep = q.size(2) // k.size(2)
            k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
        with sdpa_kernel([backend]):
            y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                               is_causal=True, enable_gqa=not expand)
        return y.transpose(1, 2)
    return attend


def fa3(q, k, v):
    out = flash_attn_func(q, k, v, causal=True)
    return out[0] if isinstance(out, tuple) else out


def time_call(attend, q, k, v, iters: int, sync) -> float:
    """Median seconds of one forward + backward."""
    grad = torch.randn_like(q)
    times = []
    for i in range(iters + 2):
        for t in (q, k, v):
            t.grad = None
        sync()
        t0 = time.perf_counter()
        attend(q, k, v).backward(grad)
        sync()
        if i >= 2:  # two warm-up calls
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="48 x 2048 tokens, the record model's heads")
    parser.add_argument("--batch-seqs", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    m, t = params.model, params.train
    batch, seq_len = (device_batch_seqs(t), t.seq_len) if args.record else (args.batch_seqs, args.seq_len)
    rt = detect_runtime()
    dtype = rt.autocast_dtype or torch.float32
    gen = torch.Generator().manual_seed(0)

    def make(heads: int) -> torch.Tensor:
        x = torch.randn(batch, seq_len, heads, m.head_dim, generator=gen, dtype=torch.float32)
        return x.to(rt.device, dtype).requires_grad_()

    q, k, v = make(m.num_heads), make(m.num_kv_heads), make(m.num_kv_heads)
    flops = 3.5 * 2 * batch * m.num_heads * seq_len**2 * m.head_dim
    variants = {}
    backends = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION]
    if not rt.is_cuda:
        backends.append(SDPBackend.MATH)
    for backend in backends:
        for expand in (False, True):
            variants[f"sdpa {backend.name.lower()} {'expanded kv' if expand else 'enable_gqa'}"] = sdpa_variant(
                backend, expand)
    if flash_attn_func is not None and rt.is_cuda:
        variants["flash-attention 3"] = fa3
    print(f"device {rt.device_name()}, {dtype}, B={batch} T={seq_len} H={m.num_heads} "
          f"Hkv={m.num_kv_heads} D={m.head_dim}, forward + backward, median of {args.iters}")
    results = {}
    for name, attend in variants.items():
        try:
            seconds = time_call(attend, q, k, v, args.iters, rt.synchronize)
        except RuntimeError as err:  # "No available kernel" and the like
            results[name] = {"error": str(err).splitlines()[0][:160]}
            print(f"{name:>36}: cannot run ({results[name]['error']})")
            continue
        results[name] = {"ms": 1000 * seconds, "tflops": flops / seconds / 1e12}
        print(f"{name:>36}: {1000 * seconds:9.3f} ms  {flops / seconds / 1e12:8.2f} TFLOP/s")
    if args.out:
        args.out.write_text(json.dumps({"device": rt.device_name(), "batch_seqs": batch, "seq_len": seq_len,
                                        "results": results}, indent=2))


if __name__ == "__main__":
    main()
