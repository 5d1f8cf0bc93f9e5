"""`pgolf swa --seed N`: average the training run's weights (SPEC §3, tight SWA)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, app, load, user_errors


@app.command("swa")
@user_errors
def swa_command(
    seed: Annotated[int, typer.Option(help="Seed whose run to average (<train.out_dir>/seed_<seed>/).")],
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Average one seed's weights into <run>/averaged.pt.

    swa.method: `snapshots` (uniform average of the kept SWA snapshots, or of the
    last swa.last_k; the final weights when fewer than swa.min_snapshots), `ema`,
    or `final` weights.
    """
    from pipeline import atomic
    from pipeline.config import check_seed
    from pipeline.layout import RunLayout, seed_dir
    from pipeline.locks import run_lock
    from pipeline.preflight import preflight
    from pipeline.train.averaging import averaged_weights, averaging_input
    from pipeline.train.outputs import check_train_outputs

    check_seed(seed)
    p = load(params)
    layout = RunLayout(seed_dir(Path(p.train.out_dir), seed))
    with run_lock(layout.run_dir, create=False):  # first: a running train's outputs are not missing, only unfinished
        preflight(reads=[averaging_input(layout, p.swa, seed)], writes=[(layout.averaged, "train.out_dir")])
        atomic.clean_stale(layout.averaged)
        check_train_outputs(layout, seed)
        state, info = averaged_weights(layout, p.swa)
        atomic.torch_save(state, layout.averaged)
    steps = info.get("snapshot_steps")
    if "fallback_from" in info:
        detail = f" weights: {len(steps)} snapshot(s), fewer than swa.min_snapshots={p.swa.min_snapshots}"
    else:
        detail = f" of {len(steps)} snapshots (steps {steps[0]}..{steps[-1]})" if steps else ""
    typer.echo(f"seed {seed}: {info['method']}{detail} -> {layout.averaged}")
