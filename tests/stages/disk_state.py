"""What is on disk under a directory, to show a refused or killed command changed nothing else."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def disk_state(root: Path) -> dict[str, str]:
    """Every path under `root`: a file's sha256, 'dir', or 'link -> target' (links are not followed)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                state[rel] = f"link -> {os.readlink(path)}"
            elif path.is_dir():
                state[rel] = "dir"
            else:
                state[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def stop_at(mode: str, point: str, *pgolf_args: str, cwd: Path, exchange: bool = True,
            **popen) -> subprocess.Popen:
    """Start `pgolf <args>` in `cwd`, to be killed or paused at write point `point` (tests/stages/stop_at.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "tests.stages.stop_at", mode, point,
           "exchange" if exchange else "no-exchange", "--", *pgolf_args]
    return subprocess.Popen(cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE, **popen)


def killed_at(point: str, *pgolf_args: str, cwd: Path, exchange: bool = True) -> None:
    """Run `pgolf <args>` until write point `point`, where it dies as if SIGKILLed."""
    proc = stop_at("kill", point, *pgolf_args, cwd=cwd, exchange=exchange)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 137, (point, out, err)


def one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]
