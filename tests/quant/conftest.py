"""State dicts shaped like the SPEC §7 G3 model (built by hand: no dependency on pipeline.model)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline.config import QuantConfig


def g3_shapes(num_layers: int = 3, dim: int = 256, heads: int = 4, kv_heads: int = 2, mlp_mult: int = 3,
              vocab: int = 1024, bigram: tuple[int, int] = (512, 64)) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of the SPEC §2 GPT with Canon off and tied embeddings."""
    kv_dim = dim // heads * kv_heads
    shapes: dict[str, tuple[int, ...]] = {
        "tok_emb.weight": (vocab, dim),
        "bigram.embed.weight": bigram,
        "bigram.proj.weight": (dim, bigram[1]),
        "bigram.scale": (),
        "smear.gate": (dim,),
        "skip_weights": (min(num_layers // 2, num_layers - num_layers // 2), dim),
    }
    for i in range(num_layers):
        p = f"blocks.{i}."
        shapes.update({
            p + "attn_scale": (dim,),
            p + "mlp_scale": (dim,),
            p + "resid_mix": (2, dim),
            p + "attn.c_q.weight": (dim, dim),
            p + "attn.c_k.weight": (kv_dim, dim),
            p + "attn.c_v.weight": (kv_dim, dim),
            p + "attn.proj.weight": (dim, dim),
            p + "attn.q_gain": (heads,),
            p + "mlp.fc.weight": (mlp_mult * dim, dim),
            p + "mlp.proj.weight": (dim, mlp_mult * dim),
        })
    return shapes


def random_state_dict(
    shapes: dict[str, tuple[int, ...]], seed: int = 1234, std: float = 0.2
) -> dict[str, torch.Tensor]:
    """SPEC §7's rule: sorted keys, one generator, randn * std."""
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shapes[name], generator=g) * std for name in sorted(shapes)}


@pytest.fixture(scope="session")
def g3_state_dict() -> dict[str, torch.Tensor]:
    return random_state_dict(g3_shapes())


@pytest.fixture()
def quant_cfg(record_params) -> QuantConfig:
    return record_params.quant


@pytest.fixture()
def fast_quant_cfg(record_params) -> QuantConfig:
    """The record's rules with a quick zstd level: packing speed is a benchmark, not a test."""
    return dataclasses.replace(record_params.quant, zstd_level=3)
