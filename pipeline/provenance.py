"""Where a number came from: code version, configuration and machine.

Attached to every per-seed metrics file so a reported bpb can be traced to
the commit (and whether the tree was dirty), the params digest, and the
torch/CUDA build and devices that produced it.
"""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from pipeline.runtime import Runtime


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """Commit hash and dirtiness of the repository holding `cwd` (None where git is unavailable)."""
    cwd = Path.cwd() if cwd is None else cwd
    commit = _git(["rev-parse", "HEAD"], cwd)
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def provenance(rt: Runtime, params_digest: str, cwd: Path | None = None) -> dict[str, Any]:
    cuda = torch.version.cuda if rt.is_cuda else None
    return {
        "git": git_state(cwd),
        "params_digest": params_digest,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": cuda,
        "device": rt.device_name(),
        "device_count": rt.device_count(),
        "world_size": rt.world_size,
        "hostname": platform.node(),
    }
