"""Which of pgolf's modules the exported train_gpt.py embeds: the import closure of its program.

Starting from the script's program (`pipeline.export.run`: training,
averaging, packing, scoring), follow every ``pipeline`` import found in the
source (statically, with `ast`, so nothing is executed) and add the
``__init__.py`` of every package on the way.  The list therefore stays true
as modules are added, split or start importing each other.  Imports are
followed wherever they appear (inside functions too), so a lazily imported
module is embedded too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline.errors import ArtifactError
from pipeline.quant.size import CodeFile

# The exported script's program; a root that is a package counts whole.
DEFAULT_ROOTS = ("pipeline.export.run",)
_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding `pipeline/`


class _Resolver:
    """Maps dotted module names of one top-level package to source files."""

    def __init__(self, source_root: Path, top: str) -> None:
        self.root = source_root
        self.top = top

    def file_of(self, module: str) -> Path | None:
        base = self.root.joinpath(*module.split("."))
        if (base / "__init__.py").is_file():
            return base / "__init__.py"
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py")
        return None

    def module_of(self, path: Path) -> str:
        rel = path.relative_to(self.root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        return ".".join(parts)

    def ours(self, module: str) -> bool:
        return module == self.top or module.startswith(self.top + ".")


def _imported_modules(path: Path, module: str, is_package: bool) -> set[str]:
    """Every module name an import statement in `path` may refer to."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                keep = len(parts) - (node.level - 1)
                base = ".".join(parts[:keep])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            # `from pkg import name` may name a submodule.
            found.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def code_files(roots: Sequence[str] = DEFAULT_ROOTS, source_root: Path | None = None) -> list[CodeFile]:
    """The source files needed by `roots` (dotted module or package names), sorted by path."""
    root_dir = (source_root or _SOURCE_ROOT).resolve()
    top = roots[0].split(".")[0] if roots else "pipeline"
    resolver = _Resolver(root_dir, top)
    pending: list[str] = []
    for root in roots:
        path = resolver.file_of(root)
        if path is None:
            raise ArtifactError(f"size accounting: module {root!r} not found under {root_dir}")
        pending.append(root)
        if path.name == "__init__.py":  # a package counts whole
            pending.extend(resolver.module_of(p) for p in sorted(path.parent.rglob("*.py")))
    seen: dict[str, Path] = {}
    while pending:
        module = pending.pop()
        for name in _with_parents(module):
            if name in seen or not resolver.ours(name):
                continue
            path = resolver.file_of(name)
            if path is None:  # an attribute imported by `from x import name`, not a module
                continue
            seen[name] = path
            pending.extend(
                m for m in _imported_modules(path, name, path.name == "__init__.py") if resolver.ours(m)
            )
    files = {path.relative_to(root_dir).as_posix(): path.stat().st_size for path in seen.values()}
    return [CodeFile(p, n) for p, n in sorted(files.items())]


def import_closure(roots: Sequence[str], tops: Sequence[str], source_root: Path | None = None) -> list[str]:
    """Source files (paths relative to the source root) of the modules `roots` import, transitively,
    within the top-level packages `tops` (e.g. ``("stages", "pipeline")``): a stage's code.

    Unlike `code_files`, a package reached by an import contributes its ``__init__.py`` only,
    not every module in it."""
    root_dir = (source_root or _SOURCE_ROOT).resolve()
    resolvers = {top: _Resolver(root_dir, top) for top in tops}

    def resolver_of(module: str) -> _Resolver | None:
        return resolvers.get(module.split(".")[0])

    pending = list(roots)
    seen: dict[str, Path] = {}
    while pending:
        module = pending.pop()
        for name in _with_parents(module):
            resolver = resolver_of(name)
            if name in seen or resolver is None:
                continue
            path = resolver.file_of(name)
            if path is None:  # an attribute imported by `from x import name`, not a module
                if name == module and name in roots:
                    raise ArtifactError(f"module {name!r} not found under {root_dir}")
                continue
            seen[name] = path
            pending.extend(m for m in _imported_modules(path, name, path.name == "__init__.py")
                           if resolver_of(m) is not None)
    return sorted(path.relative_to(root_dir).as_posix() for path in seen.values())


def total_code_bytes(files: Iterable[CodeFile]) -> int:
    return sum(f.bytes for f in files)
