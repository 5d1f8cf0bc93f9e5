"""The GPT of SPEC §2: embeddings, U-Net of blocks, tied soft-capped head.

    x  = smear(rms_norm(tok_emb(ids) + bigram(ids)));  x0 = x
    encoder blocks (first L//2) push their outputs; each decoder block i first
    adds skip_weights[i] * pop(), then runs
    block:  x = resid_mix[0] x + resid_mix[1] x0
            x += attn_scale * attn(canonA(rms_norm(x) s))
            x += mlp_scale  * mlp(canonC(rms_norm(x) s))          s = 1/sqrt(i+1)
    logits = softcap * tanh(rms_norm(x) tok_emb^T / softcap)

`forward(ids, targets)` returns the mean cross-entropy in fp32,
`forward(ids, targets, reduction="none")` the (B, T) per-token losses and
`logits(ids)` the soft-capped logits; all three go through `logits`, and it
through `hidden`.  Phased test-time training (pipeline/evaluate/ttt.py) uses
`ttt_adapters`, `ttt_token_losses` and `ttt_stream_loss`: the same `hidden`,
with per-document LoRA adapters (not parameters of this model) and, for the
packed stream, attention within each document (docs/evaluation.md).
Under autocast the residual stream is in the autocast dtype (bf16 on the GPU,
SPEC §2): the fp32 embedding sum is cast once, before the first RMS norm.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.config import ModelConfig, RecurrenceConfig

if TYPE_CHECKING:
    from pipeline.config import PhasedTttConfig
from pipeline.evaluate.lora import AdapterShape, BlockAdapters, DocumentAdapters
from pipeline.model.attention import CausalSelfAttention, Segments
from pipeline.model.canon import Canon, canon_blocks
from pipeline.model.embeddings import BOS_ID, BigramHash, SmearGate, TokenSmearGate
from pipeline.model.init import init_weights
from pipeline.model.kernels import check_mode, leaky_mlp, softcapped_ce, use_fused
from pipeline.model.layers import CastedLinear, rms_norm, to_activation_dtype
from pipeline.model.rotary import Rotary


class MLP(nn.Module):
    """proj(act(fc(x))^2) with act = relu, or leaky_relu(slope) when `leaky_slope`
    > 0 (PR #493's LeakyReLU(0.5)^2).  Canon-D (when given) runs on the hidden
    before the activation, or with `canon_d_after_relu` between the activation
    and the square (where PR #312's code puts it: proj(canon_d(relu(fc(x)))^2)).
    `fused` (model.fused_kernels): training forwards without Canon-D may run the
    fused Triton kernel (pipeline/model/kernels/leaky_mlp.py) on the same weights."""

    def __init__(self, dim: int, hidden: int, canon_d_after_relu: bool = False, leaky_slope: float = 0.0,
                 fused: str = "off") -> None:
        super().__init__()
        check_mode(fused)
        self.fused = fused
        self.fc = CastedLinear(dim, hidden)
        self.proj = CastedLinear(hidden, dim)  # zero init: its rule in naming.PARAM_RULES
        self.canon_d_after_relu = canon_d_after_relu
        self.leaky_slope = leaky_slope
        # Canon-D, set by the block (`mlp.canon_d`, the reference's name).
        self.canon_d: nn.Module | None = None

    def _act(self, h: Tensor) -> Tensor:
        if self.leaky_slope > 0:
            return F.leaky_relu(h, negative_slope=self.leaky_slope)
        return torch.relu(h)

    def forward(self, x: Tensor) -> Tensor:
        canon_d = self.canon_d
        if canon_d is None and self.training and use_fused(self.fused, x, "the MLP"):
            dtype = x.dtype  # QAT's fake-quantised weights when it is on, as the plain path multiplies by
            return leaky_mlp(x, self.fc.effective_weight().to(dtype), self.proj.effective_weight().to(dtype),
                             self.leaky_slope)
        h = self.fc(x)
        if canon_d is None:
            return self.proj(self._act(h).square())
        if self.canon_d_after_relu:
            return self.proj(canon_d(self._act(h)).square())
        return self.proj(self._act(canon_d(h)).square())


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, index: int, use_xsa: bool, canon_placements: str) -> None:
        super().__init__()
        dim = cfg.model_dim
        self.ln_scale = 1.0 / math.sqrt(index + 1) if cfg.ln_scale else 1.0
        self.attn = CausalSelfAttention(cfg, use_xsa)
        self.mlp = MLP(dim, cfg.mlp_hidden, cfg.canon.d_after_relu, cfg.mlp_leaky_slope, cfg.fused_kernels)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())
        widths = {
            "a": dim,
            "b": dim + 2 * cfg.num_kv_heads * cfg.head_dim,
            "c": dim,
            "d": cfg.mlp_hidden,
        }
        # Created in the order a, b, c, d (the init draws); B lives in the attention
        # and D in the MLP, under the reference's names (attn.canon_b, mlp.canon_d).
        for letter, width in widths.items():
            layer = Canon(width, cfg.canon) if letter.upper() in canon_placements else None
            owner = {"b": self.attn, "d": self.mlp}.get(letter, self)
            setattr(owner, f"canon_{letter}", layer)

    @property
    def canon_b(self) -> nn.Module | None:
        return self.attn.canon_b

    @property
    def canon_d(self) -> nn.Module | None:
        return self.mlp.canon_d

    def _attn_branch(self, x: Tensor, cos: Tensor, sin: Tensor, adapters: BlockAdapters | None = None,
                     segments: Segments | None = None) -> Tensor:
        h = rms_norm(x) * self.ln_scale
        if self.canon_a is not None:
            h = self.canon_a(h)
        return self.attn_scale.to(x.dtype) * self.attn(h, cos, sin, adapters, segments)

    def _mlp_branch(self, x: Tensor, adapters: BlockAdapters | None = None) -> Tensor:
        h = rms_norm(x) * self.ln_scale
        if self.canon_c is not None:
            h = self.canon_c(h)
        out = self.mlp(h)
        if adapters is not None and adapters.mlp is not None:
            out = out + adapters.mlp(h)  # the MLP adapter reads the MLP's input (the record's)
        return self.mlp_scale.to(x.dtype) * out

    def forward(self, x: Tensor, x0: Tensor, cos: Tensor, sin: Tensor, adapters: BlockAdapters | None = None,
                segments: Segments | None = None) -> Tensor:
        """`adapters`: this call's phased-TTT LoRA; `segments`: attention within segments only."""
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self._attn_branch(x, cos, sin, adapters, segments)
        return x + self._mlp_branch(x, adapters)

    def parallel_forward(self, lane0: Tensor, lane1: Tensor, x0: Tensor, cos: Tensor, sin: Tensor,
                         post: Tensor, resid: Tensor, adapters: BlockAdapters | None = None,
                         segments: Segments | None = None) -> tuple[Tensor, Tensor]:
        """One block on two lanes (PR #1530's parallel residuals): attention reads
        lane 0 (mixed with x0 by resid_mix), the MLP reads lane 1, and each lane
        keeps resid[k] of itself plus post[0, k] of the attention output and
        post[1, k] of the MLP output.  post (2, 2) and resid (2,) are this
        layer's rows of the model's `parallel_post_lambdas` / `parallel_resid_lambdas`."""
        mix = self.resid_mix.to(lane0.dtype)
        a = self._attn_branch(mix[0] * lane0 + mix[1] * x0, cos, sin, adapters, segments)
        m = self._mlp_branch(lane1, adapters)
        post, resid = post.to(lane0.dtype), resid.to(lane0.dtype)
        new0 = resid[0] * lane0 + post[0, 0] * a + post[1, 0] * m
        new1 = resid[1] * lane1 + post[0, 1] * a + post[1, 1] * m
        return new0, new1


def layer_order(num_layers: int, recurrence: RecurrenceConfig, looping: bool) -> tuple[list[int], list[int]]:
    """Block indices the encoder and the decoder run, in order.

    Without looping: the first L//2 blocks, then the rest.  With looping
    (PR #1344): the sequence 0..s-1, then s..e repeated 1 + num_loops times,
    then e+1..L-1, cut in half (the encoder gets the shorter half); e.g.
    L=11, s=3, e=5, two extra loops: encoder [0,1,2,3,4,5,3,4], decoder
    [5,3,4,5,6,7,8,9,10].
    """
    if not looping:
        half = num_layers // 2
        return list(range(half)), list(range(half, num_layers))
    s, e = recurrence.loop_start, recurrence.loop_end
    order = list(range(s)) + list(range(s, e + 1)) * (recurrence.num_loops + 1) + list(range(e + 1, num_layers))
    half = len(order) // 2
    return order[:half], order[half:]


class GPT(nn.Module):
    """The record model, every component switchable from `ModelConfig`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        L, dim = cfg.num_layers, cfg.model_dim
        self.tok_emb = nn.Embedding(cfg.vocab_size, dim)
        self.bigram = (
            BigramHash(cfg.bigram_buckets, cfg.bigram_dim, dim, cfg.bigram_scale_init)
            if cfg.bigram_buckets > 0 else None
        )
        if not cfg.smear:
            self.smear = None
        elif cfg.smear_window > 0:
            self.smear = TokenSmearGate(cfg.smear_window, cfg.smear_bos_mask)
        else:
            self.smear = SmearGate(dim, cfg.smear_bos_mask)
        self.num_encoder = L // 2
        self.num_decoder = L - self.num_encoder
        # Depth recurrence: which order the blocks run in is a Python flag (see set_looping).
        # A model built from the config is the trained (looped) model; training starts unlooped.
        self.looping_active = cfg.recurrence.num_loops > 0
        enc_loop, dec_loop = layer_order(L, cfg.recurrence, cfg.recurrence.num_loops > 0)
        # As the frontier record: as many skip weights as the longest (looped) order pairs up.
        self.num_skips = min(len(enc_loop), len(dec_loop))
        self.skip_weights = nn.Parameter(torch.ones(self.num_skips, dim))
        if cfg.skip_gates:
            self.skip_gates = nn.Parameter(torch.zeros(self.num_skips, dim, dtype=torch.float32))
        else:
            self.register_parameter("skip_gates", None)
        if cfg.lanes.start_layer > 0:
            # Rows for every layer (the record's shapes); only layers >= start_layer read theirs.
            self.parallel_post_lambdas = nn.Parameter(torch.ones(L, 2, 2, dtype=torch.float32))
            self.parallel_resid_lambdas = nn.Parameter(torch.full((L, 2), 1.1, dtype=torch.float32))
        else:
            self.register_parameter("parallel_post_lambdas", None)
            self.register_parameter("parallel_resid_lambdas", None)
        with_canon = canon_blocks(cfg.canon, L)
        self.blocks = nn.ModuleList(
            Block(cfg, i, use_xsa=i >= L - cfg.xsa_last_n,
                  canon_placements=cfg.canon.placements if i in with_canon else "")
            for i in range(L)
        )
        self.rotary = Rotary(cfg.rope_dims, cfg.rope_base, cfg.rope_ref_len)
        init_weights(self, L, cfg.tied_embed_init_std)
        if cfg.embed_dtype == "bf16":
            # As the reference's `GPT(...).bfloat16()`: initialised in fp32, then
            # stored (trained, averaged, exported) in bf16.
            for table in self.embedding_tables():
                table.weight.data = table.weight.data.to(torch.bfloat16)

    def embedding_tables(self) -> list[nn.Embedding]:
        """The lookup tables whose storage dtype `model.embed_dtype` sets."""
        return [self.tok_emb] + ([self.bigram.embed] if self.bigram is not None else [])

    def set_qat(self, enabled: bool) -> None:
        """Switch late QAT on every CastedLinear; takes effect in compiled graphs too
        (see `CastedLinear`).  Only training-mode forwards quantise."""
        for module in self.modules():
            if isinstance(module, CastedLinear):
                module.qat.fill_(enabled)

    @property
    def qat_enabled(self) -> bool:
        return any(bool(m.qat) for m in self.modules() if isinstance(m, CastedLinear))

    def set_looping(self, enabled: bool) -> None:
        """Switch depth recurrence on or off (no-op without `model.recurrence.num_loops`).

        Unlike QAT's buffer, this flag changes which blocks run, so it cannot be
        a tensor select without running both orders every step; it is a Python
        attribute that torch.compile guards on: flipping it compiles a second
        graph once (the training warm-up primes both), never more.  Every
        parameter is used in both orders (skip weights and lane lambdas are
        single tensors), so DDP needs no unused-parameter search.
        """
        self.looping_active = bool(enabled) and self.cfg.recurrence.num_loops > 0

    def layer_order(self) -> tuple[list[int], list[int]]:
        """The (encoder, decoder) block indices of the current mode."""
        return layer_order(self.cfg.num_layers, self.cfg.recurrence, self.looping_active)

    def _skip(self, x: Tensor, skip: Tensor, j: int) -> Tensor:
        w = self.skip_weights[j].to(x.dtype)
        if self.skip_gates is None:
            return x + w * skip
        g = torch.sigmoid(self.skip_gates[j].to(x.dtype))
        return torch.lerp(w * skip, x, g)

    def logits(self, ids: Tensor, segments: Segments | None = None) -> Tensor:
        """Soft-capped logits (B, T, vocab) for token ids (B, T); `segments`: see `hidden`."""
        return self._soft_cap(self._project(self.hidden(ids, segments=segments)))

    def hidden(self, ids: Tensor, adapters: DocumentAdapters | None = None,
               segments: Segments | None = None) -> Tensor:
        """The final hidden state before the head's RMS norm, (B, T, dim).

        `adapters` (phased TTT) give every block call, in the order the blocks run
        (looped repeats included), its own LoRA slot; `segments` cut a (1, N) stream
        into pieces that attend only within themselves (per-document training, TTT's
        global phase).  Rotary positions are the stream's, 0..N-1, as the 1.0611 record's;
        the rotary base is the one for a sequence of `segments.max_len` tokens.
        """
        x = self.tok_emb(ids).float()
        if self.bigram is not None:
            x = x + self.bigram(ids)
        x = to_activation_dtype(x)
        if isinstance(self.smear, TokenSmearGate):
            x = self.smear(x, ids)  # on the embeddings, before the first norm (PR #1667)
        x = rms_norm(x)
        if isinstance(self.smear, SmearGate):
            x = self.smear(x, ids)
        x0 = x
        cos, sin = self.rotary(ids.size(1), ids.device, None if segments is None else segments.max_len)
        if segments is not None:  # e.g. FlexAttention's BlockMask: built once here, not in every layer
            segments = self.blocks[0].attn.prepare_segments(segments, x)
        encoder, decoder = self.layer_order()
        slot = (lambda k: None) if adapters is None else adapters.slot
        skips: list[Tensor] = []
        for k, i in enumerate(encoder):
            x = self.blocks[i](x, x0, cos, sin, slot(k), segments)
            skips.append(x)
        start = self.cfg.lanes.start_layer
        lane0 = lane1 = None
        for j, i in enumerate(decoder):
            k = len(encoder) + j
            if start > 0 and i >= start:
                if lane0 is None:
                    lane0 = lane1 = x
                if j < self.num_skips and skips:
                    lane0 = self._skip(lane0, skips.pop(), j)
                lane0, lane1 = self.blocks[i].parallel_forward(
                    lane0, lane1, x0, cos, sin, self.parallel_post_lambdas[i], self.parallel_resid_lambdas[i],
                    slot(k), segments)
            else:
                if j < self.num_skips and skips:
                    x = self._skip(x, skips.pop(), j)
                x = self.blocks[i](x, x0, cos, sin, slot(k), segments)
        if lane0 is not None:
            x = self._final_lane(lane0, lane1)
        return x

    def _project(self, x: Tensor) -> Tensor:
        return F.linear(rms_norm(x), self.tok_emb.weight.to(x.dtype))

    def _soft_cap(self, z: Tensor) -> Tensor:
        cap = self.cfg.logit_softcap
        return cap * torch.tanh(z / cap)

    def _final_lane(self, lane0: Tensor, lane1: Tensor) -> Tensor:
        final = self.cfg.lanes.final
        if final == "attn":
            return lane0
        if final == "mlp":
            return lane1
        return 0.5 * (lane0 + lane1)

    def forward(self, ids: Tensor, targets: Tensor, reduction: Literal["mean", "none"] = "mean",
                segments: Segments | None = None) -> Tensor:
        """Cross-entropy in fp32: a scalar mean, or (B, T) per-token losses with reduction="none";
        `segments` (a (1, N) packed row): attention within each document (train.batch_layout).
        A training-mode mean may run the fused soft-capped CE (model.fused_kernels)."""
        if reduction == "mean" and self.training and use_fused(self.cfg.fused_kernels, ids, "the loss"):
            z = self._project(self.hidden(ids, segments=segments))
            return softcapped_ce(z.flatten(0, 1), targets.flatten(), self.cfg.logit_softcap)
        logits = self.logits(ids, segments)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction=reduction)
        return loss if reduction == "mean" else loss.view_as(targets)

    # ------------------------------------------------------------------ phased TTT (pipeline/evaluate/ttt.py)

    def ttt_slots(self) -> int:
        """Block calls per forward in the current looping mode: one LoRA slot each."""
        encoder, decoder = self.layer_order()
        return len(encoder) + len(decoder)

    def ttt_adapters(self, batch: int, cfg: PhasedTttConfig) -> DocumentAdapters:
        """Fresh per-document LoRA for `batch` documents: the head (hidden -> vocab) and, per
        block call, q, v and (cfg) k, the MLP output and the attention output.  They are
        not parameters of this model; their initial A draws come from the global RNG."""
        c = self.cfg
        shape = AdapterShape(model_dim=c.model_dim, kv_dim=c.num_kv_heads * c.head_dim, vocab_size=c.vocab_size,
                             embed_dim=c.model_dim, num_blocks=self.ttt_slots())
        return DocumentAdapters(batch, shape, cfg.lora_rank, cfg.lora_alpha, k=cfg.k_lora, mlp=cfg.mlp_lora,
                                out=cfg.o_lora, warm_start_a=cfg.warm_start_a)

    def ttt_token_losses(self, x: Tensor, y: Tensor, adapters: DocumentAdapters) -> Tensor:
        """(B, T) fp32 per-token losses with row b's adapters; B must equal the adapters' batch."""
        if x.size(0) != adapters.batch:
            raise ValueError(f"{x.size(0)} rows for adapters of {adapters.batch} documents")
        h = rms_norm(self.hidden(x, adapters))
        z = F.linear(h, self.tok_emb.weight.to(h.dtype)) + adapters.head(h)
        logits = self._soft_cap(z)
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none").view_as(y)

    def ttt_stream_loss(self, x: Tensor, y: Tensor, max_segment: int = 0) -> Tensor:
        """Mean fp32 loss over a packed 1-D stream whose tokens attend only within their
        document (BOS to BOS), documents cut every `max_segment` tokens (0: never)."""
        segments = Segments.at_documents(x, BOS_ID, max_segment)
        ids = x[None]
        logits = self._soft_cap(self._project(self.hidden(ids, segments=segments)))
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
