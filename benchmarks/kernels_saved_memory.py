"""Activations the compiled training step saves for backward, fused kernels against plain (CPU).

Traces the frontier profile's model (`pipeline.activation_memory.trace_saved_bytes`:
the compiled graph's forward/backward partition, bf16 autocast) once with
`model.fused_kernels: off` and once with `on`, the kernels running in Triton's
CPU interpreter (set here, before Triton is imported).  One sequence of
--seq-len tokens; the interpreter makes `on` slow (~3 min at 64 tokens on 2 cores).

    python benchmarks/kernels_saved_memory.py --seq-len 64
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports Triton

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pipeline.activation_memory import trace_saved_bytes  # noqa: E402
from pipeline.config import load_params  # noqa: E402
from pipeline.model import GPT  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=64)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from tests.test_profiles import compose  # the composition `dvc exp run -S profile=frontier` does

    params = load_params(compose(Path(tempfile.mkdtemp(prefix="frontier-")), "profile=frontier"))
    for mode in ("off", "on"):
        torch.manual_seed(0)
        model = GPT(dataclasses.replace(params.model, fused_kernels=mode)).train()
        saved = trace_saved_bytes(model, 1, args.seq_len, torch.bfloat16, torch.device("cpu"))
        by_dtype = ", ".join(f"{k} {v:,}" for k, v in sorted(saved.items()))
        print(f"fused_kernels={mode}: {sum(saved.values()):,} bytes saved for backward ({by_dtype})")


if __name__ == "__main__":
    main()
