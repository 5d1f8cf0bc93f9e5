"""`pgolf quantize --seed N`: mixed per-row quantisation + compressed packing under the size cap (SPEC §4)."""

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

    Writes <run>/model.int6.ptz (each category's matrices in its quant.schemes scheme, rounded
    by quant.method; the record: int6 per row for mlp/attn, int8 for the embedding; small
    tensors kept; compressed by quant.compressor) and <run>/size.json (written
    first, naming the artifact's sha256; evaluate refuses a pair that does not match).

    The code bytes are those of the train_gpt.py `pgolf export` writes for these params
    (generated in memory). Fails, writing nothing, when compressed model + code bytes
    exceed quant.cap_bytes, unless quant.allow_oversize is set.
    """
    from pipeline import atomic
    from pipeline.config import check_seed
    from pipeline.export.closure import code_files
    from pipeline.export.script import exported_script, modules_sha256
    from pipeline.layout import RunLayout, seed_dir
    from pipeline.locks import run_lock
    from pipeline.preflight import preflight
    from pipeline.quant.categories import format_stats
    from pipeline.quant.packing import pack_run, write_packed

    check_seed(seed)
    p = load(params)
    layout = RunLayout(seed_dir(Path(p.train.out_dir), seed))
    with run_lock(layout.run_dir, create=False):
        preflight(reads=[(layout.averaged, f"run `pgolf swa --seed {seed}` first")],
                  writes=[(layout.artifact, "train.out_dir"), (layout.size_report, "train.out_dir")])
        for output in (layout.artifact, layout.size_report):
            atomic.clean_stale(output)
        packed = pack_run(layout, p, seed, exported_script(p), code_files(), modules_sha256())
        write_packed(layout, packed, p.quant)
    report, stats = packed.size, packed.stats
    verdict = "within" if report.within_cap else "OVER"
    calibration = (f"; GPTQ calibration {stats.calibration_batches} batches in {stats.calibration_seconds:.1f} s "
                   f"(counts in the training budget)" if stats.calibration_batches else "")
    typer.echo(f"seed {seed}: method {stats.method}, compressor {stats.compressor}{calibration}; per category:")
    for line in format_stats(stats.categories):
        typer.echo(line)
    typer.echo(
        f"seed {seed}: {report.model_bytes:,} model + {report.code_bytes:,} code (train_gpt.py) = "
        f"{report.total_bytes:,} bytes ({verdict} the {report.cap_bytes:,}-byte cap; {stats.counts}) -> {layout.artifact}"
    )
