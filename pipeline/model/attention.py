"""Causal self-attention: GQA, per-head q/k RMS norm, partial RoPE, q gain, XSA,
and the sparse head-output gate.

Query head h reads KV head h // (H / Hkv), which is what both
`scaled_dot_product_attention(enable_gqa=True)` and FlashAttention-3 do, and
what XSA's grouping below assumes.

Backends: `sdpa` runs everywhere (CPU for tests; on CUDA PyTorch picks among
its flash, memory-efficient and cuDNN kernels); `cudnn` pins SDPA to cuDNN's
kernel (CUDA only; reported to match FlashAttention-3 on an H100 and needs no
extra wheel); `fa3` calls `flash_attn_interface.flash_attn_func` (Hopper
FlashAttention-3, bf16 only); `auto` takes FA3 when it is importable and the
input is on CUDA, else PyTorch's choice.
A packed (1, N) stream with `Segments` (per-document attention: training's
`train.batch_layout: documents`, phased TTT's global phase) takes one of four
routes (`CausalSelfAttention.segment_route`): FA3's varlen kernel where FA3
would be taken; FlexAttention with a block-sparse document mask on CUDA under
torch.compile (no N x N tensor: the frontier's 98,304-token rows without FA3);
one causal call per segment for an eager stream over MASK_MAX_TOKENS; else SDPA
with the block-diagonal causal mask (N x N booleans: CPU, tests, moderate N).
The `cudnn` pin applies where `_attend` runs (rows, and the per-segment loop);
the other segment routes choose their own kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from pipeline.config import ModelConfig
from pipeline.errors import PgolfError
from pipeline.model.layers import CastedLinear, rms_norm
from pipeline.model.rotary import apply_rotary

if TYPE_CHECKING:
    from pipeline.evaluate.lora import BlockAdapters

try:  # FlashAttention-3 ships as a separate, Hopper-only wheel.
    from flash_attn_interface import flash_attn_func as _fa3_func
except ImportError:
    _fa3_func = None
try:
    from flash_attn_interface import flash_attn_varlen_func as _fa3_varlen_func
except ImportError:
    _fa3_varlen_func = None


try:  # FlexAttention: in torch since 2.5; optional so an older torch still imports this module.
    from torch.nn.attention.flex_attention import BlockMask, flex_attention
except ImportError:
    BlockMask = flex_attention = None


def fa3_available() -> bool:
    return _fa3_func is not None


# Without FA3, an eager forward over a longer stream attends one segment at a time instead
# of building the N x N mask (phased TTT's global phase on a GPU without FA3).
MASK_MAX_TOKENS = 8192

# cu_seqlens is padded to a multiple of this (the record's bucket), so its length, and with it
# a compiled graph's input shapes, changes only when a batch holds 64 more segments.
CU_SEQLENS_BUCKET = 64

# FlexAttention's sparsity tile (queries x keys): a tile wholly inside one document below the
# diagonal runs unmasked, one that straddles a boundary or the diagonal evaluates the mask.
FLEX_BLOCK_SIZE = 128

SegmentRoute = Literal["fa3", "flex", "loop", "mask"]


def flex_applies(ref: Tensor) -> bool:
    """Whether segmented attention on `ref`'s device goes to FlexAttention (FA3 aside): on
    CUDA while torch.compile traces, where Inductor turns it into a fused block-sparse
    kernel.  Eager flex_attention is an unfused reference that holds the N x N scores, so
    eager calls keep the mask or the per-segment loop.  Tests patch this to run flex on CPU."""
    return flex_attention is not None and ref.is_cuda and torch.compiler.is_compiling()


def document_block_mask(cu_seqlens: Tensor, n: int, block_size: int = FLEX_BLOCK_SIZE) -> BlockMask:
    """FlexAttention's BlockMask for `Segments.mask(n)` (query i sees key j iff j <= i in
    one segment), built from per-tile document ranges by tensor ops on (n / block)^2 tiles,
    never n^2: static shapes for a fixed n and cu_seqlens length, so it traces under
    torch.compile(fullgraph=True) once for every boundary set."""
    blocks = -(-n // block_size)
    pos = torch.arange(blocks * block_size, device=cu_seqlens.device, dtype=torch.int32)
    # Segment index per position; positions past n (the last tile's padding) get len(cu),
    # an index no real position has, and lie after every real query, so causality masks them.
    doc = torch.searchsorted(cu_seqlens, pos, right=True)
    tiles = doc.view(blocks, block_size)
    first, last = tiles[:, 0], tiles[:, -1]  # segments are contiguous: a tile's range
    row = torch.arange(blocks, device=doc.device)
    below = row[None, :] < row[:, None]  # [query tile, key tile]: key tile strictly earlier
    # A key tile before the query tile shares a segment with it iff its last segment is the
    # query tile's first; it is full iff one segment covers both tiles whole.
    full = below & (first[None, :] == last[:, None])
    partial = (below & (last[None, :] == first[:, None]) & ~full) | (row[None, :] == row[:, None])

    def ordered(tiles_on: Tensor) -> tuple[Tensor, Tensor]:
        on = tiles_on.to(torch.int32)
        indices = torch.argsort(on, dim=-1, descending=True, stable=True).to(torch.int32)
        return on.sum(-1).to(torch.int32)[None, None], indices[None, None]

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (doc[q_idx] == doc[kv_idx]) & (q_idx >= kv_idx)

    kv_num, kv_idx = ordered(partial)
    full_num, full_idx = ordered(full)
    return BlockMask.from_kv_blocks(kv_num, kv_idx, full_num, full_idx, BLOCK_SIZE=block_size,
                                    mask_mod=mask_mod, seq_lengths=(n, n))


@dataclass(frozen=True)
class Segments:
    """A packed (1, N) stream cut into segments that attend only within themselves.

    `cu_seqlens` (int32): [0, s1, ..., N] then N repeated up to a multiple of
    CU_SEQLENS_BUCKET, FlashAttention's varlen form as the 1.0611 record builds it;
    `max_len`: a bound on a segment's length, a plain int (FA3's max_seqlen, the
    rotary scale length), so the same graph serves every batch.  Training passes
    the sequence length; `at_documents` the longest piece of its stream.  Without
    FA3, attention applies a block-diagonal causal mask (dense, or FlexAttention's
    block-sparse one) built from `cu_seqlens` by tensor ops, which traces under
    torch.compile without a recompile per batch.
    """

    cu_seqlens: Tensor
    max_len: int
    # FlexAttention's mask for these segments over a stream of block_mask.seq_lengths tokens,
    # built once per forward (`with_block_mask`) and shared by every layer; None: built on demand.
    block_mask: BlockMask | None = field(default=None, compare=False, repr=False)

    @staticmethod
    def from_starts(starts: Sequence[int], total: int, max_len: int, device: torch.device | None = None,
                    bound: int | None = None) -> Segments:
        """Segments beginning at position 0, at every position in `starts` (ascending, within
        [0, total)) and every `max_len` tokens after each (0: never cut): the record's
        `_build_cu_seqlens`.  The result's `max_len` is `bound`, by default the longest piece."""
        begins = list(starts) if starts and starts[0] == 0 else [0, *starts]
        bounds: list[int] = []
        for a, b in zip(begins, begins[1:] + [total]):
            bounds.extend(range(a, b, max_len) if max_len > 0 else [a])
        bounds.append(total)
        padded = -(-len(bounds) // CU_SEQLENS_BUCKET) * CU_SEQLENS_BUCKET
        cu = torch.full((padded,), total, dtype=torch.int32)
        cu[: len(bounds)] = torch.tensor(bounds, dtype=torch.int32)
        longest = max(b - a for a, b in zip(bounds, bounds[1:]))
        return Segments(cu if device is None else cu.to(device), longest if bound is None else bound)

    @staticmethod
    def at_documents(ids: Tensor, bos_id: int, max_len: int) -> Segments:
        """A segment starts at position 0, at every BOS, and every `max_len` tokens
        within a document (0: never cut); the result's `max_len` is the longest piece."""
        starts = (ids == bos_id).nonzero(as_tuple=True)[0].tolist()
        return Segments.from_starts(starts, ids.numel(), max_len, ids.device)

    @property
    def bounds(self) -> tuple[int, ...]:
        """[0, s1, ..., N] without the padding (reads the tensor back: not for compiled code)."""
        cu = self.cu_seqlens.tolist()
        return tuple(cu[: cu.index(cu[-1]) + 1])

    def with_block_mask(self, n: int, device: torch.device | None = None) -> Segments:
        """These segments carrying the FlexAttention BlockMask for a stream of n tokens
        (on `device`, by default cu_seqlens' own)."""
        if self.block_mask is not None and self.block_mask.seq_lengths == (n, n):
            return self
        cu = self.cu_seqlens.to(device=device or self.cu_seqlens.device, dtype=torch.int32)
        return replace(self, block_mask=document_block_mask(cu, n, FLEX_BLOCK_SIZE))

    def mask(self, n: int) -> Tensor:
        """(n, n) bool: query i may attend key j iff j <= i and both lie in one segment."""
        pos = torch.arange(n, device=self.cu_seqlens.device, dtype=torch.int32)
        segment = torch.searchsorted(self.cu_seqlens, pos, right=True)
        return (segment[:, None] == segment[None, :]) & (pos[:, None] >= pos[None, :])


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

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, adapters: BlockAdapters | None = None,
                segments: Segments | None = None) -> Tensor:
        """`adapters` (phased TTT) add their low-rank updates to q, k, v (before Canon-B)
        and to the output projection, all read from x; `segments` restricts a (1, N)
        stream's attention to each segment."""
        b, t, dim = x.shape
        q, k, v = self.c_q(x), self.c_k(x), self.c_v(x)
        if adapters is not None:
            q = q + adapters.q(x)
            if adapters.k is not None:
                k = k + adapters.k(x)
            v = v + adapters.v(x)
        if self.canon_b is not None:
            qkv = self.canon_b(torch.cat((q, k, v), dim=-1))
            q, k, v = qkv.split((q.size(-1), k.size(-1), v.size(-1)), dim=-1)
        q = q.reshape(b, t, self.num_heads, self.head_dim)
        k = k.reshape(b, t, self.num_kv_heads, self.head_dim)
        v = v.reshape(b, t, self.num_kv_heads, self.head_dim)
        q = apply_rotary(rms_norm(q), cos, sin)
        k = apply_rotary(rms_norm(k), cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, None, :, None]
        y = self._attend(q, k, v) if segments is None else self._attend_segments(q, k, v, segments)
        if self.use_xsa:
            y = exclude_self_value(y, v.to(y.dtype))
        if self.attn_gate_w is not None:
            # sigmoid(scale * W_h . x[:window]) per token and head, x being this attention's input.
            g = torch.sigmoid(self.gate_scale * F.linear(x[..., : self.gate_window], self.attn_gate_w.to(x.dtype)))
            y = y * g[..., None].to(y.dtype)
        out = self.proj(y.reshape(b, t, dim))
        if adapters is not None and adapters.out is not None:
            out = out + adapters.out(x)
        return out

    def _attend(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Causal softmax attention with the default 1/sqrt(head_dim) scale; (B, T, H, D) in and out."""
        if self._use_fa3(q):
            q, k, v = (z.to(torch.bfloat16) for z in (q, k, v))
            out = _fa3_func(q, k, v, causal=True)
            return out[0] if isinstance(out, tuple) else out
        choice = self._sdpa_kernels(q)
        if choice is None:
            return self._causal_sdpa(q, k, v)
        with sdpa_kernel(choice):
            return self._causal_sdpa(q, k, v)

    def _causal_sdpa(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            is_causal=True, enable_gqa=self.num_kv_heads != self.num_heads,
        )
        return y.transpose(1, 2)

    def _sdpa_kernels(self, q: Tensor) -> list[SDPBackend] | None:
        """The SDPA kernels `_attend` may use: None leaves the choice to PyTorch.  The pin is
        a context manager around the call, which torch.compile(fullgraph=True) traces."""
        if self.backend != "cudnn":
            return None
        if not q.is_cuda:
            raise PgolfError("model.attention_backend: 'cudnn' needs CUDA inputs (cuDNN's attention kernel); "
                             "use 'auto' or 'sdpa' on CPU")
        return [SDPBackend.CUDNN_ATTENTION]

    def segment_route(self, q: Tensor) -> SegmentRoute:
        """Where `_attend_segments` sends a (1, N, H, D) stream: FA3's varlen kernel where
        `_attend` would take FA3, FlexAttention where `flex_applies` (CUDA, compiling), one
        causal call per segment for an eager stream over MASK_MAX_TOKENS, else the mask."""
        if self._use_fa3(q) and _fa3_varlen_func is not None:
            return "fa3"
        if flex_applies(q):
            return "flex"
        if q.size(1) > MASK_MAX_TOKENS and not torch.compiler.is_compiling():
            return "loop"
        return "mask"

    def prepare_segments(self, segments: Segments, ref: Tensor) -> Segments:
        """`segments` ready for every layer's call on a stream like `ref` (1, N, ...): with the
        BlockMask when the route is FlexAttention, so a forward builds it once, not per layer."""
        if self.segment_route(ref) == "flex":
            return segments.with_block_mask(ref.size(1), ref.device)
        return segments

    def _attend_segments(self, q: Tensor, k: Tensor, v: Tensor, segments: Segments) -> Tensor:
        """Causal attention within each segment of a (1, N, H, D) stream, by `segment_route`."""
        if q.size(0) != 1:
            raise PgolfError(f"segmented attention takes one packed stream, got a batch of {q.size(0)}")
        route = self.segment_route(q)
        gqa = self.num_kv_heads != self.num_heads
        if route == "fa3":
            cu = segments.cu_seqlens.to(device=q.device, dtype=torch.int32)
            q, k, v = (z[0].to(torch.bfloat16) for z in (q, k, v))
            out = _fa3_varlen_func(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=segments.max_len,
                                   max_seqlen_k=segments.max_len, causal=True)
            return (out[0] if isinstance(out, tuple) else out)[None]
        if route == "flex":
            block_mask = segments.with_block_mask(q.size(1), q.device).block_mask
            # flex_attention is no autocast op: give it autocast's dtype, as SDPA would get, else q's.
            kind = q.device.type
            dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else q.dtype
            q, k, v = (z.to(dtype) for z in (q, k, v))
            y = flex_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                               block_mask=block_mask, enable_gqa=gqa)
            return y.transpose(1, 2)
        if route == "loop":
            b = segments.bounds
            return torch.cat([self._attend(q[:, s:e], k[:, s:e], v[:, s:e]) for s, e in zip(b, b[1:])], dim=1)
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
            attn_mask=segments.mask(q.size(1)), enable_gqa=gqa,
        )
        return y.transpose(1, 2)

    def _use_fa3(self, q: Tensor) -> bool:
        if self.backend in ("sdpa", "cudnn"):
            return False
        if self.backend == "fa3":
            if not q.is_cuda:
                raise PgolfError("model.attention_backend: 'fa3' needs CUDA inputs; use 'auto' or 'sdpa' on CPU")
            return True
        return fa3_available() and q.is_cuda
