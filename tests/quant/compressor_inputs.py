"""The payload the compressors' parity is measured on, shared by `scripts/parity/compressor_parity.py`
and `tests/quant/test_compressors.py`."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import torch

from pipeline.quant.mixed import quantize_state_dict

from tests.quant.conftest import g3_shapes, random_state_dict


def payload_and_entries(q: Any) -> tuple[bytes, dict[str, dict[str, Any]]]:
    """(the uncompressed artifact payload, its quantised entries) of a two-layer, dim-256 G3 state dict
    quantised with the record's RTN int6/int8 settings."""
    sd = random_state_dict(g3_shapes(num_layers=2, dim=256))
    cfg = dataclasses.replace(q, method="rtn", keep_float_max_numel=65536)
    tensors = quantize_state_dict(sd, cfg)
    buf = io.BytesIO()
    torch.save({"format_version": 1, "tensors": tensors, "meta": {}}, buf)
    return buf.getvalue(), tensors
