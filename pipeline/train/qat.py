"""Which layers late QAT fake-quantises, and onto which grid (``train.qat_targets``).

- ``all_linear``: every `CastedLinear` on the int6 grid, whatever ``quant`` stores:
  the reference's behaviour (the record keeps it, so its training stays bitwise
  equal to the record script).  `bigram.proj`, stored fp16 in the record's
  artifact, is fake-quantised too.
- ``as_stored``: exactly the weights the quantize stage stores at a low bit
  width, each on its own scheme's code range: the scheme comes from the same
  rule the quantize stage applies (`pipeline.quant.mixed.choose_scheme`, i.e.
  ``quant.schemes``, ``quant.keep_float_max_numel``, the parameter table's
  category); a weight the artifact keeps as floats (fp16/fp32) is left alone.
  QAT rounds with a row-max step on that range; a clipped scheme's percentile
  clip (int8) is not simulated.

The grids are fixed once, before the model is compiled (`configure_qat`); the
switch itself stays the `qat` buffer that `GPT.set_qat` flips mid-run.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from pipeline.config import QuantConfig
from pipeline.model.layers import CastedLinear
from pipeline.quant.mixed import choose_scheme
from pipeline.quant.rowwise import INT6_MAX, INT6_MIN
from pipeline.quant.schemes import get_scheme

QatTargets = Literal["all_linear", "as_stored"]
QAT_TARGETS: tuple[QatTargets, ...] = ("all_linear", "as_stored")


def qat_grids(model: nn.Module, targets: QatTargets, quant: QuantConfig) -> dict[str, tuple[int, int] | None]:
    """Weight name -> the code range [qmin, qmax] late QAT rounds it onto (None: not fake-quantised),
    for every `CastedLinear` of `model`."""
    if targets not in QAT_TARGETS:
        raise ValueError(f"train.qat_targets: {targets!r} is not one of {', '.join(QAT_TARGETS)}")
    grids: dict[str, tuple[int, int] | None] = {}
    for name, module in model.named_modules():
        if not isinstance(module, CastedLinear):
            continue
        weight_name = f"{name}.weight"
        if targets == "all_linear":
            grids[weight_name] = (INT6_MIN, INT6_MAX)
            continue
        scheme = get_scheme(choose_scheme(weight_name, module.weight, quant))
        grids[weight_name] = None if scheme.kept else (scheme.qmin, scheme.qmax)  # type: ignore[union-attr]
    return grids


def configure_qat(model: nn.Module, targets: QatTargets, quant: QuantConfig) -> dict[str, tuple[int, int] | None]:
    """Set every `CastedLinear`'s `qat_grid` per `qat_grids`; returns the grids (for the log and tests).
    Call before compiling: the grid is read when the graph is traced."""
    grids = qat_grids(model, targets, quant)
    for name, module in model.named_modules():
        if isinstance(module, CastedLinear):
            module.qat_grid = grids[f"{name}.weight"]
    return grids
