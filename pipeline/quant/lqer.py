"""LQER (`quant.lqer`): a rank-k correction A @ B of the quantisation error of the worst tensors.

After rounding, E = W - dequant(W) for every integer-coded matrix; the ``top_k``
with the largest Frobenius norm get the best rank-``rank`` approximation of E
from its SVD (A = U_r S_r, B = V_r^T), itself quantised and stored beside the
codes; the reader adds A @ B back (`apply_correction`).  The 04-27 record's
packing, reproduced on the same error matrix (`scripts/parity/gptq_parity.py`):

- asymmetric (``asym``, when B's size is a multiple of ``asym_group``): A in int2
  codes [-2, 1] with one fp16 scale max|A|/1.5; B in int4 codes [-8, 7] with one
  fp16 scale max/7.5 per group of ``asym_group`` consecutive elements (row-major);
- symmetric otherwise: A and B each ``factor_bits``-bit codes in [-r, r], one fp16
  scale max/r per row (r = 2^(bits-1) - 1).

An entry carrying a correction holds ``lqer`` ("asym" | "sym") and the four
tensors ``lqer_a``, ``lqer_a_scale``, ``lqer_b``, ``lqer_b_scale``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

FIELDS = ("lqer_a", "lqer_a_scale", "lqer_b", "lqer_b_scale")


def pack_asym(A: Tensor, B: Tensor, group: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    sA = (A.abs().amax().clamp_min(1e-10) / 1.5).to(torch.float16)
    qA = torch.clamp(torch.round(A / sA.float()), -2, 1).to(torch.int8)
    Bg = B.reshape(-1, group)
    sB = (Bg.abs().amax(dim=-1, keepdim=True).clamp_min(1e-10) / 7.5).to(torch.float16).reshape(-1)
    qB = torch.clamp(torch.round(Bg / sB.float().reshape(-1, 1)), -8, 7).to(torch.int8).reshape(B.shape)
    return qA, sA, qB, sB


def pack_sym(A: Tensor, B: Tensor, bits: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r = 2 ** (bits - 1) - 1
    sA = (A.abs().amax(dim=1).clamp_min(1e-10) / r).to(torch.float16)
    sB = (B.abs().amax(dim=1).clamp_min(1e-10) / r).to(torch.float16)
    qA = torch.clamp(torch.round(A / sA.float().view(-1, 1)), -r, r).to(torch.int8)
    qB = torch.clamp(torch.round(B / sB.float().view(-1, 1)), -r, r).to(torch.int8)
    return qA, sA, qB, sB


def low_rank(E: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """(A, B) with A @ B the best rank-`rank` approximation of `E`."""
    U, S, Vh = torch.linalg.svd(E, full_matrices=False)
    r = min(rank, S.numel())
    return (U[:, :r] * S[:r]).contiguous(), Vh[:r, :].contiguous()


def correction_fields(E: Tensor, cfg: Any) -> dict[str, Any]:
    """The entry fields of the packed correction of the error matrix `E` (`cfg`: `LqerConfig`)."""
    A, B = low_rank(E.float(), cfg.rank)
    asym = cfg.asym and B.numel() % cfg.asym_group == 0
    packed = pack_asym(A, B, cfg.asym_group) if asym else pack_sym(A, B, cfg.factor_bits)
    return {"lqer": "asym" if asym else "sym", **dict(zip(FIELDS, packed))}


def correction(entry: Mapping[str, Any]) -> Tensor:
    """A @ B in fp32, as the reader adds it."""
    qA, sA, qB, sB = (entry[f] for f in FIELDS)
    if entry["lqer"] == "asym":
        A = qA.float() * float(sA)
        group = qB.numel() // sB.numel()
        B = (qB.reshape(-1, group).float() * sB.float().view(-1, 1)).reshape(qB.shape)
    elif entry["lqer"] == "sym":
        A = qA.float() * sA.float().view(-1, 1)
        B = qB.float() * sB.float().view(-1, 1)
    else:
        raise ValueError(f"unknown LQER packing {entry['lqer']!r}")
    return A @ B


def select_and_correct(originals: Mapping[str, Tensor], quantized: dict[str, dict[str, Any]],
                       decoded: Mapping[str, Tensor], cfg: Any) -> list[str]:
    """Add a correction to the `cfg.top_k` entries of `decoded` (fp32 dequantised 2-D integer-coded
    matrices) whose error against `originals` is largest; returns their names, worst first."""
    if cfg.top_k <= 0 or not decoded:
        return []
    errors = {name: originals[name].float().reshape(w.shape) - w for name, w in decoded.items()}
    norms = {name: float(E.norm()) for name, E in errors.items()}
    top = sorted(norms, key=lambda name: -norms[name])[: cfg.top_k]
    for name in top:
        quantized[name].update(correction_fields(errors[name], cfg))
    return top
