"""`pgolf model-info`: parameter counts of the configured model, per category."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.model import config_parameter_counts
from stages.common import ParamsOption, app, load, user_errors


@app.command("model-info")
@user_errors
def model_info(params: ParamsOption = Path("params.yaml")) -> None:
    """Print the parameter count of each part of the configured model."""
    cfg = load(params).model
    counts = config_parameter_counts(cfg)
    width = max(len(name) for name in counts)
    for name, count in counts.items():
        typer.echo(f"{name:<{width}}  {count:>12,}")
