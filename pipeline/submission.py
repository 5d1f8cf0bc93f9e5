"""A challenge submission folder from a multi-seed summary.

    README.md          the results table, the verdict and the provenance of each seed
    submission.json    the challenge's fields (name, val_loss, val_bpb, bytes_total, bytes_code, ...)
    params.yaml        the configuration every seed ran with
    seed_N/            for each seed in the table: model.int6.ptz, metrics.json (with provenance),
                       train_log.tsv, val_log.tsv, train_summary.json, size.json

Only the seeds of the summary are exported, so the folder's logs and
provenance are exactly those behind its table.
"""

from __future__ import annotations

import datetime
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline import atomic
from pipeline.errors import PgolfError
from pipeline.layout import MetricsLayout, RunLayout
from pipeline.report import SCORE_KEY
from pipeline.report import render_markdown


def _readme(summary: Mapping[str, Any], per_seed: Mapping[str, Mapping[str, Any]], name: str) -> str:
    lines = [f"# {name}", "", render_markdown(summary), "## Provenance", ""]
    for seed, metrics in per_seed.items():
        prov = metrics.get("provenance", {})
        git = prov.get("git", {})
        dirty = " (dirty tree)" if git.get("dirty") else ""
        lines.append(
            f"- seed {seed}: commit `{git.get('commit')}`{dirty}, params `{str(prov.get('params_digest'))[:12]}`, "
            f"torch {prov.get('torch')}, CUDA {prov.get('cuda')}, {prov.get('device_count')}x {prov.get('device')}, "
            f"world size {prov.get('world_size')}"
        )
    return "\n".join(lines) + "\n"


def submission_fields(summary: Mapping[str, Any], per_seed: Mapping[str, Mapping[str, Any]], name: str,
                      author: str, github_id: str) -> dict[str, Any]:
    figures = summary["figures"]
    return {
        "author": author,
        "github_id": github_id,
        "name": name,
        "blurb": "Trained and packed with pgolf; score = mean int6 sliding-window bpb over seeds "
                 f"{', '.join(per_seed)} (p = {summary['significance']['p']}).",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "val_loss": figures["sliding_loss"]["mean"],
        "val_bpb": figures["sliding_bpb"]["mean"],
        "bytes_total": int(max(m["total_bytes"] for m in per_seed.values())),
        "bytes_code": int(max(m["code_bytes"] for m in per_seed.values())),
        "seeds": [int(s) for s in per_seed],
        "significance": summary["significance"],
    }


def export_submission(out_dir: Path, summary: Mapping[str, Any], per_seed: Mapping[str, Mapping[str, Any]],
                      runs: Mapping[str, RunLayout], params_file: Path, name: str, author: str = "",
                      github_id: str = "") -> None:
    """Write the folder atomically (replacing an older export only when complete)."""
    if set(per_seed) != set(runs):
        raise PgolfError("export needs the run files of exactly the seeds in the summary")
    with atomic.atomic_dir(out_dir) as tmp:
        (tmp / "README.md").write_text(_readme(summary, per_seed, name), encoding="utf-8")
        fields = submission_fields(summary, per_seed, name, author, github_id)
        (tmp / "submission.json").write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
        shutil.copyfile(params_file, tmp / "params.yaml")
        for seed, metrics in per_seed.items():
            run = runs[seed]
            dest = tmp / f"seed_{seed}"
            dest.mkdir()
            (dest / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
            for src in (run.artifact, run.train_log, run.val_log, run.train_summary, run.size_report):
                if not src.is_file():
                    raise PgolfError(f"{src}: missing, cannot export seed {seed}")
                shutil.copyfile(src, dest / src.name)


def load_seed_metrics(metrics: MetricsLayout, seeds: list[int]) -> dict[str, dict[str, Any]]:
    """Each seed's metrics file, in the order of `seeds`; a missing file names the stage to run."""
    out: dict[str, dict[str, Any]] = {}
    for seed in seeds:
        path = metrics.seed(seed)
        if not path.is_file():
            raise PgolfError(f"{path}: missing (run `pgolf evaluate --seed {seed}`)")
        try:
            figures = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PgolfError(f"{path}: not JSON ({exc}); re-run `pgolf evaluate --seed {seed}`") from None
        if not isinstance(figures, dict) or not isinstance(figures.get(SCORE_KEY), (int, float)):
            raise PgolfError(f"{path}: no {SCORE_KEY!r} figure; re-run `pgolf evaluate --seed {seed}`")
        out[str(seed)] = figures
    return out
