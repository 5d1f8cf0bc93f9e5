"""Build the torchrun command that re-launches a stage on several processes."""

from __future__ import annotations

import sys


def torchrun_command(nproc_per_node: int, stage_args: list[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc_per_node=N -m stages.cli <args>`.

    Going through `python -m` keeps the same interpreter and virtual environment.
    """
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc_per_node}", "-m", "stages.cli", *stage_args,
    ]
