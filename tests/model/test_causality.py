"""Changing tokens after position t never changes anything at positions <= t."""

from __future__ import annotations

import pytest
import torch

from pipeline.model.attention import CausalSelfAttention
from pipeline.model.canon import Canon
from pipeline.model.embeddings import BigramHash, SmearGate
from pipeline.model.rotary import Rotary
from tests.conftest import tiny_model_config
from tests.model.helpers import canon_config, fill_like_spec, random_tiny_model

T, CUT = 12, 5  # positions > CUT are changed; positions <= CUT must not move


def _perturbed_ids(vocab: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    a = torch.randint(0, vocab, (2, T), generator=g)
    b = a.clone()
    b[:, CUT + 1:] = torch.randint(0, vocab, (2, T - CUT - 1), generator=g)
    assert not torch.equal(a, b)
    return a, b


def _perturbed_activations(dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    a = torch.randn(2, T, dim, generator=g)
    b = a.clone()
    b[:, CUT + 1:] = torch.randn(2, T - CUT - 1, dim, generator=g)
    return a, b


def _assert_causal(fn, a, b):
    with torch.no_grad():
        out_a, out_b = fn(a), fn(b)
    torch.testing.assert_close(out_a[:, : CUT + 1], out_b[:, : CUT + 1], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(out_a[:, CUT + 1:], out_b[:, CUT + 1:])  # the change did reach later positions


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"canon": {"placements": "A", "last_n": 0}}, id="canon-A-all"),
        pytest.param({"canon": {"placements": "B", "first_n": 2}}, id="canon-B-first2"),
        pytest.param({"canon": {"placements": "C", "last_n": 1, "activation": True, "bias": True}}, id="canon-C"),
        pytest.param({"canon": {"placements": "D", "kernel": 4, "residual": False}}, id="canon-D"),
        pytest.param({"canon": {"placements": "ABCD", "delta_gate": False}, "xsa_last_n": 4}, id="canon-ABCD-xsa-all"),
        pytest.param({"canon": {"placements": ""}, "bigram_buckets": 0, "smear": False, "xsa_last_n": 0}, id="plain"),
    ],
)
def test_whole_model_is_causal(overrides):
    model = random_tiny_model(**overrides).eval()
    a, b = _perturbed_ids()
    _assert_causal(model.logits, a, b)


def test_per_token_losses_are_causal():
    model = random_tiny_model().eval()
    a, b = _perturbed_ids()
    targets = torch.randint(0, 1024, (2, T))
    _assert_causal(lambda ids: model(ids, targets, reduction="none"), a, b)


@pytest.mark.parametrize("placement_width", [("residual", 16), ("plain", 48)])
def test_canon_is_causal(placement_width):
    mode, width = placement_width
    cfg = canon_config(tiny_model_config(), kernel=4, residual=mode == "residual", bias=True, activation=True).canon
    torch.manual_seed(0)
    canon = Canon(width, cfg)
    _assert_causal(canon, *_perturbed_activations(width))


@pytest.mark.parametrize("use_xsa", [False, True])
def test_attention_is_causal(use_xsa):
    cfg = tiny_model_config()
    torch.manual_seed(0)
    attn = CausalSelfAttention(cfg, use_xsa)
    fill_like_spec(attn)
    cos, sin = Rotary(cfg.rope_dims, cfg.rope_base, cfg.rope_ref_len)(T, torch.device("cpu"))
    _assert_causal(lambda x: attn(x, cos, sin), *_perturbed_activations(cfg.model_dim))


def test_bigram_and_smear_are_causal():
    torch.manual_seed(0)
    bigram = BigramHash(64, 16, 32, 0.05)
    fill_like_spec(bigram)
    _assert_causal(bigram, *_perturbed_ids())
    smear = SmearGate(32)
    fill_like_spec(smear)
    _assert_causal(smear, *_perturbed_activations(32))
