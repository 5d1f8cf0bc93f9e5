"""`pgolf train --seed N`: one seed's training run (SPEC §3)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import ParamsOption, app, load, user_errors


@app.command("train")
@user_errors
def train_command(
    seed: Annotated[int, typer.Option(help="Random seed of this run; outputs go to <train.out_dir>/seed_<seed>/.")],
    params: ParamsOption = Path("params.yaml"),
    resume: Annotated[bool, typer.Option(help="Continue from the checkpoint in <run>/work/ (same params, same world size).")] = False,
    progress: Annotated[Optional[bool], typer.Option(help="Show a progress bar on rank 0. Default: on when stderr is a terminal.")] = None,
    lock_held: Annotated[bool, typer.Option(
        "--lock-held", hidden=True, help="Internal: the launcher that started torchrun holds the run lock.")] = False,
) -> None:
    """Train one seed: Muon + AdamW, wall-clock warmdown, late QAT, tight SWA snapshots.

    With train.nproc_per_node > 1 (or train.launcher: torchrun) the command re-launches itself
    under `torchrun --standalone`; started by torchrun already (multi-node), it just runs.
    Writes <run>/train/{final.pt, snapshots.pt, ema.pt}, <run>/dvclive/ (curves) and
    <run>/train_summary.json when training ends; SIGTERM writes a checkpoint to <run>/work/ and exits 143.
    One run per seed at a time: a second one exits at once naming the holder of
    <run>/.pgolf-lock.
    """
    from pipeline.config import check_seed
    from pipeline.layout import RunLayout, seed_dir
    from pipeline.locks import run_lock
    from pipeline.runtime import init_runtime, launched_by_torchrun, launcher_env, shutdown_runtime
    from pipeline.train.launch import relaunch
    from pipeline.train.curves import write_curves
    from pipeline.train.loop import Interrupted, train, training_files
    from pipeline.train.outputs import ready_train_outputs

    check_seed(seed)
    p = load(params)
    training_files(p, seed, resume)  # every input readable, every output writable, before any work
    nproc = p.train.nproc_per_node
    run = RunLayout(seed_dir(Path(p.train.out_dir), seed))
    if (nproc > 1 or p.train.launcher == "torchrun") and not launched_by_torchrun():
        args = ["train", "--seed", str(seed), "--params", str(params), "--lock-held"]
        args += ["--resume"] if resume else []
        args += [] if progress is None else (["--progress"] if progress else ["--no-progress"])
        with run_lock(run.run_dir):  # held by the launcher for the whole torchrun
            ready_train_outputs(run, nproc)
            raise typer.Exit(relaunch(nproc, args))

    progress = sys.stderr.isatty() if progress is None else progress
    with contextlib.ExitStack() as lock:
        if launcher_env()[0] == 0 and not lock_held:  # rank 0 of a torchrun someone else started, or no torchrun
            lock.enter_context(run_lock(run.run_dir))
            ready_train_outputs(run, launcher_env()[1])
        rt = init_runtime()
        try:
            summary = train(p, seed, Path(p.data.out_dir), run.run_dir, rt, resume=resume, progress=progress,
                            curves=write_curves)
        except Interrupted as exc:
            if rt.is_main:
                print(f"pgolf: {exc}", file=sys.stderr)
            raise typer.Exit(code=143) from None
        finally:
            shutdown_runtime(rt)
    if rt.is_main:
        typer.echo(
            f"seed {seed}: {summary.steps} steps in {summary.train_seconds:.1f} s "
            f"({summary.mean_step_ms:.1f} ms/step, {summary.tokens_per_second:,.0f} tokens/s), "
            f"final train loss {summary.final_train_loss:.4f}"
        )
