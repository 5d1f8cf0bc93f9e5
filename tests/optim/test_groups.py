"""Optimiser group assignment on SPEC §2 names, and the optimiser bundle."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
from torch import nn

from pipeline.config import TrainConfig
from pipeline.runtime import Runtime
from pipeline.optim import Muon, newton_schulz, UnknownParameterError, build_optimizers, lr_multiplier, muon_momentum, split_params


def fake_model(shapes: dict[str, tuple[int, ...]], device: str = "cpu") -> nn.Module:
    """An nn.Module whose named_parameters() are exactly `shapes` (in order)."""
    root = nn.Module()
    for name, shape in shapes.items():
        *path, leaf = name.split(".")
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, nn.Module())
            mod = getattr(mod, part)
        mod.register_parameter(leaf, nn.Parameter(torch.randn(shape, device=device) * 0.1))
    return root


def spec_shapes(layers=11, dim=512, kv=256, hidden=1536, canon_from=6, vocab=1024, buckets=2048, bdim=128):
    """SPEC §2 parameter names and shapes, with Canon on the last blocks in all
    four placements and with the optional bias, so every Canon tensor is covered."""
    s: dict[str, tuple[int, ...]] = {
        "tok_emb.weight": (vocab, dim),
        "bigram.embed.weight": (buckets, bdim),
        "bigram.proj.weight": (dim, bdim),
        "bigram.scale": (),
        "smear.gate": (dim,),
        "skip_weights": (layers // 2, dim),
    }
    for i in range(layers):
        b = f"blocks.{i}."
        s.update({
            b + "attn_scale": (dim,), b + "mlp_scale": (dim,), b + "resid_mix": (2, dim),
            b + "attn.c_q.weight": (dim, dim), b + "attn.c_k.weight": (kv, dim),
            b + "attn.c_v.weight": (kv, dim), b + "attn.proj.weight": (dim, dim),
            b + "attn.q_gain": (8,),
            b + "mlp.fc.weight": (hidden, dim), b + "mlp.proj.weight": (dim, hidden),
        })
        if i >= canon_from:  # pipeline/model's names: Block.canon_{a,b,c,d}.conv.*, .delta_gate_logit
            for letter, width in (("a", dim), ("b", dim + 2 * kv), ("c", dim), ("d", hidden)):
                c = f"{b}canon_{letter}."
                s.update({c + "conv.weight": (width, 1, 3), c + "conv.bias": (width,), c + "delta_gate_logit": ()})
    return s


def expected_group(name: str) -> str:
    """The assignment SPEC §3 asks for, stated name by name."""
    if name in ("tok_emb.weight", "bigram.embed.weight"):
        return "embed"
    if name == "bigram.proj.weight":
        return "matrix"
    leaf = name.split(".", 2)[-1] if name.startswith("blocks.") else name
    if leaf in ("attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight", "attn.proj.weight",
                "mlp.fc.weight", "mlp.proj.weight"):
        return "matrix"
    return "scalar"


@pytest.fixture()
def cfg(record_params) -> TrainConfig:
    return record_params.train


def test_every_spec_name_lands_in_its_group():
    shapes = spec_shapes()
    model = fake_model(shapes, device="meta")
    split = split_params(model.named_parameters())
    got = {n: g for g, pairs in split.items() for n, _ in pairs}
    assert sorted(got) == sorted(shapes)  # each parameter exactly once
    assert sum(len(v) for v in split.values()) == len(shapes)
    for name in shapes:
        assert got[name] == expected_group(name), name
    assert len(split["matrix"]) == 11 * 6 + 1
    assert [n for n, _ in split["embed"]] == ["tok_emb.weight", "bigram.embed.weight"]
    # Muon keeps model order: it decides which rank orthogonalises which matrix.
    muon_order = [n for n in shapes if expected_group(n) == "matrix"]
    assert [n for n, _ in split["matrix"]] == muon_order


@pytest.mark.parametrize("name,shape", [
    ("lm_head.weight", (1024, 512)),       # untied head: not in the recipe
    ("final_norm.weight", (512,)),          # a top-level vector nobody declared
    ("blocks.0.attn.weird", (4, 4, 4)),     # 3-D outside a Canon module
    ("encoder.layer.weight", (8, 8)),
])
def test_unknown_parameter_raises_with_its_name(name, shape):
    model = fake_model({"tok_emb.weight": (16, 8), name: shape}, device="meta")
    with pytest.raises(UnknownParameterError, match=name.replace(".", r"\.")):
        split_params(model.named_parameters())


def test_frozen_parameters_are_left_out():
    model = fake_model({"tok_emb.weight": (16, 8), "blocks.0.mlp.fc.weight": (8, 8)})
    getattr(model.blocks, "0").mlp.fc.weight.requires_grad_(False)
    split = split_params(model.named_parameters())
    assert split["matrix"] == []


def tiny_spec_model() -> nn.Module:
    torch.manual_seed(0)
    return fake_model(spec_shapes(layers=2, dim=16, kv=8, hidden=32, canon_from=1, vocab=32, buckets=16, bdim=8))


def test_bundle_optimizers_and_hyperparameters(cfg):
    bundle = build_optimizers(tiny_spec_model(), cfg)
    opts = bundle.optimizers
    assert set(opts) == {"matrix", "embed", "scalar"}
    assert isinstance(opts["matrix"], Muon) and bundle.muon is opts["matrix"]
    assert bundle.base_lrs == {"matrix": 0.025, "embed": 0.035, "scalar": 0.025}
    muon = opts["matrix"].param_groups[0]
    assert (muon["weight_decay"], muon["backend_steps"], muon["nesterov"]) == (0.04, 5, True)
    for name in ("embed", "scalar"):
        opt = opts[name]
        assert isinstance(opt, torch.optim.AdamW)
        pg = opt.param_groups[0]
        assert (pg["betas"], pg["eps"], pg["weight_decay"]) == ((0.9, 0.95), 1e-8, 0.04)
        assert not pg["fused"]  # CPU parameters
    assert bundle.param_names["embed"] == ["tok_emb.weight", "bigram.embed.weight"]

    step, elapsed = 5500, 0.0
    c = dataclasses.replace(cfg, max_wallclock_seconds=0.0)
    bundle.set_schedule(lr_multiplier(step, elapsed, c), muon_momentum(750, cfg))
    assert bundle.lrs() == pytest.approx({"matrix": 0.0125, "embed": 0.0175, "scalar": 0.0125})
    assert opts["matrix"].param_groups[0]["momentum"] == pytest.approx(0.955)


def _random_grads(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)


def _train(model, bundle, steps, first_seed):
    for k in range(steps):
        _random_grads(model, first_seed + k)
        bundle.set_schedule(1.0 - 0.1 * k, 0.92 + 0.01 * k)
        bundle.step()
        bundle.zero_grad()


def test_state_dict_round_trip(cfg):
    model = tiny_spec_model()
    bundle = build_optimizers(model, cfg)
    _train(model, bundle, 2, first_seed=10)

    blob = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": bundle.state_dict()}, blob)
    blob.seek(0)
    saved = torch.load(blob)

    resumed = tiny_spec_model()
    resumed.load_state_dict(saved["model"])
    resumed_bundle = build_optimizers(resumed, cfg)
    resumed_bundle.load_state_dict(saved["optim"])

    # Continue both from the same point: identical weights only if every
    # optimiser's state (Adam moments and step, Muon momentum) came back.
    _train(model, bundle, 2, first_seed=20)
    _train(resumed, resumed_bundle, 2, first_seed=20)
    for (name, a), (_, b) in zip(model.named_parameters(), resumed.named_parameters()):
        assert torch.equal(a, b), name

    fresh = build_optimizers(tiny_spec_model(), cfg)
    with pytest.raises(ValueError, match="groups"):
        fresh.load_state_dict({"matrix": saved["optim"]["matrix"]})


def test_runtime_sets_muon_sharding_and_cpu_is_never_compiled(cfg):
    rt = Runtime(torch.device("cpu"), "gloo", None, rank=1, world_size=2)
    bundle = build_optimizers(tiny_spec_model(), dataclasses.replace(cfg, compile=True), rt)
    assert (bundle.muon.rank, bundle.muon.world_size) == (1, 2)
    assert bundle.muon.orthogonalize is newton_schulz
