"""The `pgolf` console script: registers every stage command on one Typer app."""

from __future__ import annotations

from stages.common import app

# Importing a stage module registers its command(s) on `app`, in the order of the DAG.
from stages import prepare, train, swa, quantize, evaluate, report, export, model_info, bench  # noqa: F401,E402


def main() -> None:
    app()


if __name__ == "__main__":
    main()
