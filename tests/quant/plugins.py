"""A dummy storage scheme, rounding method and compressor, registered for one test and removed after.

They are deliberately unlike the built-in ones (3-bit codes, rounding down, bz2 with header code 200),
so a test can tell from the artifact that each seam was used.
"""

from __future__ import annotations

import bz2
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from pipeline.quant.compressors import COMPRESSORS, Compressor, register_compressor
from pipeline.quant.methods import METHODS, register_method
from pipeline.quant.schemes import SCHEMES, RowMaxScheme, register_scheme

SCHEME = "int3t"
METHOD = "floor"
COMPRESSOR = "bz2t"
BZ2_CODE = 200


class RoundDown:
    """Rounds every weight down on its scheme's grid; asks for the model to show `needs` is honoured."""

    name = METHOD
    needs = ("model",)

    def __init__(self) -> None:
        self.models: list[Any] = []  # the `model` input of every call

    def encode(self, name: str, rows: Tensor, scheme: Any, cfg: Any, inputs: Mapping[str, Any]) -> dict[str, Tensor]:
        self.models.append(inputs["model"])
        values, scale = scheme.grid(rows, cfg)
        return scheme.pack(torch.clamp(torch.floor(values / scale[:, None]), scheme.qmin, scheme.qmax), scale)


@contextlib.contextmanager
def registered() -> Iterator[RoundDown]:
    """The three plugins registered while the block runs."""
    method = RoundDown()
    register_scheme(RowMaxScheme(SCHEME, 3))
    register_method(method)
    register_compressor(Compressor(COMPRESSOR, BZ2_CODE, lambda raw, cfg: bz2.compress(raw, 9), bz2.decompress,
                                   (OSError, ValueError)))
    try:
        yield method
    finally:
        SCHEMES.pop(SCHEME)
        METHODS.pop(METHOD)
        COMPRESSORS.pop(COMPRESSOR)
