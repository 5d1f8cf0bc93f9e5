"""`pgolf export --out DIR`: the challenge's records folder from a finished run (not a DVC stage)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from pipeline.config import Params
from pipeline.errors import OutputError
from stages.common import ParamsOption, app, load, user_errors


@contextlib.contextmanager
def force_hint() -> Iterator[None]:
    """A refusal to replace the records folder says how to override it."""
    try:
        yield
    except OutputError as exc:
        raise OutputError(f"{exc} (--force replaces it)") from None


def write_records(p: Params, out: Path, name: str, author: str, github_id: str, blurb: str = "",
                  track: str = "10min_16mb", compress_code: bool = False, force: bool = False) -> dict:
    """Summarise the seeds of `p` and write the records folder; shared with `pgolf report --export`."""
    from pipeline.layout import MetricsLayout, RunLayout, seed_dir
    from pipeline.report import summarize
    from pipeline.submission import Identity, export_records, load_seed_metrics

    per_seed = load_seed_metrics(MetricsLayout(), list(p.seeds))
    summary = summarize(per_seed, p.report)
    runs = {s: RunLayout(seed_dir(Path(p.train.out_dir), int(s))) for s in per_seed}
    who = Identity(name=name, author=author, github_id=github_id, blurb=blurb, track=track)
    with force_hint():
        return export_records(out, summary, per_seed, runs, p, who, compress=compress_code, force=force)


@app.command("export")
@user_errors
def export_command(
    out: Annotated[Path, typer.Option(help="Records folder to write (train_gpt.py, README.md, submission.json, logs).")],
    params: ParamsOption = Path("params.yaml"),
    name: Annotated[str, typer.Option(help="Submission name.")] = "pgolf record attempt",
    author: Annotated[str, typer.Option(help="Author.")] = "",
    github_id: Annotated[str, typer.Option(help="GitHub id.")] = "",
    blurb: Annotated[str, typer.Option(help="One-paragraph description (default: a generated one).")] = "",
    track: Annotated[str, typer.Option(help="Challenge track: 10min_16mb or non_record_16mb.")] = "10min_16mb",
    compress_code: Annotated[bool, typer.Option(
        help="Write train_gpt.py as a self-extracting wrapper around its lzma-compressed source.")] = False,
    force: Annotated[bool, typer.Option(
        help="Replace OUT even if pgolf did not write it (its files are deleted).")] = False,
) -> None:
    """Write the challenge's records folder for the seeds in params `seeds`.

    Needs every seed's finished stages (metrics/seeds/seed_<s>.json, <run>/dvclive/,
    size.json, ...). train_gpt.py is generated from pgolf's modules with these params baked
    in; bytes_code is its size and bytes_total the largest artifact plus it, checked against
    quant.cap_bytes.
    """
    from pipeline.layout import MetricsLayout, RunLayout, seed_dir
    from pipeline.preflight import preflight
    from pipeline.submission import export_inputs

    p = load(params)
    metrics = MetricsLayout()
    runs = {str(s): RunLayout(seed_dir(Path(p.train.out_dir), s)) for s in p.seeds}
    preflight(reads=[(metrics.seed(s), f"run `pgolf evaluate --seed {s}`") for s in p.seeds] + export_inputs(runs),
              builds=[(out, "--out")])
    fields = write_records(p, out, name, author, github_id, blurb, track, compress_code, force)
    typer.echo(f"records folder -> {out}: train_gpt.py {fields['bytes_code']:,} bytes, "
               f"bytes_total {fields['bytes_total']:,}, val_bpb {fields['val_bpb']:.5f}")
