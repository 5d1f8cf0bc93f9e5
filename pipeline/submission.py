"""The challenge's records folder from a finished multi-seed run (`pgolf export`).

    .pgolf-output      pgolf's marker: a later export may replace this folder
    train_gpt.py       self-contained: pgolf's modules + these params (`pipeline.export.script`)
    requirements.txt   what train_gpt.py imports beyond the challenge's image
    README.md          the results table, the verdict, the size accounting, how to reproduce,
                       the provenance of each seed
    submission.json    the fields of the challenge's recent records
    train_seedN.log    each seed's run in train_gpt.py's log format

Only the seeds of the summary are exported, so the folder's logs and
provenance are exactly those behind its table.  The logs are rendered from
what the pipeline recorded (step table, validation table, size report,
metrics) with the same line functions train_gpt.py prints with.  The code
bytes are the size of the train_gpt.py written here; the export refuses a
seed whose artifact plus that file exceeds the cap.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.config import Params
from pipeline.errors import PgolfError
from pipeline.export.run import final_lines, row_line, size_lines
from pipeline.export.script import SCRIPT_NAME, exported_script, modules_sha256, requirements
from pipeline.layout import MetricsLayout, RunLayout
from pipeline.quant.pairing import check_size_report
from pipeline.quant.size import size_report
from pipeline.records import SeedMetrics
from pipeline.report import render_markdown
from pipeline.stage_files import read_seed_metrics, read_size_report
from pipeline.stage_params import PACKED_STAGES
from pipeline.train.outputs import check_train_outputs
from pipeline.train.curves import read_curves
from pipeline.train.steplog import StepRow, ValRow

TRACKS = ("10min_16mb", "non_record_16mb")


@dataclass(frozen=True)
class Identity:
    """Who submits what: the submission.json fields a person chooses."""

    name: str
    author: str = ""
    github_id: str = ""
    blurb: str = ""
    track: str = "10min_16mb"


def seed_log(seed: str, metrics: SeedMetrics, run: RunLayout, params: Params, code_bytes: int) -> str:
    """One seed's run in train_gpt.py's line formats, from the pipeline's records of it."""
    prov = metrics.provenance or {}
    lines = [f"pgolf export: params {str(prov.get('params_digest'))[:12]} seed:{seed} "
             f"world_size:{prov.get('world_size')} device:{prov.get('device')}"]
    rows: list[tuple[int, int, StepRow | ValRow]] = []
    step_rows, val_rows = read_curves(run.live_dir)
    rows += [(row.step, 0, row) for row in step_rows]
    rows += [(row.step, 1, row) for row in val_rows]
    lines += [row_line(row, params.train.iterations) for _, _, row in sorted(rows, key=lambda t: t[:2])]
    size = read_size_report(run.size_report)
    report = size_report(size.model_bytes, params.quant, code_bytes, enforce=False)
    averaged = run.averaged.stat().st_size if run.averaged.is_file() else None
    lines += size_lines(averaged, report)
    lines += final_lines(metrics, int((metrics.eval or {}).get("stride", params.eval.stride)))
    return "\n".join(lines) + "\n"


def _std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def submission_fields(summary: Mapping[str, Any], per_seed: Mapping[str, SeedMetrics], who: Identity,
                      code_bytes: int, baseline_bpb: float) -> dict[str, Any]:
    """submission.json: the fields of the challenge's recent records; sizes count `code_bytes`."""
    bpbs = [m.sliding_bpb for m in per_seed.values()]
    losses = [m.sliding_loss for m in per_seed.values()]
    val_bpb = math.fsum(bpbs) / len(bpbs)
    artifact = {s: m.model_bytes + code_bytes for s, m in per_seed.items()}
    sig = summary["significance"]
    blurb = who.blurb or (f"Trained and packed with pgolf; score = mean int6 sliding-window bpb over seeds "
                          f"{', '.join(per_seed)} (verdict {sig['verdict']}, p = {sig['p']}).")
    return {
        "author": who.author,
        "github_id": who.github_id,
        "name": who.name,
        "blurb": blurb,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "track": who.track,
        "val_loss": math.fsum(losses) / len(losses),
        "val_bpb": val_bpb,
        "val_loss_std": _std(losses),
        "val_bpb_std": _std(bpbs),
        "seeds": [int(s) for s in per_seed],
        "seed_results": {
            s: {
                "val_loss": m.sliding_loss,
                "val_bpb": m.sliding_bpb,
                "artifact_bytes": artifact[s],
                "steps": m.steps,
                "step_avg_ms": m.mean_step_ms,
                "eval_time_s": m.sliding.seconds,
            }
            for s, m in per_seed.items()
        },
        "comparison_baseline_bpb": baseline_bpb,
        "delta_vs_leaderboard_bpb": val_bpb - baseline_bpb,
        "delta_vs_leaderboard_nats": (val_bpb - baseline_bpb) * math.log(2.0),
        "bytes_total": max(artifact.values()),
        "bytes_code": code_bytes,
        "significance": summary["significance"],
    }


def _readme(summary: Mapping[str, Any], per_seed: Mapping[str, SeedMetrics], fields: Mapping[str, Any],
            params: Params, compressed: bool) -> str:
    code = fields["bytes_code"]
    form = "a self-extracting lzma wrapper around its source" if compressed else "plain Python"
    lines = [f"# {fields['name']}", "", fields["blurb"], "", render_markdown(summary),
             "## Size", "",
             f"Counted bytes per seed = the seed's artifact (`model_bytes`) + `{SCRIPT_NAME}` "
             f"({code:,} bytes, {form}); the largest, `bytes_total`, is {fields['bytes_total']:,} of the "
             f"{params.quant.cap_bytes:,}-byte cap. `{SCRIPT_NAME}` checks the same sum against the cap "
             "after packing and refuses to go on past it.", "",
             "## Reproduce", "",
             "```bash",
             "pip install -r requirements.txt",
             f"SEED=<seed> torchrun --standalone --nproc_per_node=8 {SCRIPT_NAME}",
             "```", "",
             f"Data in the challenge's layout (`./data/datasets/fineweb10B_sp{params.model.vocab_size}/`, "
             f"`./data/tokenizers/fineweb_{params.model.vocab_size}_bpe.model`), or set DATA_PATH and "
             "TOKENIZER_PATH. The run's files go to `./runs/<RUN_ID>/`, its log to `./logs/<RUN_ID>.txt`. "
             f"The hyperparameters are `PARAMS` in `{SCRIPT_NAME}` (params digest `{params.digest()[:12]}`): "
             "pgolf's configuration baked in; the environment sets only paths and the seed.", "",
             "`train_seedN.log` is each seed's pipeline run (`pgolf train/swa/quantize/evaluate`, the same "
             f"code as `{SCRIPT_NAME}`), rendered in the script's log format.", "",
             "## Provenance", ""]
    for seed, metrics in per_seed.items():
        prov = metrics.provenance or {}
        git = prov.get("git", {})
        dirty = " (dirty tree)" if git.get("dirty") else ""
        lines.append(
            f"- seed {seed}: commit `{git.get('commit')}`{dirty}, params `{str(prov.get('params_digest'))[:12]}`, "
            f"torch {prov.get('torch')}, CUDA {prov.get('cuda')}, {prov.get('device_count')}x {prov.get('device')}, "
            f"world size {prov.get('world_size')}"
        )
    return "\n".join(lines) + "\n"


def export_records(out_dir: Path, summary: Mapping[str, Any], per_seed: Mapping[str, SeedMetrics],
                   runs: Mapping[str, RunLayout], params: Params, who: Identity, compress: bool = False,
                   force: bool = False) -> dict[str, Any]:
    """Write the records folder atomically; returns submission.json's fields.

    An existing `out_dir` is replaced only if it is empty or an earlier export
    (its `.pgolf-output` marker says so), unless `force`.
    """
    if set(per_seed) != set(runs):
        raise PgolfError("export needs the run files of exactly the seeds in the summary")
    if who.track not in TRACKS:
        raise PgolfError(f"track {who.track!r}: expected one of {', '.join(TRACKS)}")
    atomic.check_replaceable(out_dir, "submission", force)
    for seed, run in runs.items():
        for src in (run.artifact, run.live_dir / "metrics.json", run.train_summary, run.size_report):
            if not src.is_file():
                raise PgolfError(f"{src}: missing, cannot export seed {seed}")
        check_size_report(run.artifact, run.size_report, int(seed))  # one quantize run's pair
        check_train_outputs(run, int(seed))
    code = modules_sha256()
    for seed, run in runs.items():  # the code and params that produced the run are those exported
        check_packed_with(run.size_report, seed, code, params)
    script = exported_script(params, compress)
    fields = submission_fields(summary, per_seed, who, len(script), params.report.baseline_bpb)
    for seed, metrics in per_seed.items():  # the cap, counted with the file written here
        if not params.quant.allow_oversize:
            size_report(metrics.model_bytes, params.quant, len(script))
    with atomic.atomic_dir(out_dir, force=force, kind="submission") as tmp:
        (tmp / SCRIPT_NAME).write_bytes(script)
        (tmp / "requirements.txt").write_text("".join(f"{r}\n" for r in requirements()), encoding="utf-8")
        (tmp / "submission.json").write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(_readme(summary, per_seed, fields, params, compress), encoding="utf-8")
        for seed, metrics in per_seed.items():
            (tmp / f"train_seed{seed}.log").write_text(seed_log(seed, metrics, runs[seed], params, len(script)),
                                                       encoding="utf-8")
    return fields


def check_packed_with(size_json: Path, seed: str, code_sha256: str, params: Params) -> None:
    """Refuse a seed packed by other pgolf code (`modules_sha256`) or whose train, swa or quantize
    params differ from `params` (the stage digests quantize recorded in size.json)."""
    size = read_size_report(size_json)
    if size.modules_sha256 != code_sha256:
        raise PgolfError(f"{size_json}: seed {seed} was packed by other pgolf code than this "
                         "checkout's (re-run `dvc repro` before exporting)")
    changed = [stage for stage in PACKED_STAGES if size.stage_digests.get(stage) != params.stage_digest(stage)]
    if changed:
        raise PgolfError(f"{size_json}: seed {seed} was made with other params for the {', '.join(changed)} "
                         "stage(s) than these params (re-run `dvc repro` before exporting)")


def export_inputs(runs: Mapping[str, RunLayout]) -> list[tuple[Path, str]]:
    """Every file `export_records` needs from each seed's run, for `preflight`."""
    return [(src, f"cannot export seed {seed}; run its stages first")
            for seed, run in runs.items()
            for src in (run.artifact, run.live_dir / "metrics.json", run.train_summary, run.size_report)]


def load_seed_metrics(metrics: MetricsLayout, seeds: list[int]) -> dict[str, SeedMetrics]:
    """Each seed's metrics file, in the order of `seeds`; a missing file names the stage to run."""
    return {str(seed): read_seed_metrics(metrics.seed(seed), seed) for seed in seeds}
