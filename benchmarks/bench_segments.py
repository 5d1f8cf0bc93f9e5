"""Per-document (segmented) attention at the frontier's packed-row shape: which route pays.

Times forward + backward of causal attention within documents on one (1, N) row
(`train.batch_layout: documents`; N = 98,304 tokens per rank, 8 query heads
reading 4 KV heads, head_dim 64, bf16) for the routes of
`CausalSelfAttention._attend_segments`: FlashAttention-3's varlen kernel (when
`flash_attn_interface` is installed), FlexAttention compiled with the BlockMask
built inside the graph from cu_seqlens (the training route without FA3), and
the eager per-segment SDPA loop; then, at a smaller N where the N x N mask
fits, the same routes and SDPA under the dense block-diagonal mask, with
flex's largest difference from the masked path.  Document lengths are seeded
lognormal draws (mean ~1,000 tokens, FineWeb-like), cut every 2,048 tokens as
training cuts them.  FLOPs count only the causal pairs within each segment:
forward 2·H·L²·D per segment of L tokens, backward 2.5× that.

    python benchmarks/bench_segments.py              # needs CUDA; on a CPU it says so and exits
    python benchmarks/bench_segments.py --out segments.json
    python benchmarks/bench_segments.py --mask-tokens 0 --iters 5   # the frontier row only (gpu_record.sh)
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from pipeline.model.attention import Segments, document_block_mask, flex_attention
from pipeline.runtime import detect_runtime

try:  # the Hopper-only FlashAttention-3 wheel, as pipeline.model.attention imports it
    from flash_attn_interface import flash_attn_varlen_func
except ImportError:
    flash_attn_varlen_func = None


def document_segments(n: int, mean_len: float, cut: int, seed: int, device: torch.device) -> Segments:
    """Segments of a row of n tokens: documents of lognormal length (sigma 1, mean `mean_len`),
    the first one entered mid-way as a packed row is, each cut every `cut` tokens."""
    g = torch.Generator().manual_seed(seed)
    sigma = 1.0
    mu = math.log(mean_len) - sigma**2 / 2
    starts, pos = [], int(torch.randint(1, int(mean_len), (1,), generator=g))
    while pos < n:
        starts.append(pos)
        length = torch.empty(1).log_normal_(mu, sigma, generator=g).item()
        pos += max(1, round(length))
    return Segments.from_starts(starts, n, cut, device, bound=cut)


def causal_flops(segments: Segments, heads: int, head_dim: int) -> float:
    b = segments.bounds
    return 3.5 * sum(2 * heads * (e - s) ** 2 * head_dim for s, e in zip(b, b[1:]))


def time_call(attend: Callable, q, k, v, iters: int) -> float:
    """Median seconds of one forward + backward, after two warm-up calls."""
    grad = torch.randn_like(q)
    times = []
    for i in range(iters + 2):
        for t in (q, k, v):
            t.grad = None
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        attend(q, k, v).backward(grad)
        torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def routes(segments: Segments, n: int, dense_mask: bool) -> dict[str, Callable]:
    """The (1, N, H, D) -> (1, N, H, D) attention of each route on these segments."""
    cu = segments.cu_seqlens

    def flex_in_graph(q, k, v, cu):
        block_mask = document_block_mask(cu, n)
        y = flex_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=block_mask,
                           enable_gqa=True)
        return y.transpose(1, 2)

    compiled = torch.compile(flex_in_graph, fullgraph=True, dynamic=False)

    def per_segment(q, k, v):
        b = segments.bounds
        return torch.cat([
            F.scaled_dot_product_attention(q[:, s:e].transpose(1, 2), k[:, s:e].transpose(1, 2),
                                           v[:, s:e].transpose(1, 2), is_causal=True,
                                           enable_gqa=True).transpose(1, 2)
            for s, e in zip(b, b[1:])], dim=1)

    out: dict[str, Callable] = {}
    if flash_attn_varlen_func is not None:
        def fa3(q, k, v):
            y = flash_attn_varlen_func(q[0], k[0], v[0], cu_seqlens_q=cu, cu_seqlens_k=cu,
                                       max_seqlen_q=segments.max_len, max_seqlen_k=segments.max_len, causal=True)
            return (y[0] if isinstance(y, tuple) else y)[None]
        out["fa3 varlen"] = fa3
    out["flex compiled (BlockMask in graph)"] = lambda q, k, v: compiled(q, k, v, cu)
    out["sdpa per segment (eager)"] = per_segment
    if dense_mask:
        mask = segments.mask(n)
        out["sdpa dense mask"] = lambda q, k, v: F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, enable_gqa=True).transpose(1, 2)
    return out


def bench_size(n: int, args, dense_mask: bool, device: torch.device) -> dict:
    segments = document_segments(n, args.mean_doc, args.max_len, args.seed, device)
    b = segments.bounds
    lengths = [e - s for s, e in zip(b, b[1:])]
    flops = causal_flops(segments, args.heads, args.head_dim)
    gen = torch.Generator().manual_seed(0)

    def make(heads: int) -> torch.Tensor:
        x = torch.randn(1, n, heads, args.head_dim, generator=gen)
        return x.to(device, torch.bfloat16).requires_grad_()

    q, k, v = make(args.heads), make(args.kv_heads), make(args.kv_heads)
    print(f"N={n}: {len(lengths)} segments (mean {sum(lengths) / len(lengths):.0f}, longest {max(lengths)}), "
          f"cu_seqlens {segments.cu_seqlens.numel()}, within-document causal {flops / 1e12:.3f} TFLOP per fwd+bwd")
    block = torch.compile(lambda cu: document_block_mask(cu, n).kv_num_blocks, fullgraph=True, dynamic=False)
    block(segments.cu_seqlens)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.iters):
        block(segments.cu_seqlens)
    torch.cuda.synchronize()
    build_ms = 1000 * (time.perf_counter() - t0) / args.iters
    print(f"{'BlockMask from cu_seqlens (compiled)':>40}: {build_ms:9.3f} ms")
    results: dict = {"block_mask_build_ms": build_ms}
    outputs = {}
    for name, attend in routes(segments, n, dense_mask).items():
        try:
            t0 = time.perf_counter()
            seconds = time_call(attend, q, k, v, args.iters)
            total = time.perf_counter() - t0
            with torch.no_grad():
                outputs[name] = attend(q, k, v).float()
        except (RuntimeError, torch.OutOfMemoryError) as err:
            results[name] = {"error": str(err).splitlines()[0][:160]}
            print(f"{name:>40}: cannot run ({results[name]['error']})")
            continue
        results[name] = {"ms": 1000 * seconds, "tflops": flops / seconds / 1e12, "first_calls_s": total}
        print(f"{name:>40}: {1000 * seconds:9.3f} ms  {flops / seconds / 1e12:8.2f} TFLOP/s"
              f"  (all calls incl. compile {total:.1f} s)")
    reference = next((outputs[r] for r in ("sdpa dense mask", "sdpa per segment (eager)") if r in outputs), None)
    if reference is not None:
        for name, y in outputs.items():
            diff = (y - reference).abs().max().item()
            results.setdefault(name, {})["max_abs_diff"] = diff
            print(f"{name:>40}: max |difference| from the SDPA reference {diff:.3e}")
    return {"tokens": n, "segments": len(lengths), "flops": flops, "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=98_304, help="the packed row (frontier: 98,304)")
    parser.add_argument("--mask-tokens", type=int, default=16_384, help="the smaller row where the dense mask fits (0: skip it)")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=2048, help="train.seq_len: documents are cut every this")
    parser.add_argument("--mean-doc", type=float, default=1000.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    rt = detect_runtime()
    if not rt.is_cuda:
        print("bench_segments: needs CUDA (FlexAttention has no CPU backward and its CPU path is "
              "the unfused reference); nothing timed")
        return
    if flex_attention is None:
        print(f"bench_segments: torch {torch.__version__} has no FlexAttention; nothing timed")
        return
    print(f"device {rt.device_name()}, torch {torch.__version__}, bf16, H={args.heads} Hkv={args.kv_heads} "
          f"D={args.head_dim}, forward + backward, median of {args.iters}; "
          f"FA3 {'installed' if flash_attn_varlen_func else 'not installed'}")
    sizes = [bench_size(args.mask_tokens, args, True, rt.device)] if args.mask_tokens > 0 else []
    sizes.append(bench_size(args.tokens, args, False, rt.device))
    if args.out:
        args.out.write_text(json.dumps({"device": rt.device_name(), "torch": torch.__version__, "sizes": sizes},
                                       indent=2))


if __name__ == "__main__":
    main()
