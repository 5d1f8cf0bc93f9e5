"""The model switches that choose between the reference's behaviour and the alternative:
embedding storage dtype, SmearGate's BOS mask, Canon-D's position, and the Canon kernel order."""

from __future__ import annotations

import dataclasses

import torch

from pipeline.config import CanonConfig
from pipeline.model import GPT
from pipeline.model.canon import Canon
from pipeline.model.embeddings import BOS_ID, SmearGate
from tests.conftest import tiny_model_config
from tests.model.helpers import fill_like_spec


def _plain_canon(kernel: int) -> CanonConfig:
    base = tiny_model_config().canon
    return dataclasses.replace(base, kernel=kernel, residual=False, activation=False, bias=False,
                               delta_gate=False)


def test_canon_kernel_order_against_the_formula_written_out():
    # SPEC §2: y_t = w_0 x_t + w_1 x_{t-1} + w_2 x_{t-2}.  Stored index j holds w_{K-1-j}:
    # conv.weight[c, 0, :] = (w_2, w_1, w_0), the nn.Conv1d (cross-correlation) layout.
    canon = Canon(1, _plain_canon(3))
    w0, w1, w2 = 100.0, 10.0, 1.0
    with torch.no_grad():
        canon.conv.weight.copy_(torch.tensor([[[w2, w1, w0]]]))
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).reshape(1, 4, 1)
    y = canon(x).flatten().tolist()
    assert y == [100.0, 210.0, 321.0, 432.0]
    assert y[3] == w0 * 4 + w1 * 3 + w2 * 2
    # Two channels, kernel 2: channel c only mixes with itself.
    two = Canon(2, _plain_canon(2))
    with torch.no_grad():
        two.conv.weight.copy_(torch.tensor([[[0.5, 2.0]], [[-1.0, 3.0]]]))  # (w_1, w_0) per channel
    x = torch.tensor([[1.0, 5.0], [2.0, 7.0]]).reshape(1, 2, 2)  # (B, T, C)
    assert two(x)[0].tolist() == [[2.0, 15.0], [4.0 + 0.5, 21.0 - 5.0]]


def test_bf16_embeddings_are_the_rounded_fp32_init_and_compute_like_fp32():
    cfg32 = tiny_model_config()
    cfg16 = dataclasses.replace(cfg32, embed_dtype="bf16")
    torch.manual_seed(3)
    full = GPT(cfg32)
    torch.manual_seed(3)
    stored = GPT(cfg16)
    s32, s16 = full.state_dict(), stored.state_dict()
    for key in s32:
        if key in ("tok_emb.weight", "bigram.embed.weight"):
            assert s16[key].dtype == torch.bfloat16
            assert torch.equal(s16[key], s32[key].to(torch.bfloat16))  # initialised in fp32, then stored
        else:
            assert s16[key].dtype == s32[key].dtype and torch.equal(s16[key], s32[key]), key
    # Lookups are computed in fp32 on the CPU: the bf16 model is the fp32 model holding rounded tables.
    fill_like_spec(full, seed=5)
    with torch.no_grad():
        for name, table in (("tok_emb", full.tok_emb), ("bigram.embed", full.bigram.embed)):
            table.weight.copy_(table.weight.to(torch.bfloat16).float())
    stored.load_state_dict(full.state_dict())
    ids = torch.randint(0, cfg32.vocab_size, (2, 33), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(stored.eval()(ids[:, :-1], ids[:, 1:]), full.eval()(ids[:, :-1], ids[:, 1:]))


def test_bf16_embeddings_take_an_optimiser_step_in_bf16():
    model = GPT(dataclasses.replace(tiny_model_config(), embed_dtype="bf16"))
    ids = torch.randint(0, 1024, (2, 17), generator=torch.Generator().manual_seed(1))
    model(ids[:, :-1], ids[:, 1:]).backward()
    assert model.tok_emb.weight.grad.dtype == torch.bfloat16
    before = model.tok_emb.weight.detach().clone()
    torch.optim.AdamW([model.tok_emb.weight], lr=1e-2).step()
    assert model.tok_emb.weight.dtype == torch.bfloat16 and not torch.equal(model.tok_emb.weight, before)


def test_smear_bos_mask_cuts_the_blend_at_document_starts():
    torch.manual_seed(0)
    plain, masked = SmearGate(4), SmearGate(4, bos_mask=True)
    with torch.no_grad():
        plain.gate.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
        masked.gate.copy_(plain.gate)
    x = torch.randn(1, 5, 4)
    ids = torch.tensor([[BOS_ID, 7, 9, BOS_ID, 4]])
    g = torch.sigmoid(plain.gate)
    out_plain, out_masked = plain(x), masked(x, ids)
    # The BOS at position 3 starts a document: like the stream's first position, x_{t-1} = 0.
    torch.testing.assert_close(out_masked[0, 3], (1 - g) * x[0, 3], rtol=0, atol=0)
    torch.testing.assert_close(out_plain[0, 3], (1 - g) * x[0, 3] + g * x[0, 2], rtol=0, atol=0)
    for t in (0, 1, 2, 4):
        assert torch.equal(out_masked[0, t], out_plain[0, t])


def test_smear_bos_mask_in_the_model_hides_the_previous_document():
    # What the first block receives, caught in the model's own forward.  BigramHash is off:
    # its bucket at a BOS still reads the token before (a leak this switch does not cover).
    cfg = dataclasses.replace(tiny_model_config(bigram_buckets=0), smear_bos_mask=True)
    a = torch.tensor([[5, 6, BOS_ID, 8, 9]])
    b = torch.tensor([[5, 11, BOS_ID, 8, 9]])  # differs only before the BOS

    def block_inputs(model: GPT) -> list[torch.Tensor]:
        seen: list[torch.Tensor] = []
        hook = model.blocks[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()))
        with torch.no_grad():
            for ids in (a, b):
                model.logits(ids)
        hook.remove()
        return seen

    masked = GPT(cfg)
    fill_like_spec(masked, seed=2)
    first, second = block_inputs(masked)
    assert torch.equal(first[0, 2:], second[0, 2:]) and not torch.equal(first[0, 1], second[0, 1])
    plain = GPT(dataclasses.replace(cfg, smear_bos_mask=False))
    plain.load_state_dict(masked.state_dict())
    first, second = block_inputs(plain)
    assert not torch.equal(first[0, 2], second[0, 2])  # the reference's SmearGate leaks into the BOS


def test_canon_d_position_switch():
    cfg = tiny_model_config(canon={"placements": "D", "last_n": 0, "delta_gate": False})
    pre = GPT(cfg).eval()
    fill_like_spec(pre, seed=4)
    post = GPT(dataclasses.replace(cfg, canon=dataclasses.replace(cfg.canon, d_after_relu=True))).eval()
    post.load_state_dict(pre.state_dict())
    mlp, x = pre.blocks[0].mlp, torch.randn(1, 6, 64)
    h = mlp.fc(x)
    with torch.no_grad():
        torch.testing.assert_close(pre.blocks[0].mlp(x), mlp.proj(torch.relu(mlp.canon_d(h)).square()))
        torch.testing.assert_close(post.blocks[0].mlp(x),
                                   mlp.proj(post.blocks[0].mlp.canon_d(torch.relu(h)).square()))
    # Canon B and D live where the reference keeps them.
    names = set(GPT(tiny_model_config(canon={"placements": "ABCD", "last_n": 0})).state_dict())
    assert {"blocks.0.attn.canon_b.conv.weight", "blocks.0.mlp.canon_d.conv.weight",
            "blocks.0.canon_a.conv.weight", "blocks.0.canon_c.conv.weight"} <= names
