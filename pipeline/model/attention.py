"""Causal self-attention: GQA, per-head q/k RMS norm, partial RoPE, q gain, XSA,
and the sparse head-output gate.

Query head h reads KV head h // (H / Hkv), which is what both
`scaled_dot_product_attention(enable_gqa=True)` and FlashAttention-3 do, and
what XSA's grouping below assumes.

Backends: `sdpa` runs everywhere (CPU for tests, flash/cuDNN kernels on CUDA);
`fa3` calls `flash_attn_interface.flash_attn_func` (Hopper FlashAttention-3,
bf16 only); `auto` takes FA3 when it is importable and the input is on CUDA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.config import ModelConfig
from pipeline.errors import PgolfError
from pipeline.model.layers import CastedLinear, rms_norm
from pipeline.model.rotary import apply_rotary

try:  # FlashAttention-3 ships as a separate, Hopper-only wheel.
    from flash_attn_interface import flash_attn_func as _fa3_func
except ImportError:
    _fa3_func = None


def fa3_available() -> bool:
    return _fa3_func is not None


def exclude_self_value(y: Tensor, v: Tensor) -> Tensor:
    """XSA: remove from each head's output its component along its own
    position's normalised value vector, `y - (y . v_hat) v_hat`.

    y: (B, T, H, D); v: (B, T, Hkv, D).  Heads are grouped by the KV head they
    read, so no KV tensor is repeated.
    """
    b, t, h, d = y.shape
    hkv = v.size(2)
    y_g = y.reshape(b, t, hkv, h // hkv, d)
    v_hat = F.normalize(v, dim=-1).unsqueeze(3)
    y_g = y_g - (y_g * v_hat).sum(dim=-1, keepdim=True) * v_hat
    return y_g.reshape(b, t, h, d)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, use_xsa: bool) -> None:
        super().__init__()
        dim, hd = cfg.model_dim, cfg.head_dim
        self.num_heads = cfg.num_heads
        self.num_kv_heads = cfg.num_kv_heads
        self.head_dim = hd
        self.use_xsa = use_xsa
        self.backend = cfg.attention_backend
        if self.backend == "fa3" and not fa3_available():
            raise PgolfError(
                "model.attention_backend: 'fa3' requested but flash_attn_interface (FlashAttention-3) "
                "is not installed; use 'auto' or 'sdpa'"
            )
        kv_dim = cfg.num_kv_heads * hd
        self.c_q = CastedLinear(dim, dim)
        self.c_k = CastedLinear(dim, kv_dim)
        self.c_v = CastedLinear(dim, kv_dim)
        self.proj = CastedLinear(dim, dim)  # zero init: its rule in naming.PARAM_RULES
        self.q_gain = nn.Parameter(torch.full((cfg.num_heads,), float(cfg.q_gain_init), dtype=torch.float32))
        # Canon-B on the concatenated q|k|v, set by the block (`attn.canon_b`, the reference's name).
        self.canon_b: nn.Module | None = None
        # Sparse head-output gate (PR #1787): (heads, window), zero-initialised, so every head
        # starts at sigmoid(0) = 0.5 of its output; the record's name `attn_gate_w`.
        gate = cfg.attn_gate
        self.gate_window, self.gate_scale = gate.window, gate.scale
        if gate.enabled:
            self.attn_gate_w = nn.Parameter(torch.zeros(cfg.num_heads, gate.window, dtype=torch.float32))
        else:
            self.register_parameter("attn_gate_w", None)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        b, t, dim = x.shape
        q, k, v = self.c_q(x), self.c_k(x), self.c_v(x)
        if self.canon_b is not None:
            qkv = self.canon_b(torch.cat((q, k, v), dim=-1))
            q, k, v = qkv.split((q.size(-1), k.size(-1), v.size(-1)), dim=-1)
        q = q.reshape(b, t, self.num_heads, self.head_dim)
        k = k.reshape(b, t, self.num_kv_heads, self.head_dim)
        v = v.reshape(b, t, self.num_kv_heads, self.head_dim)
        q = apply_rotary(rms_norm(q), cos, sin)
        k = apply_rotary(rms_norm(k), cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, None, :, None]
        y = self._attend(q, k, v)
        if self.use_xsa:
            y = exclude_self_value(y, v.to(y.dtype))
        if self.attn_gate_w is not None:
            # sigmoid(scale * W_h . x[:window]) per token and head, x being this attention's input.
            g = torch.sigmoid(self.gate_scale * F.linear(x[..., : self.gate_window], self.attn_gate_w.to(x.dtype)))
            y = y * g[..., None].to(y.dtype)
        return self.proj(y.reshape(b, t, dim))

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Causal softmax attention with the default 1/sqrt(head_dim) scale; (B, T, H, D) in and out."""
        if self._use_fa3(q):
            q, k, v = (z.to(torch.bfloat16) for z in (q, k, v))
            out = _fa3_func(q, k, v, causal=True)
            return out[0] if isinstance(out, tuple) else out
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            is_causal=True, enable_gqa=self.num_kv_heads != self.num_heads,
        )
        return y.transpose(1, 2)

    def _use_fa3(self, q: Tensor) -> bool:
        if self.backend == "sdpa":
            return False
        if self.backend == "fa3":
            if not q.is_cuda:
                raise PgolfError("model.attention_backend: 'fa3' needs CUDA inputs; use 'auto' or 'sdpa' on CPU")
            return True
        return fa3_available() and q.is_cuda
