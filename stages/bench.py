"""`pgolf bench`: training (or sliding-window eval) throughput of the configured model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import ParamsOption, app, load, user_errors


@app.command("bench")
@user_errors
def bench_command(
    params: ParamsOption = Path("params.yaml"),
    steps: Annotated[int, typer.Option(help="Timed steps (training) after the warm-up.")] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up steps (they include compilation).")] = 3,
    batch_seqs: Annotated[Optional[int], typer.Option(
        help="Sequences per step (default: one device's share, train_batch_tokens / 8 / seq_len).")] = None,
    eval_mode: Annotated[bool, typer.Option("--eval", help="Time the sliding-window evaluation instead.")] = False,
    eval_tokens: Annotated[int, typer.Option(help="Validation tokens to score with --eval.")] = 65536,
    compile_model: Annotated[Optional[bool], typer.Option(
        "--compile/--no-compile", help="Override train.compile (training) / compile on CUDA (eval).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Also write the figures as JSON here.")] = None,
) -> None:
    """Time the configured model on the available device with synthetic tokens (no data needed).

    Prints tokens/s per device, ms per step, model FLOPs per token, MFU, peak memory and compile time.
    Runs on CPU at small sizes and on one GPU at the record size.
    """
    from pipeline import atomic
    from pipeline.bench import bench_eval, bench_train
    from pipeline.runtime import init_runtime

    p = load(params)
    rt = init_runtime()
    if eval_mode:
        result = bench_eval(p, rt, eval_tokens, compile_model)
    else:
        result = bench_train(p, rt, steps, warmup, batch_seqs, compile_model)
    figures = result.to_dict()
    for key, value in figures.items():
        shown = f"{value:,.4g}" if isinstance(value, float) else str(value)
        typer.echo(f"{key:>18}: {shown}")
    if out is not None:
        atomic.write_json(out, figures)
    typer.echo(json.dumps(figures))
