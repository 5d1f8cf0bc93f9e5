"""Re-launch a stage on several processes: the torchrun command, run without torchrun's failure report."""

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


def relaunch(nproc_per_node: int, stage_args: list[str]) -> int:
    """Run `torchrun_command` in this process and return the stage's exit status.

    A rank that fails has said why already (rank 0 prints a user error in one
    line, a bug prints its traceback), so torchrun's own report -- a log line
    per failed rank and a traceback summary -- is left out: one bad input is
    one line, whatever the number of processes.
    """
    import logging
    import os

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default, without its multi-line notice
    command = torchrun_command(nproc_per_node, stage_args)
    args = get_args_parser().parse_args(command[command.index("torch.distributed.run") + 1:])
    elastic = logging.getLogger("torch.distributed.elastic")
    level = elastic.level
    elastic.setLevel(logging.CRITICAL)
    try:
        run(args)
        return 0
    except ChildFailedError as exc:
        codes = [failure.exitcode for failure in exc.failures.values()]
        return next((code for code in codes if code > 0), 1)
    except SignalException as exc:  # SIGTERM/SIGINT to the launcher: passed on to the ranks, which checkpoint
        return 128 + int(exc.sigval)
    finally:
        elastic.setLevel(level)
