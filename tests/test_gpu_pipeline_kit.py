"""The kit a lent GPU runs for issue 20's end-to-end check (benchmarks/gpu_pipeline.sh,
scripts/gpu-wheels): scripts that parse, the device call documented within the tool's
limits, and the wheels kept out of git."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["benchmarks/gpu_pipeline.sh", "scripts/gpu-wheels"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
@pytest.mark.parametrize("script", SCRIPTS)
def test_script_parses_and_is_executable(script):
    path = ROOT / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_documented_device_call_fits_the_tool():
    text = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    section = text.split("## Next GPU session: end-to-end check", 1)[1]
    call = re.search(r'run\(command="([^"]+)", carry=\[([^\]]*)\], timeout_s=(\d+)\)', section)
    assert call, "docs/performance.md: no run(...) call in the end-to-end section"
    command, carry, timeout_s = call.group(1), re.findall(r'"([^"]+)"', call.group(2)), int(call.group(3))
    assert len(command) <= 2000 and 0 < timeout_s <= 600
    assert (ROOT / command.split()[-1]).is_file()
    # The pipeline run's own limit leaves the set-up and the collection time inside timeout_s.
    limit = int(re.search(r'LIMIT="\$\{PGOLF_LIMIT:-(\d+)\}"', (ROOT / SCRIPTS[0]).read_text()).group(1))
    assert limit + 60 <= timeout_s
    # What travels by carry is ignored by git, so it is never committed.
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert carry == [".whl"] and "/.whl/" in ignored
