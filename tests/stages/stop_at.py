"""Run a pgolf command that stops at a named write point (`pipeline.atomic.write_point`).

    python -m tests.stages.stop_at kill|pause POINT exchange|no-exchange -- <pgolf arguments>

kill:  `os._exit(137)` there, as SIGKILL would: no finally block, no cleanup runs.
pause: print "paused at POINT" and wait until stdin is closed, then carry on (a command
       that holds its lock while the test runs another one).
no-exchange: as on a system without renameat2, replace directories by renaming the old one aside.

The stop is where the code says it is, so the tests need no timing.
"""

from __future__ import annotations

import os
import sys

from pipeline import atomic


def main() -> None:
    mode, point, exchange = sys.argv[1:4]
    args = sys.argv[sys.argv.index("--") + 1:]

    def stop(name: str) -> None:
        if name != point:
            return
        if mode == "kill":
            os._exit(137)
        print(f"paused at {name}", flush=True)
        sys.stdin.read()

    atomic.write_point = stop
    if exchange == "no-exchange":
        atomic._exchange = lambda a, b: False
    from stages.cli import app

    app(args=args, prog_name="pgolf")


if __name__ == "__main__":
    main()
