"""Quantise + pack time and packed size of a record-size state dict (SPEC §4), on CPU.

The state dict has the record model's names and shapes (params.yaml, ~27 M
parameters) filled with Gaussian noise of a trained-like scale, so the size is
that of incompressible weights: a trained model packs somewhat smaller.  Prints
the time of each phase (quantise, torch.save, zstd) and of reading it back.

    python benchmarks/bench_quantize.py [--level 22] [--std 0.03]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import tempfile
import time
from pathlib import Path

import torch

from pipeline.config import load_params
from pipeline.export.script import exported_code_bytes
from pipeline.model import GPT
from pipeline.quant.artifact import pack_artifact, read_artifact
from pipeline.quant.size import size_report

ROOT = Path(__file__).resolve().parents[1]


def record_state_dict(std: float, seed: int = 0) -> dict[str, torch.Tensor]:
    cfg = load_params(ROOT / "params.yaml").model
    with torch.device("meta"):
        shapes = {name: t.shape for name, t in GPT(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=g) * std for name, shape in shapes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", type=int, default=22, help="zstd level (the record uses 22)")
    parser.add_argument("--std", type=float, default=0.03, help="scale of the random weights")
    args = parser.parse_args()

    record = load_params(ROOT / "params.yaml")
    cfg = dataclasses.replace(record.quant, zstd_level=args.level, allow_oversize=True)
    sd = record_state_dict(args.std)
    params = sum(t.numel() for t in sd.values())
    t0 = time.perf_counter()
    blob, stats = pack_artifact(sd, cfg, {"bench": True})
    total_s = time.perf_counter() - t0
    size = size_report(stats.file_bytes, cfg, exported_code_bytes(record))
    with tempfile.TemporaryDirectory(prefix="bench_quantize.") as tmp:
        path = Path(tmp) / "model.int6.ptz"
        path.write_bytes(blob)
        t1 = time.perf_counter()
        read_artifact(path)
        read_s = time.perf_counter() - t1

    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")
    print(f"state dict: {len(sd)} tensors, {params:,} parameters (record shapes, N(0, {args.std}^2))")
    print(f"schemes: {stats.counts}")
    print(f"quantise + torch.save: {stats.quantize_seconds:.2f} s   payload {stats.payload_bytes:,} bytes")
    print(f"zstd level {args.level}: {stats.compress_seconds:.2f} s   artifact {stats.file_bytes:,} bytes")
    print(f"pack total: {total_s:.2f} s   read + verify + dequantise: {read_s:.2f} s")
    print(f"code: {size.code_bytes:,} bytes (train_gpt.py)   total {size.total_bytes:,} "
          f"of cap {size.cap_bytes:,} (headroom {size.headroom_bytes:,})")


if __name__ == "__main__":
    main()
