"""`pgolf evaluate --seed N`: the per-seed figures of SPEC §5, with provenance."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import ParamsOption, app, load, user_errors


@app.command("evaluate")
@user_errors
def evaluate_command(
    seed: Annotated[Optional[int], typer.Option(help="Seed to score: its artifact, averaged weights and train summary.")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(
        help="Score this file instead: a state dict .pt with reference parameter names, or a .ptz artifact.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Metrics file to write (default metrics/seeds/seed_<seed>.json, or metrics/<checkpoint>.json).")] = None,
    params: ParamsOption = Path("params.yaml"),
    progress: Annotated[Optional[bool], typer.Option(help="Show progress on rank 0. Default: on when stderr is a terminal.")] = None,
) -> None:
    """Score one seed's packed artifact (or any checkpoint) on the validation split.

    Decompresses and dequantises the artifact into a fresh model and writes the per-seed
    metrics: pre-quantisation standard bpb (of the final weights and of the averaged weights),
    int6 round-trip standard bpb, int6 sliding-window
    bpb (the score), steps, train time, compressed and total bytes, timings and provenance.

    With train.nproc_per_node > 1 the windows are split across ranks under torchrun (train.launcher:
    torchrun re-launches under torchrun at one process too).
    """
    from pipeline import atomic
    from pipeline.config import check_seed
    from pipeline.errors import PgolfError
    from pipeline.evaluate.session import Evaluator, checkpoint_metrics, evaluation_inputs, seed_metrics
    from pipeline.layout import MetricsLayout, RunLayout, seed_dir
    from pipeline.provenance import provenance
    from pipeline.quant.pairing import check_size_report
    from pipeline.preflight import prepared_data, preflight
    from pipeline.runtime import init_runtime, launched_by_torchrun, shutdown_runtime
    from pipeline.stage_files import write_seed_metrics
    from pipeline.train.launch import relaunch

    if (seed is None) == (checkpoint is None):
        raise PgolfError("give exactly one of --seed or --checkpoint")
    if seed is not None:
        check_seed(seed)
    p = load(params)
    run = RunLayout(seed_dir(Path(p.train.out_dir), seed)) if seed is not None else None
    if checkpoint is not None:
        target = out or MetricsLayout().root / f"{checkpoint.stem}.json"
    else:
        target = out or MetricsLayout().seed(seed)
    preflight(reads=[*prepared_data(Path(p.data.out_dir), p.model.vocab_size, ["val"]),
                     *(evaluation_inputs(run, seed) if run is not None else [(checkpoint, "--checkpoint")])],
              writes=[(target, "--out" if out is not None else "metrics")])
    if run is not None:  # the artifact and size.json of one quantize run (pipeline.quant.pairing)
        check_size_report(run.artifact, run.size_report, seed)
    nproc = p.train.nproc_per_node
    if (nproc > 1 or p.train.launcher == "torchrun") and not launched_by_torchrun():
        args = ["evaluate", "--params", str(params)]
        args += ["--seed", str(seed)] if seed is not None else ["--checkpoint", str(checkpoint)]
        args += ["--out", str(out)] if out is not None else []
        args += [] if progress is None else (["--progress"] if progress else ["--no-progress"])
        raise typer.Exit(relaunch(nproc, args))

    rt = init_runtime()
    try:
        show = sys.stderr.isatty() if progress is None else progress
        ev = Evaluator(p.model, p.eval, Path(p.data.out_dir), rt, progress=show and rt.is_main)
        eval_params, prov = dataclasses.asdict(p.eval), provenance(rt, p.digest())
        if checkpoint is not None:
            metrics = {**checkpoint_metrics(ev, checkpoint), "eval": eval_params, "provenance": prov}
            score = metrics["sliding_bpb"]
            if rt.is_main:
                atomic.write_json(target, metrics)
        else:
            scored = seed_metrics(ev, run).with_run(seed, eval_params, prov)
            score = scored.sliding_bpb
            if rt.is_main:
                write_seed_metrics(target, scored)
        if rt.is_main:
            typer.echo(f"sliding-window bpb {score:.5f} -> {target}")
    finally:
        shutdown_runtime(rt)
