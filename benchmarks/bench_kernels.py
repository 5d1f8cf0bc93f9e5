"""The fused Triton kernels against the plain PyTorch paths they replace: time, memory, agreement.

For each of the record's two kernels (pipeline/model/kernels), forward + backward
of: the plain path eagerly, the plain path under torch.compile (what training
runs when the kernels are off: Inductor fuses the element-wise parts itself),
and the fused path.  Per variant: median milliseconds, peak memory above the
inputs, and the largest difference of the loss/output and the gradients from
the eager plain path.  Inputs are in the runtime's autocast dtype (bf16 on a
GPU), as the training step hands them over.

    soft-capped CE   logits (tokens, vocab) -> mean loss, cap model.logit_softcap
    LeakyReLU² MLP   x (tokens, dim), W1 (hidden, dim), W2 (dim, hidden) -> out

    python benchmarks/bench_kernels.py --record     # one device's record micro-batch:
                                                    # 48 x 2048 = 98,304 tokens, vocab 8192,
                                                    # dim 512, hidden 2048, cap 30
    python benchmarks/bench_kernels.py --tokens 4096 --vocab 1024 --dim 128 --hidden 512

The kernels are GPU kernels: without CUDA this says so and exits 0 (the CPU
tests run them in Triton's interpreter instead: tests/model/test_kernels.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from pipeline.model.kernels import leaky_mlp, plain_leaky_mlp, plain_softcapped_ce, softcapped_ce
from pipeline.model.kernels._triton import triton_available
from pipeline.runtime import Runtime, detect_runtime

RECORD = {"tokens": 48 * 2048, "vocab": 8192, "softcap": 30.0, "dim": 512, "hidden": 2048, "slope": 0.5}


def measure(rt: Runtime, fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], grad: torch.Tensor | None,
            iters: int) -> dict[str, object]:
    """Median ms of forward + backward, peak bytes above the inputs, and the last outputs."""
    times, peak = [], 0
    for i in range(iters + 3):  # three warm-up calls (compilation, autotuning)
        for t in inputs:
            t.grad = None
        rt.synchronize()
        rt.reset_peak_memory()
        base = rt.peak_memory_bytes()  # right after a reset: what the inputs (and old outputs) hold
        t0 = time.perf_counter()
        out = fn(*inputs)
        out.backward(grad if grad is not None else torch.ones_like(out))
        rt.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t0)
            peak = max(peak, rt.peak_memory_bytes() - base)
        last = [out.detach()] + [t.grad for t in inputs]
    return {"ms": 1000 * sorted(times)[len(times) // 2], "peak_mib": peak / 2**20, "tensors": last}


def compare(name: str, variants: dict[str, Callable], rt: Runtime, inputs: list[torch.Tensor],
            grad: torch.Tensor | None, iters: int, flops: float) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    reference = None
    print(f"{name}:")
    for label, fn in variants.items():
        r = measure(rt, fn, inputs, grad, iters)
        tensors = r.pop("tensors")
        if reference is None:
            reference = tensors
        r["max_abs_diff"] = max(float((a.float() - b.float()).abs().max()) for a, b in zip(tensors, reference))
        r["tflops"] = flops / (r["ms"] / 1000) / 1e12 if flops else 0.0
        results[label] = r
        print(f"  {label:>18}: {r['ms']:9.3f} ms  peak {r['peak_mib']:9.1f} MiB  "
              f"max |diff| vs plain {r['max_abs_diff']:.3g}" + (f"  {r['tflops']:.1f} TFLOP/s" if flops else ""))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="the record's shapes (see above)")
    for key in ("tokens", "vocab", "dim", "hidden"):
        parser.add_argument(f"--{key}", type=int, default=RECORD[key])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile'd plain paths")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    shape = dict(RECORD) if args.record else {**RECORD, **{k: getattr(args, k) for k in ("tokens", "vocab", "dim",
                                                                                          "hidden")}}
    rt = detect_runtime()
    if not rt.is_cuda or not triton_available():
        print("bench_kernels: the fused kernels need CUDA and Triton "
              f"(device {rt.device.type}, triton {'present' if triton_available() else 'missing'}); nothing timed")
        sys.exit(0)
    dtype = rt.autocast_dtype or torch.float32
    gen = torch.Generator().manual_seed(0)
    n, v, cap = shape["tokens"], shape["vocab"], shape["softcap"]
    print(f"device {rt.device_name()}, {dtype}, forward + backward, median of {args.iters}")

    logits = (torch.randn(n, v, generator=gen) * 10).to(rt.device, dtype).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=gen).to(rt.device)
    ce = {"plain": lambda x: plain_softcapped_ce(x, targets, cap)}
    if not args.no_compile:
        ce["plain compiled"] = torch.compile(ce["plain"], fullgraph=True)
    ce["fused"] = lambda x: softcapped_ce(x, targets, cap)
    results = {"softcapped_ce": compare(f"soft-capped CE, {n} x {v}, cap {cap}", ce, rt, [logits], None,
                                        args.iters, 0.0)}
    del logits

    d, h, slope = shape["dim"], shape["hidden"], shape["slope"]
    x = torch.randn(n, d, generator=gen).to(rt.device, dtype).requires_grad_()
    w1 = (torch.randn(h, d, generator=gen) / d**0.5).to(rt.device, dtype).requires_grad_()
    w2 = (torch.randn(d, h, generator=gen) / h**0.5).to(rt.device, dtype).requires_grad_()
    grad = torch.randn(n, d, generator=gen).to(rt.device, dtype)
    mlp = {"plain": lambda x, w1, w2: plain_leaky_mlp(x, w1, w2, slope)}
    if not args.no_compile:
        mlp["plain compiled"] = torch.compile(mlp["plain"], fullgraph=True)
    mlp["fused"] = lambda x, w1, w2: leaky_mlp(x, w1, w2, slope)
    flops = 3 * 2 * 2 * n * d * h  # two matmuls forward, four backward
    results["leaky_mlp"] = compare(f"LeakyReLU({slope})² MLP, {n} x {d} -> {h} -> {d}", mlp, rt, [x, w1, w2], grad,
                                   args.iters, flops)
    if args.out:
        args.out.write_text(json.dumps({"device": rt.device_name(), "dtype": str(dtype), "shape": shape,
                                        "results": results}, indent=2))


if __name__ == "__main__":
    main()
