"""`pgolf report`: every seed's metrics -> mean/std/min/max and the significance verdict (SPEC §6)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from stages.common import ParamsOption, app, load, user_errors


@app.command("report")
@user_errors
def report_command(
    params: ParamsOption = Path("params.yaml"),
    export: Annotated[Optional[Path], typer.Option(
        help="Also write the challenge's records folder here: the same as `pgolf export --out`.")] = None,
    name: Annotated[str, typer.Option(help="Submission name (with --export).")] = "pgolf record attempt",
    author: Annotated[str, typer.Option(help="Author (with --export).")] = "",
    github_id: Annotated[str, typer.Option(help="GitHub id (with --export).")] = "",
    force: Annotated[bool, typer.Option(
        help="With --export: replace DIR even if pgolf did not write it (its files are deleted).")] = False,
) -> None:
    """Summarise every seed's metrics and test the improvement for significance.

    Reads metrics/seeds/seed_<s>.json for every seed in params `seeds`; writes
    metrics/summary.json and metrics/summary.md: per-seed figures, their statistics, and the
    one-sided t-test of the improvement over report.baseline_bpb (>= report.min_improvement_nats
    with p < report.p_threshold).

    --export DIR replaces an existing DIR only if it is empty or an earlier export
    (it holds pgolf's .pgolf-output marker); --force replaces it anyway.
    """
    from pipeline import atomic
    from pipeline.layout import MetricsLayout, RunLayout, seed_dir
    from pipeline.report import render_markdown, summarize, training_budget
    from pipeline.preflight import preflight
    from pipeline.submission import export_inputs, load_seed_metrics
    from stages.export import force_hint, write_records

    p = load(params)
    if export is not None:  # refuse a foreign DIR before writing anything
        with force_hint():
            atomic.check_replaceable(export, "submission", force)
    metrics = MetricsLayout()
    runs = {str(s): RunLayout(seed_dir(Path(p.train.out_dir), s)) for s in p.seeds}
    preflight(reads=[(metrics.seed(s), f"run `pgolf evaluate --seed {s}`") for s in p.seeds]
                    + (export_inputs(runs) if export is not None else []),
              writes=[(metrics.summary, "metrics"), (metrics.summary_table, "metrics")],
              builds=[(export, "--export")] if export is not None else [])
    per_seed = load_seed_metrics(metrics, list(p.seeds))
    summary = summarize(per_seed, p.report)
    table = render_markdown(summary)
    budget = training_budget(per_seed, calibration_seconds(runs))
    if budget:
        summary["training_budget"] = budget
        table += "\n" + budget
    atomic.write_json(metrics.summary, summary)
    atomic.write_text(metrics.summary_table, table)
    typer.echo(table)
    if export is not None:
        write_records(p, export, name, author, github_id, force=force)
        typer.echo(f"records folder -> {export}")


def calibration_seconds(runs) -> dict[str, float]:
    """GPTQ calibration seconds per seed, from size.json (`artifact.calibration_seconds`; 0 when absent)."""
    import json

    out: dict[str, float] = {}
    for seed, run in runs.items():
        try:
            artifact = json.loads(run.size_report.read_text()).get("artifact", {})
            out[seed] = float(artifact.get("calibration_seconds", 0.0))
        except (OSError, ValueError, AttributeError, TypeError):
            out[seed] = 0.0  # no readable size.json: evaluate already refused such a seed
    return out
