"""`pgolf bench`: training (or sliding-window eval) throughput of the configured model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import ParamsOption, app, load, user_errors


def _shown(key: str, value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" + (f" ({value / 2**30:.2f} GiB)" if key.endswith("_bytes") else "")
    return str(value)


@app.command("bench")
@user_errors
def bench_command(
    params: ParamsOption = Path("params.yaml"),
    steps: Annotated[int, typer.Option(help="Timed steps (training) after the warm-up.")] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up steps (they include compilation).")] = 3,
    batch_seqs: Annotated[Optional[int], typer.Option(
        help="Sequences per step (default: one device's share, train_batch_tokens / 8 / seq_len).")] = None,
    eval_mode: Annotated[bool, typer.Option("--eval", help="Time the sliding-window evaluation instead.")] = False,
    memory: Annotated[bool, typer.Option(
        "--memory", help="Estimate a training step's memory from the compiled graph instead of timing: "
        "weights, gradients, optimiser moments and the activations saved for backward, under bf16 "
        "autocast as on the GPU. Needs no GPU.")] = False,
    eval_tokens: Annotated[int, typer.Option(help="Validation tokens to score with --eval.")] = 65536,
    compile_model: Annotated[Optional[bool], typer.Option(
        "--compile/--no-compile", help="Override train.compile (training) / compile on CUDA (eval).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Also write the figures as JSON here.")] = None,
) -> None:
    """Time the configured model on the available device with synthetic tokens (no data needed).

    Prints tokens/s per device, ms per step, model FLOPs per token, MFU, peak memory and compile time.
    Runs on CPU at small sizes and on one GPU at the record size.  With --memory, prints the training
    memory at the same batch worked out from the compiled graph, on any machine (about 30 s on a
    2-core CPU for the record model).
    """
    from pipeline import atomic
    from pipeline.bench import bench_eval, bench_memory, bench_train
    from pipeline.runtime import init_runtime

    if eval_mode and memory:
        raise typer.BadParameter("--eval and --memory are separate modes; pass one of them")
    p = load(params)
    rt = init_runtime()
    if memory:
        result = bench_memory(p, rt, batch_seqs)
    elif eval_mode:
        result = bench_eval(p, rt, eval_tokens, compile_model)
    else:
        result = bench_train(p, rt, steps, warmup, batch_seqs, compile_model)
    figures = result.to_dict()
    for key, value in figures.items():
        typer.echo(f"{key:>22}: {_shown(key, value)}")
    if out is not None:
        atomic.write_json(out, figures)
    typer.echo(json.dumps(figures))
