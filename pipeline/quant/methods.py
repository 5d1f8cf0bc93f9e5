"""Rounding methods, by name (`quant.method`): what turns a weight into its scheme's integer codes.

A method rounds one tensor's rows onto the grid its storage scheme gives
(`pipeline.quant.schemes`) and returns the scheme's fields.  One module per
method (`pipeline.quant.rtn` now), registered here.  A method that needs
more than the weights (a calibrated method needs the model and data)
declares it in ``needs``; the quantize stage builds exactly those inputs
(`pipeline.quant.packing.method_inputs`) and passes them as ``inputs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from torch import Tensor

from pipeline.quant.gptq import Gptq
from pipeline.quant.registry import lookup, register
from pipeline.quant.rtn import RoundToNearest

# Inputs the quantize stage can build for a method, beyond the weights themselves:
#   model     the configured GPT (`params.model`) holding the weights being packed, in eval mode on the CPU.
#   hessians  {parameter name: mean X^T X of that layer's inputs} over quant.gptq.calibration_batches
#             train batches (`pipeline.quant.calibration`).
# And always, from `pipeline.quant.mixed`:
#   category  the tensor's quantisation category (`pipeline.model.naming.quant_category`), so a method
#             needs no import of the model package (prepare validates method names without it).
KNOWN_INPUTS = ("model", "hessians")


class QuantMethod(Protocol):
    name: str
    needs: tuple[str, ...]  # names from KNOWN_INPUTS

    def encode(self, name: str, rows: Tensor, scheme: Any, cfg: Any,
               inputs: Mapping[str, Any]) -> dict[str, Tensor]: ...


METHODS: dict[str, QuantMethod] = {}


def register_method(method: QuantMethod) -> QuantMethod:
    """Make `method` selectable as `quant.method`."""
    unknown = [need for need in method.needs if need not in KNOWN_INPUTS]
    if unknown:
        raise ValueError(f"quantisation method {method.name!r} needs {unknown[0]!r}; "
                         f"the quantize stage provides {', '.join(KNOWN_INPUTS)}")
    return register(METHODS, "quantisation method", method, same_entry=True)


def get_method(name: str) -> QuantMethod:
    return lookup(METHODS, "quantisation method", name)


register_method(RoundToNearest())
register_method(Gptq())
