"""Each component against a slow formula written from SPEC §2."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.model import GPT
from pipeline.model.attention import exclude_self_value
from pipeline.model.canon import Canon, canon_blocks
from pipeline.model.embeddings import BigramHash, SmearGate, bigram_buckets
from pipeline.model.layers import rms_norm
from pipeline.model.rotary import Rotary, apply_rotary, inverse_frequencies, ntk_base
from tests.conftest import tiny_model_config
from tests.model.helpers import canon_config, random_tiny_model


@pytest.fixture(autouse=True)
def _seeded():
    """Every test draws its inputs from a fixed seed: the same numbers on every run."""
    torch.manual_seed(0)


# ----------------------------------------------------------------- BigramHash


def test_bigram_bucket_of_known_ids():
    buckets = bigram_buckets(torch.tensor([[5, 7]]), 2048)
    assert buckets.tolist() == [[2047, ((36313 * 7) ^ (27191 * 5)) % 2047]]
    assert buckets.dtype == torch.long


def test_bigram_buckets_match_slow_formula():
    ids = torch.randint(0, 1024, (3, 50), generator=torch.Generator().manual_seed(0))
    got = bigram_buckets(ids, 512)
    for b in range(3):
        assert got[b, 0] == 511
        for t in range(1, 50):
            assert got[b, t] == ((36313 * int(ids[b, t])) ^ (27191 * int(ids[b, t - 1]))) % 511


def test_bigram_output_is_scaled_projection_of_bucket_embedding():
    torch.manual_seed(0)
    bigram = BigramHash(64, 16, 32, scale_init=0.05)
    assert torch.count_nonzero(bigram.embed.weight) == 0 and bigram.scale.item() == pytest.approx(0.05)
    nn.init.normal_(bigram.embed.weight)
    nn.init.normal_(bigram.proj.weight)
    ids = torch.randint(0, 1024, (2, 9))
    want = 0.05 * bigram.embed.weight[bigram_buckets(ids, 64)] @ bigram.proj.weight.T
    torch.testing.assert_close(bigram(ids), want)


def test_bigram_without_projection_when_dims_match():
    assert BigramHash(64, 32, 32, 0.05).proj is None


# ----------------------------------------------------------------- SmearGate


def test_smear_matches_formula():
    smear = SmearGate(8)
    assert torch.count_nonzero(smear.gate) == 0
    nn.init.normal_(smear.gate)
    x = torch.randn(2, 5, 8)
    g = torch.sigmoid(smear.gate)
    want = torch.stack([(1 - g) * x[:, t] + g * (x[:, t - 1] if t else 0) for t in range(5)], dim=1)
    torch.testing.assert_close(smear(x), want)


# ----------------------------------------------------------------- XSA


def test_xsa_output_is_orthogonal_to_own_value_per_kv_group():
    b, t, h, hkv, d = 2, 7, 6, 2, 16
    y, v = torch.randn(b, t, h, d), torch.randn(b, t, hkv, d)
    out = exclude_self_value(y, v)
    group = h // hkv
    for head in range(h):
        v_hat = F.normalize(v[:, :, head // group], dim=-1)
        assert (out[:, :, head] * v_hat).sum(-1).abs().max() < 1e-5
        # The component along v_hat is all that was removed.
        want = y[:, :, head] - (y[:, :, head] * v_hat).sum(-1, keepdim=True) * v_hat
        torch.testing.assert_close(out[:, :, head], want)


# ----------------------------------------------------------------- rotary


def test_ntk_base_at_2048_and_untouched_up_to_ref_len():
    assert ntk_base(10000.0, 16, 2048, 1024) == pytest.approx(10000 * 2 ** (16 / 14))
    assert ntk_base(10000.0, 16, 2048, 1024) == pytest.approx(22082, abs=1)
    assert ntk_base(10000.0, 16, 1024, 1024) == 10000.0
    assert ntk_base(10000.0, 16, 64, 1024) == 10000.0


def test_rotary_tables_use_ntk_base():
    rotary = Rotary(16, 10000.0, 1024)
    cos, sin = rotary(2048, torch.device("cpu"))
    inv = inverse_frequencies(10000 * 2 ** (16 / 14), 16)
    angles = torch.arange(2048, dtype=torch.float32)[:, None] * inv[None, :]
    torch.testing.assert_close(cos, angles.cos())
    torch.testing.assert_close(sin, angles.sin())
    assert cos.shape == (2048, 8)


def test_partial_rotary_formula_norms_and_pass_through():
    rd, d = 16, 64
    cos, sin = Rotary(rd, 10000.0, 1024)(12, torch.device("cpu"))
    x = torch.randn(2, 12, 3, d)
    out = apply_rotary(x, cos, sin)
    assert torch.equal(out[..., rd:], x[..., rd:])
    half = rd // 2
    for t in range(12):
        for i in range(half):
            theta = t * 10000.0 ** (-2 * i / rd)
            x1, x2 = x[:, t, :, i], x[:, t, :, half + i]
            c, s = math.cos(theta), math.sin(theta)
            torch.testing.assert_close(out[:, t, :, i], x1 * c + x2 * s, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(out[:, t, :, half + i], -x1 * s + x2 * c, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))


# ----------------------------------------------------------------- Canon


def _canon_cfg(**kw):
    return canon_config(tiny_model_config(), **kw).canon


@pytest.mark.parametrize("kernel", [1, 3, 4])
def test_canon_equals_left_padded_depthwise_conv1d(kernel):
    torch.manual_seed(kernel)
    canon = Canon(12, _canon_cfg(kernel=kernel, residual=False, delta_gate=False, bias=True, activation=False))
    conv = nn.Conv1d(12, 12, kernel, groups=12, bias=True)
    conv.load_state_dict(canon.conv.state_dict())
    x = torch.randn(2, 9, 12)
    want = conv(F.pad(x.transpose(1, 2), (kernel - 1, 0))).transpose(1, 2)
    torch.testing.assert_close(canon(x), want)
    # ...which is the formula y_t = sum_k w_k x_{t-k} + b.
    w = canon.conv.weight[:, 0, :]  # (C, K): tap j multiplies x_{t-(K-1-j)}
    slow = torch.stack([
        sum(w[:, kernel - 1 - k] * x[:, t - k] for k in range(kernel) if t - k >= 0) + canon.conv.bias
        for t in range(9)
    ], dim=1)
    torch.testing.assert_close(canon(x), slow)


def test_canon_delta_gate_residual_and_activation():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 8)
    plain = Canon(8, _canon_cfg(residual=False, delta_gate=False, activation=False, bias=False))
    conv_out = plain(x)
    gated = Canon(8, _canon_cfg(residual=True, delta_gate=True, delta_gate_init=-4.0, activation=False, bias=False))
    gated.conv.load_state_dict(plain.conv.state_dict())
    assert gated.delta_gate_logit.item() == -4.0
    torch.testing.assert_close(gated(x), x + torch.sigmoid(torch.tensor(-4.0)) * conv_out)
    act = Canon(8, _canon_cfg(residual=False, delta_gate=False, activation=True, bias=False))
    act.conv.load_state_dict(plain.conv.state_dict())
    torch.testing.assert_close(act(x), F.silu(conv_out))


def test_canon_weight_init_default_and_zeros():
    torch.manual_seed(0)
    default = Canon(64, _canon_cfg(kernel=3, weight_init="default", bias=True))
    bound = 1 / math.sqrt(3)  # PyTorch Conv1d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = K
    assert default.conv.weight.shape == (64, 1, 3)
    assert 0 < default.conv.weight.abs().max() <= bound
    assert default.conv.weight.std() > bound / 4
    zeros = Canon(64, _canon_cfg(kernel=3, weight_init="zeros", bias=True))
    assert torch.count_nonzero(zeros.conv.weight) == 0 and torch.count_nonzero(zeros.conv.bias) == 0


@pytest.mark.parametrize(
    ("first_n", "last_n", "expected"),
    [(0, 0, {0, 1, 2, 3, 4, 5}), (2, 0, {0, 1}), (0, 2, {4, 5}), (1, 2, {0, 4, 5}), (4, 4, {0, 1, 2, 3, 4, 5})],
)
def test_canon_block_selection_is_union_of_first_and_last(first_n, last_n, expected):
    assert canon_blocks(_canon_cfg(first_n=first_n, last_n=last_n), 6) == expected
    assert canon_blocks(_canon_cfg(placements="", first_n=first_n, last_n=last_n), 6) == frozenset()


def test_canon_placements_land_on_the_right_blocks_and_widths():
    cfg = canon_config(tiny_model_config(), placements="ABCD", first_n=1, last_n=1)
    model = GPT(cfg)
    kv = cfg.num_kv_heads * cfg.head_dim
    widths = {"a": cfg.model_dim, "b": cfg.model_dim + 2 * kv, "c": cfg.model_dim, "d": cfg.mlp_hidden}
    for i, block in enumerate(model.blocks):
        for letter, width in widths.items():
            layer = getattr(block, f"canon_{letter}")
            if i in (0, cfg.num_layers - 1):
                assert layer.conv.weight.shape == (width, 1, cfg.canon.kernel)
            else:
                assert layer is None


# ----------------------------------------------------------------- block: LN scale, residual mix


def test_ln_scale_factors_feed_attention_and_mlp():
    model = random_tiny_model(canon={"placements": ""})
    assert [b.ln_scale for b in model.blocks] == pytest.approx([1 / math.sqrt(i + 1) for i in range(4)])
    off = GPT(canon_config(tiny_model_config(ln_scale=False), placements=""))
    assert all(b.ln_scale == 1.0 for b in off.blocks)

    block = model.blocks[2]
    seen: dict[str, torch.Tensor] = {}

    def record(name):
        def hook(module, args):
            seen.setdefault(name, args[0])  # first call only; returning None keeps the args
        return hook

    block.attn.register_forward_pre_hook(record("attn"))
    block.mlp.register_forward_pre_hook(record("mlp"))
    x, x0 = torch.randn(2, 5, 64), torch.randn(2, 5, 64)
    cos, sin = model.rotary(5, x.device)
    out = block(x, x0, cos, sin)
    mixed = block.resid_mix[0] * x + block.resid_mix[1] * x0
    torch.testing.assert_close(seen["attn"], rms_norm(mixed) / math.sqrt(3))
    after_attn = mixed + block.attn_scale * block.attn(seen["attn"], cos, sin)
    torch.testing.assert_close(seen["mlp"], rms_norm(after_attn) / math.sqrt(3))
    torch.testing.assert_close(out, after_attn + block.mlp_scale * block.mlp(seen["mlp"]))


def test_unet_skips_pair_encoder_outputs_in_reverse():
    model = random_tiny_model(num_layers=5, canon={"placements": ""})
    model.eval()
    ids = torch.randint(0, 1024, (2, 6))
    x = rms_norm(model.tok_emb(ids) + model.bigram(ids))
    x = model.smear(x)
    x0 = x
    cos, sin = model.rotary(6, ids.device)
    enc = []
    for i in range(2):
        x = model.blocks[i](x, x0, cos, sin)
        enc.append(x)
    x = model.blocks[2](x + model.skip_weights[0] * enc[1], x0, cos, sin)
    x = model.blocks[3](x + model.skip_weights[1] * enc[0], x0, cos, sin)
    x = model.blocks[4](x, x0, cos, sin)
    z = rms_norm(x) @ model.tok_emb.weight.T
    with torch.no_grad():
        torch.testing.assert_close(model.logits(ids), 30 * torch.tanh(z / 30))
    assert model.skip_weights.shape == (2, 64)


# ----------------------------------------------------------------- init


@pytest.fixture(scope="module")
def record_model(record_params):
    torch.manual_seed(0)
    return GPT(record_params.model)


@pytest.mark.slow
def test_init_rules(record_model, record_params):
    m = record_model
    L = record_params.model.num_layers
    eye = torch.eye
    assert m.tok_emb.weight.std().item() == pytest.approx(0.005, rel=0.02)
    assert torch.count_nonzero(m.bigram.embed.weight) == 0
    assert m.bigram.scale.item() == pytest.approx(0.05)
    # bigram.proj (512 x 128): scaled orthogonal despite its zero init in the module.
    w = m.bigram.proj.weight
    torch.testing.assert_close(w.T @ w, eye(128) / (2 * L), atol=1e-5, rtol=0)
    for i, block in enumerate(m.blocks):
        assert torch.count_nonzero(block.attn.proj.weight) == 0
        assert torch.count_nonzero(block.mlp.proj.weight) == 0
        for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.fc):
            w = lin.weight
            gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
            torch.testing.assert_close(gram, eye(min(w.shape)), atol=1e-4, rtol=0)
        assert torch.all(block.attn.q_gain == 1.5)
        assert torch.all(block.attn_scale == 1) and torch.all(block.mlp_scale == 1)
        assert torch.all(block.resid_mix[0] == 1) and torch.all(block.resid_mix[1] == 0)
        if i >= L - 5:
            for canon in (block.canon_a, block.canon_c):
                assert canon.delta_gate_logit.item() == -4.0 and canon.conv.bias is None
        else:
            assert block.canon_a is None and block.canon_c is None
        assert block.canon_b is None and block.canon_d is None
        assert block.attn.use_xsa == (i >= L - 4)
    assert torch.all(m.skip_weights == 1) and torch.count_nonzero(m.smear.gate) == 0


def test_small_linear_layers_keep_constructor_init():
    torch.manual_seed(0)
    model = GPT(tiny_model_config(model_dim=32, num_heads=2, num_kv_heads=1, rope_dims=8))
    # bigram.proj (32 x 16) is below the 64 threshold: it keeps its zero init.
    assert torch.count_nonzero(model.bigram.proj.weight) == 0
    # c_k (16 x 32) keeps PyTorch's default (non-orthogonal, non-zero) init.
    w = model.blocks[0].attn.c_k.weight
    assert torch.count_nonzero(w) > 0
    assert not torch.allclose(w @ w.T, torch.eye(16), atol=1e-3)


def test_construction_is_deterministic_given_seed():
    cfg = tiny_model_config()
    torch.manual_seed(7)
    a = GPT(cfg).state_dict()
    torch.manual_seed(7)
    b = GPT(cfg).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
