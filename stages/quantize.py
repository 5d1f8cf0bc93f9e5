"""`pgolf quantize --seed N`: mixed int6/int8 quantisation + zstd packing under the size cap (SPEC §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stages.common import ParamsOption, app, load, user_errors


@app.command("quantize")
@user_errors
def quantize_command(
    seed: Annotated[int, typer.Option(help="Seed whose averaged weights to pack (<train.out_dir>/seed_<seed>/).")],
    params: ParamsOption = Path("params.yaml"),
) -> None:
    """Quantise and pack one seed's averaged weights under the size cap.

    Writes <run>/model.int6.ptz (int6 per row for mlp/attn matrices, int8 for the
    embedding, small tensors kept; zstd level quant.zstd_level) and <run>/size.json.

    Fails, writing nothing, when compressed model + code bytes exceed quant.cap_bytes,
    unless quant.allow_oversize is set.
    """
    import dataclasses

    from pipeline import atomic
    from pipeline.config import check_seed
    from pipeline.layout import RunLayout, seed_dir
    from pipeline.preflight import preflight
    from pipeline.quant.artifact import pack_artifact
    from pipeline.quant.size import size_report
    from pipeline.stage_files import read_state_dict
    from pipeline.weights_check import check_weights

    check_seed(seed)
    p = load(params)
    layout = RunLayout(seed_dir(Path(p.train.out_dir), seed))
    preflight(reads=[(layout.averaged, f"run `pgolf swa --seed {seed}` first")],
              writes=[(layout.artifact, "train.out_dir"), (layout.size_report, "train.out_dir")])
    state = read_state_dict(layout.averaged, f"run `pgolf swa --seed {seed}` first")
    check_weights(state, p.model, layout.averaged)
    meta = {"seed": seed, "params_digest": p.digest(), "model": dataclasses.asdict(p.model)}
    blob, stats = pack_artifact(state, p.quant, meta)
    report = size_report(len(blob), p.quant)
    atomic.write_bytes(layout.artifact, blob)
    atomic.write_json(layout.size_report, {"artifact": stats.to_dict(), "size": report.to_dict()})
    verdict = "within" if report.within_cap else "OVER"
    typer.echo(
        f"seed {seed}: {report.model_bytes:,} model + {report.code_bytes:,} code = {report.total_bytes:,} bytes "
        f"({verdict} the {report.cap_bytes:,}-byte cap; {stats.counts}) -> {layout.artifact}"
    )
