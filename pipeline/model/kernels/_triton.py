"""Triton, imported optionally, and kernels compiled at first use.

Triton is an optional extra (`pgolf[kernels]`): without it this module still
imports (`tl` is None) and the plain PyTorch paths run.  Kernels are written
here as undecorated functions and handed to `triton.jit` on their first launch,
not at import: `triton.jit` reads `TRITON_INTERPRET` when it decorates, so a
test that sets it (the interpreter runs kernels on CPU tensors) gets
interpreted kernels however early this package was imported.  One compiled
object is kept per interpreter setting.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

from pipeline.errors import PgolfError

try:
    import triton
    import triton.language as tl

    TRITON_IMPORT_ERROR: BaseException | None = None
except ImportError as exc:  # the extra is not installed
    triton = None
    tl = None
    TRITON_IMPORT_ERROR = exc


def triton_available() -> bool:
    return TRITON_IMPORT_ERROR is None


@torch.compiler.assume_constant_result
def interpreting() -> bool:
    """True when Triton would decorate kernels for its CPU interpreter (TRITON_INTERPRET=1).
    Read by torch.compile at trace time and kept as a constant (Triton reads the variable
    through a C function Dynamo cannot trace; it does not change within a run)."""
    if triton is None:
        return False
    knobs = getattr(triton, "knobs", None)  # Triton >= 3.4; older ones read the variable directly
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


# The torch.library namespace of the custom ops: "pgolf" here, another one inside an exported
# train_gpt.py (whose embedded package is renamed), so both can be imported in one process.
_TOP = __name__.partition(".")[0]
OP_NAMESPACE = "pgolf" if _TOP == "pipeline" else "pgolf_" + _TOP.strip("_")

_compiled: dict[tuple[Callable[..., Any], bool], Any] = {}


def jit(fn: Callable[..., Any]) -> Any:
    """`triton.jit(fn)`, made once per interpreter setting."""
    if triton is None:
        raise PgolfError(f"the fused kernels need Triton (pip install 'pgolf[kernels]'): {TRITON_IMPORT_ERROR}")
    key = (fn, interpreting())
    if key not in _compiled:
        _compiled[key] = triton.jit(fn)
    return _compiled[key]
