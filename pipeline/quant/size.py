"""Size accounting against the 16,000,000-byte cap (SPEC §4).

What counts is the compressed model plus the code needed to rebuild and run
it.  That code is computed, not listed: starting from the model package, the
artifact reader and the evaluator, follow every ``pipeline`` import found in
the source (statically, with `ast`, so nothing is executed) and add the
``__init__.py`` of every package on the way.  The list therefore stays true
as modules are added, split or start importing each other.  Imports are
followed wherever they appear (inside functions too): counting a file that is
only sometimes needed errs on the safe side of the cap.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import QuantConfig
from pipeline.errors import ArtifactError

# Entry points of "rebuild and evaluate the model": packages count whole.
DEFAULT_ROOTS = ("pipeline.model", "pipeline.quant.artifact", "pipeline.evaluate")
_SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding `pipeline/`


@dataclass(frozen=True)
class CodeFile:
    path: str  # relative to the source root, POSIX separators
    bytes: int


@dataclass(frozen=True)
class SizeReport:
    model_bytes: int
    code_bytes: int
    total_bytes: int
    cap_bytes: int
    headroom_bytes: int  # cap - total; negative when over the cap
    within_cap: bool
    files: list[CodeFile] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def total_code_bytes(files: Iterable[CodeFile]) -> int:
    return sum(f.bytes for f in files)


def size_report(
    model_bytes: int,
    cfg: QuantConfig,
    roots: Sequence[str] = DEFAULT_ROOTS,
    source_root: Path | None = None,
) -> SizeReport:
    """Model + code bytes against `cfg.cap_bytes`; over the cap raises unless `cfg.allow_oversize`."""
    files = code_files(roots, source_root)
    code = total_code_bytes(files)
    total = model_bytes + code
    report = SizeReport(
        model_bytes=model_bytes,
        code_bytes=code,
        total_bytes=total,
        cap_bytes=cfg.cap_bytes,
        headroom_bytes=cfg.cap_bytes - total,
        within_cap=total <= cfg.cap_bytes,
        files=files,
    )
    if not report.within_cap and not cfg.allow_oversize:
        raise ArtifactError(
            f"artifact too large: {model_bytes:,} model + {code:,} code = {total:,} bytes "
            f"> cap {cfg.cap_bytes:,} (set quant.allow_oversize to keep it anyway)"
        )
    return report
