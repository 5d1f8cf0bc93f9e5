"""Load one of the repository's scripts (`scripts/...`) as a module, for the tests that call
its functions: the parity scripts' pgolf halves, compose-params, params-table.

The scripts are files, not package modules (some have no `.py` suffix), so they are loaded
by path.  Each is registered in `sys.modules` under its name, once: the parity scripts'
dataclasses look their module up there, and several test files share one script.  A parity
script's folder goes on `sys.path`, where its siblings (shared helpers) are imported from.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str) -> ModuleType:
    """The script at ROOT/`relative` (e.g. "scripts/parity/document_parity.py") as a module."""
    path = ROOT / relative
    name = path.name.removesuffix(".py").replace("-", "_")
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "") == path:
        return loaded
    if str(path.parent) not in sys.path and path.parent.name == "parity":
        sys.path.insert(0, str(path.parent))
    loader = SourceFileLoader(name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    sys.modules[name] = module
    try:
        loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
