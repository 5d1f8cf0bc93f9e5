"""Which source files each pipeline stage runs, worked out from its imports.

A stage's code is the import closure (`pipeline.export.closure.import_closure`)
of its command module ``stages/<stage>.py`` within ``stages`` and ``pipeline``,
imports inside functions included; the quantize stage also counts the modules
the exported train_gpt.py embeds (its size is part of size.json).
`compact_deps` writes such a list the way dvc.yaml does: a directory when
every module in it is needed.  tests/test_dvc_pipeline.py checks dvc.yaml's
code deps against these lists; `python -m pipeline.stage_code` prints them.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.export.closure import DEFAULT_ROOTS, import_closure
from pipeline.stage_params import STAGE_PARAMS

SOURCE_ROOT = Path(__file__).resolve().parents[1]
TOPS = ("stages", "pipeline")


def stage_code(stage: str, source_root: Path = SOURCE_ROOT) -> list[str]:
    """Source paths (relative to the repository root) the stage's command imports, transitively."""
    if stage not in STAGE_PARAMS:
        raise ValueError(f"unknown stage {stage!r}; the stages are {', '.join(STAGE_PARAMS)}")
    roots = [f"stages.{stage}"]
    if stage == "quantize":  # the size of the exported script counts: its modules are an input
        roots += list(DEFAULT_ROOTS)
    return import_closure(roots, TOPS, source_root)


def compact_deps(paths: list[str], source_root: Path = SOURCE_ROOT) -> list[str]:
    """`paths` with every directory whose Python files are all listed replaced by the directory
    (the outermost such one below the top-level package; the top level itself when complete)."""
    wanted = set(paths)
    out: set[str] = set()
    for path in paths:
        parts = Path(path).parts
        chosen = path
        for depth in range(1, len(parts)):
            directory = Path(*parts[:depth])
            modules = {p.relative_to(source_root).as_posix() for p in (source_root / directory).rglob("*.py")}
            if modules <= wanted:
                chosen = directory.as_posix()
                break
        out.add(chosen)
    return sorted(out)


def main() -> None:
    for stage in STAGE_PARAMS:
        print(f"{stage}:")
        for dep in compact_deps(stage_code(stage)):
            print(f"  - {dep}")


if __name__ == "__main__":
    main()
