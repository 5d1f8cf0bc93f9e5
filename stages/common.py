"""What every stage command shares: the Typer app, the --params option, error handling."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from pipeline.config import Params, check_output_dirs, load_params
from pipeline.errors import PgolfError, one_line

app = typer.Typer(
    name="pgolf",
    help=(
        "Parameter Golf pipeline: prepare data, train, average, quantise, evaluate and report.\n\n"
        "Each command is one DVC stage and reads its hyperparameters from params.yaml."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ParamsOption = Annotated[
    Path,
    typer.Option("--params", "-p", help="params file to read (the record configuration by default)."),
]

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Print a user error as one line on stderr and exit 1; let bugs keep their traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PgolfError as exc:
            report_user_error(exc)
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


def report_user_error(exc: PgolfError) -> None:
    """`pgolf: error: <one line>` on stderr, from rank 0 only under torchrun.

    Every rank of a multi-process stage meets the same bad input; one line is
    enough, so the other ranks stay silent (they still exit 1).
    """
    from pipeline.runtime import launcher_env

    if launcher_env()[0] != 0:
        return
    print(f"pgolf: error: {one_line(str(exc))}", file=sys.stderr)


def load(params_path: Path) -> Params:
    """The params every stage runs with, their output directories checked to be safe to write."""
    params = load_params(params_path)
    check_output_dirs(params, params_path)
    return params
