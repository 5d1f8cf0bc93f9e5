"""Post-training on a smoke-trained model: artifact bytes and round-trip bpb of RTN, GPTQ and GPTQ+LQER,
and the bytes of every compressor, with the seconds each takes on this CPU (docs/performance.md's table).

    python benchmarks/bench_postquant.py [--workspace /tmp/pgolf-postquant] [--seed 1]

Composes the smoke profile into <workspace>/params.yaml, runs `pgolf prepare`,
`train` and `swa` there for one seed (skipped when their outputs exist), then packs
the averaged weights in memory with each setting.  bpb is the standard
(non-overlapping windows) bpb of the weights read back from the artifact, on the
smoke profile's validation tokens.  Compressors do not change the weights, so
they are compared on the GPTQ+LQER payload.  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pipeline.config import load_params  # noqa: E402
from pipeline.evaluate.session import Evaluator  # noqa: E402
from pipeline.layout import RunLayout, seed_dir  # noqa: E402
from pipeline.quant.artifact import pack_artifact, read_artifact  # noqa: E402
from pipeline.quant.compressors import COMPRESSORS  # noqa: E402
from pipeline.quant.packing import method_inputs  # noqa: E402
from pipeline.runtime import detect_runtime  # noqa: E402
from pipeline.stage_files import read_state_dict  # noqa: E402


def prepare_workspace(ws: Path, seed: int) -> None:
    ws.mkdir(parents=True, exist_ok=True)
    if not (ws / "params.yaml").exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "compose-params"), "-o", str(ws / "params.yaml"),
                        "profile=smoke"], check=True)
    pgolf = [sys.executable, "-m", "stages.cli"]  # this interpreter's pgolf
    run = RunLayout(seed_dir(ws / "runs", seed))
    steps = [(["prepare"], ws / "data" / "manifest.json"), (["train", "--seed", str(seed)], run.train_summary),
             (["swa", "--seed", str(seed)], run.averaged)]
    for args, done in steps:
        if not done.exists():
            t0 = time.perf_counter()
            subprocess.run([*pgolf, *args, "--params", "params.yaml"], cwd=ws, check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
            print(f"pgolf {' '.join(args)}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path(tempfile.gettempdir()) / "pgolf-postquant")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lqer-top-k", type=int, default=3)
    args = parser.parse_args()
    ws = args.workspace.resolve()
    prepare_workspace(ws, args.seed)
    params = load_params(ws / "params.yaml")
    params = dataclasses.replace(params, data=dataclasses.replace(params.data, out_dir=str(ws / "data")))
    state = read_state_dict(RunLayout(seed_dir(ws / "runs", args.seed)).averaged, "run the smoke seed first")
    ev = Evaluator(params.model, params.eval, ws / "data", detect_runtime(force_cpu=True))
    torch.manual_seed(0)
    prequant = ev.standard(ev.model_from_state(state))[0].bpb

    q = params.quant
    variants = {
        "RTN": q,
        "GPTQ (SD-clip)": dataclasses.replace(q, method="gptq"),
        "GPTQ (Hessian-aware SD-clip, lambda 0.5)": dataclasses.replace(
            q, method="gptq", gptq=dataclasses.replace(q.gptq, hessian_clip_lambda=0.5)),
        "GPTQ (percentile search)": dataclasses.replace(q, method="gptq", gptq=dataclasses.replace(q.gptq, clip="search")),
        f"GPTQ + LQER (top {args.lqer_top_k}, rank {q.lqer.rank})": dataclasses.replace(
            q, method="gptq", lqer=dataclasses.replace(q.lqer, top_k=args.lqer_top_k)),
    }
    print(f"Smoke profile, seed {args.seed}, {sum(t.numel() for t in state.values()):,} parameters; "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
          f"pre-quantisation standard bpb {prequant:.5f}.\n")
    print("| quantiser (zstd-22) | artifact bytes | round-trip bpb | calibration s | quantise s | compress s |")
    print("|---|---:|---:|---:|---:|---:|")
    inputs_by_method: dict[str, dict] = {}
    for label, cfg in variants.items():
        inputs = inputs_by_method.setdefault(cfg.method, method_inputs(dataclasses.replace(params, quant=cfg), state))
        blob, stats = pack_artifact(state, cfg, {}, inputs)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "a.ptz").write_bytes(blob)
            back, _ = read_artifact(Path(tmp) / "a.ptz")
        bpb = ev.standard(ev.model_from_state(back))[0].bpb
        print(f"| {label} | {len(blob):,} | {bpb:.5f} | {stats.calibration_seconds:.2f} | "
              f"{stats.quantize_seconds:.2f} | {stats.compress_seconds:.2f} |")
    last = list(variants.values())[-1]
    print(f"\n| compressor (on {list(variants)[-1]}) | artifact bytes | vs zstd | compress s | decompress s |")
    print("|---|---:|---:|---:|---:|")
    zstd_bytes = None
    for name, c in COMPRESSORS.items():
        if c.check_available is not None:
            try:
                c.check_available()
            except Exception as exc:  # noqa: BLE001 - the reason is printed
                print(f"| {name} | not available: {exc} | | | |")
                continue
        blob, stats = pack_artifact(state, dataclasses.replace(last, compressor=name), {}, inputs_by_method["gptq"])
        t0 = time.perf_counter()
        c.decompress(blob[52:])
        seconds = time.perf_counter() - t0
        zstd_bytes = zstd_bytes or len(blob)
        print(f"| {name} | {len(blob):,} | {100 * (len(blob) - zstd_bytes) / zstd_bytes:+.1f} % | "
              f"{stats.compress_seconds:.2f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
