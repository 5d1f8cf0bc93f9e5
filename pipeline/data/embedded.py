"""The embedded corpus: English text that ships with every Python install.

The CPU smoke run needs real prose without a download.  The interpreter
carries two bodies of it: the pydoc topic help (``pydoc_data.topics``) and
the docstrings of the standard library.  Docstrings are read with ``ast``
from the ``.py`` sources, never by importing the modules (imports run code,
open windows, print warnings, and differ across platforms).

Each pydoc topic is one document and so is each docstring (module, class,
function, in source order).  Docstrings are kept separate rather than joined
per module because SentencePiece's trainer skips sentences longer than
``max_sentence_length`` (4192 bytes by default): short documents are what the
tokenizer actually learns from.  Order is fixed (topics by name, then files by
relative path), so the corpus is identical across runs on the same Python.
"""

from __future__ import annotations

import ast
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

# Directories of the standard library that hold tests, fixtures or third-party
# packages rather than documentation.
_SKIPPED_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"})

# Nodes that are, or whose bodies may hold, documented definitions
# (functions defined under ``if sys.platform ...`` or ``try:`` count too).
_WALKED = tuple(
    getattr(ast, name)
    for name in ("ClassDef", "FunctionDef", "AsyncFunctionDef", "If", "Try", "TryStar", "With", "For", "While")
    if hasattr(ast, name)
)


def stdlib_dir() -> Path:
    """The directory of the running interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def describe_embedded() -> dict[str, str]:
    """What the embedded corpus is, for the manifest (it depends on the Python build)."""
    return {
        "kind": "embedded",
        "python": sys.version.split()[0],
        "implementation": sys.implementation.name,
        "contents": "pydoc_data.topics (sorted by topic) + stdlib docstrings (sorted by file, source order)",
    }


def iter_embedded_documents() -> Iterator[str]:
    """Yield every document of the embedded corpus, in its fixed order (raw text, uncleaned)."""
    yield from _pydoc_topics()
    for path in _stdlib_sources(stdlib_dir()):
        yield from _docstrings(path)


def _pydoc_topics() -> Iterator[str]:
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some minimal Python builds drop pydoc_data
        return
    for name in sorted(topics):
        yield topics[name]


def _stdlib_sources(root: Path) -> list[Path]:
    files = [
        path for path in root.rglob("*.py")
        if not _SKIPPED_DIRS.intersection(path.relative_to(root).parts[:-1])
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def _docstrings(path: Path) -> Iterator[str]:
    """Docstrings of a module, its classes and functions, in source order."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        # lib2to3 fixtures and the like are not Python 3; they carry no docs we need.
        return
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc
        children = [child for child in ast.iter_child_nodes(node) if isinstance(child, _WALKED)]
        stack.extend(reversed(children))
