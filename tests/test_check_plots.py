"""scripts/check-plots in a workspace shaped like the one scripts/smoke leaves: curves of
seeds 1 and 2 while params.yaml lists the record's seeds. Every plot must draw in headless
Chromium (skipped where no Chromium is installed: `apt-get install chromium`)."""

from __future__ import annotations

import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.train.curves import write_curves
from pipeline.train.steplog import StepRow, ValRow

ROOT = Path(__file__).resolve().parents[1]
BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


@pytest.mark.slow
@pytest.mark.skipif(BROWSER is None or shutil.which("npm") is None, reason="needs chromium and npm")
def test_every_plot_of_the_smoke_shaped_workspace_renders(tmp_path):
    repo = tmp_path / "ws"
    repo.mkdir()
    (repo / "params.yaml").write_text("seeds: [1337, 1335, 1336]\n")
    (repo / "dvc.yaml").write_text("stages: {}\n")
    for seed in (1, 2):
        rows = [StepRow(s, 3 + 4 * math.exp(-s / 30) + seed / 20, min(1.0, (60 - s) / 50), 0.95, 50.0, 4e4,
                        int(s > 55), 50.0 * s) for s in range(1, 61)]
        vals = [ValRow(s, 3.2 + 4 * math.exp(-s / 30), (3.2 + 4 * math.exp(-s / 30)) / 1.7, 50.0 * s)
                for s in (0, 30, 60)]
        write_curves(repo / "runs" / f"seed_{seed}" / "dvclive", rows, vals, {"steps": 60})
    e = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
         "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
         "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    for args in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "x"]):
        subprocess.run(args, cwd=repo, env=e, check=True, capture_output=True)
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check-plots"), "--browser", BROWSER],
                            cwd=repo, env=e, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    # 2 seeds x (7 train curves + 3 validation curves), each drawn.
    assert result.stdout.startswith("scripts/check-plots: 20 plots of 20 files rendered"), result.stdout
    width, height = png_size(repo / "dvc_plots" / "screenshot.png")
    assert width == 1280 and height >= 800
