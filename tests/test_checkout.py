"""The suite tests the checkout it lives in, not whichever copy pip installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pipeline
import stages
import stages.cli

ROOT = Path(__file__).resolve().parents[1]


def test_packages_under_test_are_this_checkouts():
    for module in (pipeline, stages, stages.cli):
        assert Path(module.__file__).resolve().is_relative_to(ROOT), module.__file__
    assert not Path(stages.__file__).resolve().is_relative_to(ROOT / "tests")


def test_the_cli_run_as_a_subprocess_is_this_checkouts():
    # How the subprocess tests start `pgolf`: `python -m stages.cli` from the root.
    code = "import stages.cli, pipeline; print(stages.cli.__file__); print(pipeline.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        assert Path(line).resolve().is_relative_to(ROOT), line
