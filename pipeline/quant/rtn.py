"""Round-to-nearest (`quant.method: rtn`): each weight to the nearest code of its row's grid (SPEC §4).

Needs nothing but the weights.  With the int6 and int8 schemes this is
exactly the reference's post-training quantisation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


class RoundToNearest:
    name = "rtn"
    needs: tuple[str, ...] = ()

    def encode(self, name: str, rows: Tensor, scheme: Any, cfg: Any,
               inputs: Mapping[str, Any]) -> dict[str, Tensor]:
        """`rows` (2-D) -> the scheme's fields: codes clamp(round(values / step)) and the step."""
        values, scale = scheme.grid(rows, cfg)
        codes = torch.clamp(torch.round(values / scale[:, None]), scheme.qmin, scheme.qmax)
        return scheme.pack(codes, scale)
