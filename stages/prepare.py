"""`pgolf prepare`: build the tokenizer and token shards (the first DVC stage)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from pipeline.data.prepare import prepare, prepare_inputs
from pipeline.locks import data_lock
from pipeline.preflight import preflight
from stages.common import ParamsOption, app, load, user_errors


@app.command("prepare")
@user_errors
def prepare_command(params: ParamsOption = Path("params.yaml")) -> None:
    """Turn data.source into data.out_dir: tokenizer.model, shards/ and manifest.json.

    Sources: embedded (the Python docs bundled with the interpreter; no
    download), files (local .jsonl / .txt), fineweb (the challenge's Hugging
    Face repo: ready shards, or the raw documents tokenised here) and shards
    (a local directory of published shards used as is).  The output is built
    in a temporary directory and swapped in only when complete; the same
    input always gives byte-identical files.  An existing data.out_dir is replaced
    only if pgolf wrote it (its .pgolf-output marker says so).
    """
    p = load(params)
    with data_lock(Path(p.data.out_dir)):  # one prepare per data directory at a time
        preflight(reads=prepare_inputs(p.data), builds=[(Path(p.data.out_dir), "data.out_dir")])
        summary = prepare(p.data, progress=sys.stderr.isatty())  # no bar in logs and pipes
    typer.echo(summary.describe())
