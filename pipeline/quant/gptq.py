"""GPTQ (`quant.method: gptq`): round column by column, pushing each column's error onto the columns
not yet rounded, weighted by the inverse Hessian of the layer's inputs (Frantar et al. 2022).

The records' variant, reproduced code for code on the same weights and Hessian
(`scripts/parity/gptq_parity.py`, pinned in `tests/quant/test_gptq.py`):

- the Hessian H = mean of X^T X over calibration batches (`pipeline.quant.calibration`);
  dead inputs (H_jj = 0) get H_jj = 1 and zero weights; ``damp`` x mean(diag H) is added
  to the diagonal;
- act-order: columns in order of decreasing diag(H), undone on the codes at the end;
- the upper Cholesky factor of H^-1, columns in blocks of ``block_size``: inside a block the
  error is pushed column by column, after it onto every later column at once;
- codes are symmetric, in [-qmax, qmax] of the storage scheme, one fp16 step per row:
  ``sd``: clip_sigmas x row std / qmax (04-05 SD-clip), optionally scaled per row by the
  Hessian-weighted row importance (04-06 Hessian-aware SD-clip, ``hessian_clip_lambda``);
  ``search``: the step of each of five |w| percentiles, keeping the one whose GPTQ codes
  reconstruct the (act-ordered) weights with the least squared error (03-25).

A tensor without a Hessian (one no calibrated layer reads, or 1-D) is rounded with an
identity Hessian: GPTQ then reduces to round-to-nearest on the same step.

Control tensors (gates, mixes; `quant.control_matrix_scheme`) are not GPTQ's: the 04-27
record routes its gates around GPTQ to per-row int8 on the row max, so they are rounded to
nearest on their scheme's own grid (`pipeline.quant.rtn`), whatever the method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from pipeline.quant.rtn import RoundToNearest


SEARCH_PERCENTILES = (0.9990, 0.9995, 0.9999, 0.99999, 1.0)


def prepare_hessian(H: Tensor, damp: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(damped H, dead-column mask, act-order permutation, upper Cholesky factor of the permuted H^-1)."""
    H = H.float().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    H.diagonal().add_(damp * H.diag().mean())
    perm = torch.argsort(H.diag(), descending=True)
    Hp = H[perm][:, perm]
    Hinv = torch.cholesky_inverse(torch.linalg.cholesky(Hp))
    return H, dead, perm, torch.linalg.cholesky(Hinv, upper=True)


def gptq_round(W: Tensor, Hinv: Tensor, step: Tensor, qmax: int, block_size: int) -> Tensor:
    """Codes (int8) of the act-ordered `W` with per-row `step` (fp32 values of the fp16 steps)."""
    rows, cols = W.shape
    Q = torch.zeros(rows, cols, dtype=torch.int8)
    work = W.clone()
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        block = work[:, i1:i2].clone()
        Hb = Hinv[i1:i2, i1:i2]
        err = torch.zeros(rows, i2 - i1)
        for j in range(i2 - i1):
            col = block[:, j]
            q = torch.clamp(torch.round(col / step), -qmax, qmax)
            Q[:, i1 + j] = q.to(torch.int8)
            e = (col - q * step) / Hb[j, j]
            err[:, j] = e
            block[:, j:] -= e.unsqueeze(1) * Hb[j, j:].unsqueeze(0)
        if i2 < cols:
            work[:, i2:] -= err @ Hinv[i1:i2, i2:]
    return Q


def sd_step(W: Tensor, H: Tensor, qmax: int, clip_sigmas: float, hessian_lambda: float) -> Tensor:
    """fp16 per-row step of SD-clip; `H` damped, in the original column order."""
    row_std = W.std(dim=1)
    clip = clip_sigmas * row_std
    if hessian_lambda > 0.0:
        col_importance = torch.diag(H).clamp_min(1e-8)
        col_importance = col_importance / col_importance.mean()
        row_importance = (W.abs() * col_importance.unsqueeze(0)).mean(dim=1)
        mean = row_importance.mean()
        if mean > 0:  # an all-zero matrix (the record would divide 0 by 0): plain SD-clip
            clip = clip * (1.0 + hessian_lambda * (row_importance / mean - 1.0))
    return (clip / qmax).clamp_min(1e-10).to(torch.float16)


def gptq_quantize(w: Tensor, H: Tensor, qmax: int, *, block_size: int = 128, damp: float = 0.01,
                  clip: str = "sd", clip_sigmas: float = 3.0, hessian_lambda: float = 0.0) -> tuple[Tensor, Tensor]:
    """(int8 codes in [-qmax, qmax], fp16 step per row) of the 2-D `w` given its input Hessian `H`."""
    W = w.float().clone()
    H, dead, perm, Hinv = prepare_hessian(H, damp)
    invperm = torch.argsort(perm)
    Wp = W[:, perm].clone()
    Wp[:, dead[perm]] = 0
    if clip == "sd":
        step = sd_step(W, H, qmax, clip_sigmas, hessian_lambda)
        return gptq_round(Wp, Hinv, step.float(), qmax, block_size)[:, invperm], step
    if clip != "search":
        raise ValueError(f"GPTQ clip {clip!r}: expected 'sd' or 'search'")
    best: tuple[Tensor, Tensor] | None = None
    best_err = float("inf")
    for pct in SEARCH_PERCENTILES:
        row_clip = torch.quantile(W.abs(), pct, dim=1) if pct < 1.0 else W.abs().amax(dim=1)
        step = (row_clip / qmax).clamp_min(1.0 / qmax).to(torch.float16)
        Q = gptq_round(Wp, Hinv, step.float(), qmax, block_size)
        err = (Wp - Q.float() * step.float()[:, None]).pow(2).mean().item()
        if err < best_err:
            best, best_err = (Q, step), err
    assert best is not None
    return best[0][:, invperm], best[1]


class Gptq:
    """The `gptq` rounding method: needs the layers' input Hessians, keyed by parameter name."""

    name = "gptq"
    needs: tuple[str, ...] = ("hessians",)

    def encode(self, name: str, rows: Tensor, scheme: Any, cfg: Any,
               inputs: Mapping[str, Any]) -> dict[str, Tensor]:
        category = inputs.get("category", "other")
        if category == "control":  # the record's gates bypass GPTQ: per-row round to nearest
            return RoundToNearest().encode(name, rows, scheme, cfg, inputs)
        g = cfg.gptq
        H = inputs.get("hessians", {}).get(name)
        if H is None or H.shape != (rows.shape[1], rows.shape[1]):
            H = torch.eye(rows.shape[1])
        sigmas = getattr(g.clip_sigmas, category)
        codes, step = gptq_quantize(rows, H, scheme.qmax, block_size=g.block_size, damp=g.damp, clip=g.clip,
                                    clip_sigmas=sigmas,
                                    hessian_lambda=g.hessian_clip_lambda)
        return scheme.pack(codes, step)
