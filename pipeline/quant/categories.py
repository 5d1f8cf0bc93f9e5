"""Per-category figures of a quantised state dict: what `pgolf quantize` prints and size.json records.

For each tensor category (`pipeline.model.naming.quant_category`: embed, mlp, attn, other, control) the
schemes used and their bits per weight, the tensors and weights counted, the bytes
the entries hold before compression (codes, scales, LQER factors), and the
reconstruction error ||W - dequant(W)|| / ||W|| over the category.  The payload is
compressed as one stream, so compressed bytes per category do not exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from pipeline.model.naming import quant_category
from pipeline.quant.schemes import get_scheme


def scheme_bits(name: str, dtype: torch.dtype) -> int:
    scheme = get_scheme(name)
    bits = getattr(scheme, "bits", None)
    if bits is not None:
        return bits
    return (torch.finfo if dtype.is_floating_point else torch.iinfo)(scheme.dtype or dtype).bits


def category_stats(state_dict: Mapping[str, Tensor], quantized: Mapping[str, Mapping[str, Any]],
                   dequantized: Mapping[str, Tensor]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, entry in quantized.items():
        w = state_dict[name]
        category = quant_category(name) if w.is_floating_point() else "raw"
        cat = out.setdefault(category, {"schemes": {}, "tensors": 0, "weights": 0, "bytes": 0,
                                                     "lqer_tensors": 0, "_err": 0.0, "_norm": 0.0})
        cat["schemes"][entry["scheme"]] = scheme_bits(entry["scheme"], w.dtype)
        cat["tensors"] += 1
        cat["weights"] += w.numel()
        cat["bytes"] += sum(t.numel() * t.element_size() for t in entry.values() if isinstance(t, Tensor))
        cat["lqer_tensors"] += int("lqer" in entry)
        if w.is_floating_point():
            cat["_err"] += float((w.float() - dequantized[name].float()).pow(2).sum())
            cat["_norm"] += float(w.float().pow(2).sum())
    for cat in out.values():
        err, norm = cat.pop("_err"), cat.pop("_norm")
        cat["rel_error"] = (err / norm) ** 0.5 if norm > 0 else 0.0
    return dict(sorted(out.items()))


def format_stats(stats: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per category, for the quantize stage's output."""
    lines = []
    for name, cat in stats.items():
        schemes = ", ".join(f"{s} ({b} bits)" for s, b in cat["schemes"].items())
        lqer = f", LQER on {cat['lqer_tensors']}" if cat["lqer_tensors"] else ""
        lines.append(f"  {name:<6} {cat['tensors']:>3} tensors, {cat['weights']:>11,} weights: {schemes}; "
                     f"{cat['bytes']:>11,} bytes before compression; relative error {cat['rel_error']:.3e}{lqer}")
    return lines
