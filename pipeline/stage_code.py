"""Which source files each pipeline stage runs, worked out from its imports.

A stage's code is the import closure (`pipeline.export.closure.import_closure`)
of its command module ``stages/<stage>.py`` within ``stages`` and ``pipeline``,
imports inside functions included; the quantize stage also counts the modules
the exported train_gpt.py embeds (its size is part of size.json).
`compact_deps` writes such a list the way dvc.yaml does: a directory when
every module in it is needed.  tests/test_dvc_pipeline.py checks dvc.yaml's
code deps against these lists; `python -m pipeline.stage_code` prints them and
`python -m pipeline.stage_code --write` puts them into dvc.yaml.
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


def _covered(path: str, deps: set[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def deps_match(declared: set[str], needed: list[str]) -> bool:
    """Every needed module lies in a declared dep and every declared dep holds a needed module
    (a directory may stand for more than is needed)."""
    return all(_covered(p, declared) for p in needed) and all(
        any(_covered(p, {d}) for p in needed) for d in declared)


def _code_dep_lines(text: str):
    """(line index, stage, indent, dep) for each code dep item of a stage's `deps:` list."""
    stage, in_deps = None, False
    for i, line in enumerate(text.splitlines(keepends=True)):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if indent == 2 and stripped.endswith(":") and stripped[:-1] in STAGE_PARAMS:
            stage, in_deps = stripped[:-1], False
        elif stage and stripped == "deps:":
            in_deps = True
        elif in_deps and stripped and not stripped.startswith(("-", "#")):
            in_deps = False
        if in_deps and stripped.startswith("- ") and stripped[2:].split("/")[0] in TOPS:
            yield i, stage, indent, stripped[2:]


def rewrite_dvc_yaml(text: str) -> str:
    """dvc.yaml's text with each stage's code deps (the `- pipeline...` / `- stages...` items of its
    `deps:` list) replaced by `compact_deps(stage_code(stage))` where they no longer match the
    imports; everything else, comments included, kept as written."""
    found = list(_code_dep_lines(text))
    declared: dict[str, set[str]] = {}
    for _, stage, _, dep in found:
        declared.setdefault(stage, set()).add(dep)
    stale = {stage for stage, deps in declared.items() if not deps_match(deps, stage_code(stage))}
    lines = text.splitlines(keepends=True)
    first: dict[str, int] = {}
    for i, stage, indent, _ in found:
        if stage not in stale:
            continue
        if stage not in first:
            first[stage] = i
            lines[i] = "".join(f"{' ' * indent}- {dep}\n" for dep in compact_deps(stage_code(stage)))
        else:
            lines[i] = ""
    return "".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print each stage's code deps; `--write [dvc.yaml]` puts them into dvc.yaml instead."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--write"]:
        path = Path(args[1] if len(args) > 1 else SOURCE_ROOT / "dvc.yaml")
        path.write_text(rewrite_dvc_yaml(path.read_text()))
        return
    for stage in STAGE_PARAMS:
        print(f"{stage}:")
        for dep in compact_deps(stage_code(stage)):
            print(f"  - {dep}")


if __name__ == "__main__":
    main()
