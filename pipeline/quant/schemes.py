"""Storage schemes: how one tensor is held in the artifact, by name (SPEC §4).

A scheme says which tensors an artifact entry holds (`fields`) and how to
turn them back into a float tensor (`decode`).  Integer schemes also give
the grid a rounding method rounds onto (`grid`: the values to round and the
per-row step) and pack the codes (`pack`); the rounding itself is the
method's job (`pipeline.quant.rtn`).  The artifact reads and writes any
registered scheme, so a new bit width is one `register_scheme` line.

Integer schemes work on rows (`as_rows`: the first dimension is the row, a
vector is one row), keep int8 codes and one fp16 scale per row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pipeline.quant.registry import lookup, register
from pipeline.quant.rowwise import dequantize_rows


def as_rows(t: Tensor) -> Tensor:
    """View any tensor as (rows, cols): first dim is the row; a vector is one row."""
    return t.reshape(1, -1) if t.ndim <= 1 else t.reshape(t.shape[0], -1)


@dataclass(frozen=True)
class KeptScheme:
    """Stored as floats (or unchanged): no rounding grid."""

    name: str
    dtype: torch.dtype | None  # None: the tensor's own dtype (``raw``)
    fields: tuple[str, ...] = ("data",)
    kept: bool = True

    def store(self, t: Tensor) -> dict[str, Tensor]:
        return {"data": t.clone() if self.dtype is None else t.to(self.dtype)}

    def decode(self, entry: Mapping[str, Any], dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
        return entry["data"].to(dtype).reshape(shape)


@dataclass(frozen=True)
class RowMaxScheme:
    """Signed `bits`-bit codes per row, step rowmax/qmax (floor 1/qmax), no clipping: int5/int6/int7."""

    name: str
    bits: int
    fields: tuple[str, ...] = ("data", "scale")
    kept: bool = False

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1))

    def grid(self, rows: Tensor, cfg: Any) -> tuple[Tensor, Tensor]:
        """(fp32 values to round, fp32 step per row); rounding uses the fp16 step that is stored."""
        row_max = rows.detach().float().abs().amax(dim=1)
        scale = (row_max / self.qmax).clamp_min(1.0 / self.qmax).to(torch.float16)
        return rows.float(), scale.float()

    def pack(self, codes: Tensor, scale: Tensor) -> dict[str, Tensor]:
        return {"data": codes.to(torch.int8).contiguous(), "scale": scale.to(torch.float16).contiguous()}

    def decode(self, entry: Mapping[str, Any], dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
        return dequantize_rows(entry["data"], entry["scale"], dtype).reshape(shape)


@dataclass(frozen=True)
class ClippedRowScheme(RowMaxScheme):
    """Symmetric codes in [-qmax, qmax], |w| clipped per row at `quant.int8_clip_percentile`: int8.

    The step is the clip over qmax in fp32 (rounding uses it), stored in fp16, as the reference does.
    """

    @property
    def qmin(self) -> int:
        return -self.qmax

    def grid(self, rows: Tensor, cfg: Any) -> tuple[Tensor, Tensor]:
        w32 = rows.float()
        clip = torch.quantile(w32.abs(), cfg.int8_clip_percentile / 100.0, dim=1)
        clipped = torch.maximum(torch.minimum(w32, clip[:, None]), -clip[:, None])
        return clipped, (clip / self.qmax).clamp_min(1.0 / self.qmax)


@dataclass(frozen=True)
class SymmetricRowScheme(RowMaxScheme):
    """Symmetric codes in [-qmax, qmax], step rowmax/qmax (floor 1e-10 on the max), no clipping:
    int8row, the 04-27 record's per-row int8 for gates (`_quantize_gate_int8_row`)."""

    @property
    def qmin(self) -> int:
        return -self.qmax

    def grid(self, rows: Tensor, cfg: Any) -> tuple[Tensor, Tensor]:
        row_max = rows.detach().float().abs().amax(dim=1).clamp_min(1e-10)
        return rows.float(), (row_max / self.qmax).to(torch.float16).float()


Scheme = KeptScheme | RowMaxScheme

SCHEMES: dict[str, Scheme] = {}


def register_scheme(scheme: Scheme) -> Scheme:
    """Make `scheme` available to params (`quant.schemes.*`) and to the artifact reader."""
    return register(SCHEMES, "storage scheme", scheme)


def get_scheme(name: str) -> Scheme:
    return lookup(SCHEMES, "storage scheme", name)


register_scheme(RowMaxScheme("int6", 6))
register_scheme(ClippedRowScheme("int8", 8))
register_scheme(KeptScheme("fp16", torch.float16))
register_scheme(KeptScheme("fp32", torch.float32))
register_scheme(KeptScheme("raw", None))
register_scheme(RowMaxScheme("int5", 5))
register_scheme(RowMaxScheme("int7", 7))
register_scheme(SymmetricRowScheme("int8row", 8))
