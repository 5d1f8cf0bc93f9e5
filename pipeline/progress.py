"""Progress bars that cost nothing when off: tqdm is imported only when a bar is shown.

The training loop and the evaluator show a bar on an interactive rank 0; the
exported train_gpt.py never does, and must run without tqdm installed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any


class _NoBar:
    """The part of tqdm's interface the library uses, doing nothing."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: int | None = None, initial: int = 0,
                 **_: Any) -> None:
        self.iterable = iterable
        self.total = total
        self.n = initial

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **_: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(enabled: bool, iterable: Iterable[Any] | None = None, **kwargs: Any) -> Any:
    """A tqdm bar when `enabled`, else a silent stand-in with the same methods."""
    if not enabled:
        return _NoBar(iterable, **kwargs)
    from tqdm import tqdm

    return tqdm(iterable, **kwargs)


def write_line(message: str) -> None:
    """A line on stderr, above a live bar when tqdm is in use."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is not None:
        tqdm_module.tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr, flush=True)
