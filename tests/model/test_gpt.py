"""The assembled model: record shapes and counts, names, state dicts, losses, QAT, groups, CLI."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
import typer
from typer.testing import CliRunner

from pipeline.errors import PgolfError
from pipeline.model import (
    GPT,
    config_parameter_counts,
    is_control_tensor,
    parameter_counts,
    split_param_groups,
)
from pipeline.model.attention import fa3_available
from pipeline.model.layers import CastedLinear
from pipeline.quant.rowwise import fake_quant_int6
from tests.conftest import ROOT, tiny_model_config
from tests.model.helpers import canon_config, random_tiny_model

RECORD_WITHOUT_CANON = (
    1024 * 512  # tok_emb
    + 2048 * 128 + 512 * 128 + 1  # bigram embed, proj, scale
    + 512  # smear.gate
    + 5 * 512  # skip_weights: min(5 encoder, 6 decoder) x dim
    + 11 * (
        512 * 512 + 2 * 256 * 512 + 512 * 512  # c_q, c_k, c_v (4 KV heads x 64), attn.proj
        + 2 * 1536 * 512  # mlp.fc, mlp.proj
        + 8 + 512 + 512 + 2 * 512  # q_gain, attn_scale, mlp_scale, resid_mix
    )
)
RECORD_CANON = 5 * 2 * (512 * 3 + 1)  # last 5 blocks x (A, C) x (depthwise k=3 weight + delta gate)


def test_record_parameter_count(record_params):
    assert RECORD_WITHOUT_CANON == 26_829_913  # "about 26.8 M" (SPEC §2)
    no_canon = config_parameter_counts(canon_config(record_params.model, placements=""))
    assert no_canon["total"] == RECORD_WITHOUT_CANON
    assert abs(no_canon["total"] - 26.8e6) < 0.1e6
    counts = config_parameter_counts(record_params.model)
    assert counts["canon"] == RECORD_CANON
    assert counts["total"] == RECORD_WITHOUT_CANON + RECORD_CANON
    assert counts["embeddings"] == 1024 * 512 and counts["bigram"] == 2048 * 128 + 512 * 128 + 1
    assert counts["attention"] == 11 * (2 * 512 * 512 + 2 * 256 * 512)
    assert counts["mlp"] == 11 * 2 * 1536 * 512


def test_record_shapes_on_meta(record_params):
    with torch.device("meta"):
        model = GPT(record_params.model)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["tok_emb.weight"] == (1024, 512)
    assert shapes["bigram.embed.weight"] == (2048, 128) and shapes["bigram.proj.weight"] == (512, 128)
    assert shapes["bigram.scale"] == () and shapes["smear.gate"] == (512,) and shapes["skip_weights"] == (5, 512)
    assert shapes["blocks.3.attn.c_q.weight"] == (512, 512)
    assert shapes["blocks.3.attn.c_k.weight"] == (256, 512) and shapes["blocks.3.attn.c_v.weight"] == (256, 512)
    assert shapes["blocks.3.attn.proj.weight"] == (512, 512) and shapes["blocks.3.attn.q_gain"] == (8,)
    assert shapes["blocks.3.mlp.fc.weight"] == (1536, 512) and shapes["blocks.3.mlp.proj.weight"] == (512, 1536)
    assert shapes["blocks.3.resid_mix"] == (2, 512) and shapes["blocks.3.attn_scale"] == (512,)
    assert shapes["blocks.10.canon_a.conv.weight"] == (512, 1, 3)
    assert shapes["blocks.10.canon_c.delta_gate_logit"] == ()
    assert "blocks.5.canon_a.conv.weight" not in shapes and "blocks.6.canon_a.conv.weight" in shapes


def test_state_dict_names_and_no_buffers():
    cfg = canon_config(tiny_model_config(num_layers=2), placements="ABCD", last_n=1, bias=True)
    model = GPT(cfg)
    per_block = ["attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight", "attn.proj.weight", "attn.q_gain",
                 "mlp.fc.weight", "mlp.proj.weight", "attn_scale", "mlp_scale", "resid_mix"]
    # The reference's names: B inside the attention, D inside the MLP.
    canon = [f"{owner}canon_{p}.{n}" for owner, p in (("", "a"), ("attn.", "b"), ("", "c"), ("mlp.", "d"))
             for n in ("conv.weight", "conv.bias", "delta_gate_logit")]
    expected = {"tok_emb.weight", "bigram.embed.weight", "bigram.proj.weight", "bigram.scale", "smear.gate",
                "skip_weights"}
    expected |= {f"blocks.{i}.{n}" for i in range(2) for n in per_block}
    expected |= {f"blocks.1.{n}" for n in canon}
    state = model.state_dict()
    assert set(state) == expected
    assert set(state) == {n for n, _ in model.named_parameters()}  # no persistent buffers
    optional_off = GPT(canon_config(tiny_model_config(bigram_buckets=0, smear=False), placements=""))
    assert not any(k.startswith(("bigram.", "smear.")) or "canon" in k for k in optional_off.state_dict())


def test_state_dict_round_trip_strict():
    model = random_tiny_model().eval()
    fresh = GPT(model.cfg).eval()
    fresh.load_state_dict(model.state_dict(), strict=True)
    ids = torch.randint(0, 1024, (2, 10))
    with torch.no_grad():
        assert torch.equal(model.logits(ids), fresh.logits(ids))


def test_loss_logits_and_per_token_losses_share_one_path():
    model = random_tiny_model().eval()
    ids, targets = torch.randint(0, 1024, (2, 10)), torch.randint(0, 1024, (2, 10))
    with torch.no_grad():
        logits = model.logits(ids)
        loss = model(ids, targets)
        per_token = model(ids, targets, reduction="none")
    assert logits.shape == (2, 10, 1024) and logits.abs().max() <= 30
    assert loss.dtype == torch.float32 and per_token.shape == (2, 10)
    want = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view(2, 10)
    torch.testing.assert_close(per_token, want)
    torch.testing.assert_close(loss, per_token.mean())


@pytest.mark.parametrize("autocast_dtype", [None, torch.bfloat16])
def test_residual_stream_travels_in_the_autocast_dtype(autocast_dtype):
    """SPEC §2 numerics: activations bf16 under autocast (the fp32 embedding output is cast once),
    fp32 without; weights stay fp32 and the loss is fp32 either way."""
    model = random_tiny_model(canon={"placements": "ABCD", "last_n": 2}).train()
    seen = []
    for block in model.blocks:
        block.register_forward_pre_hook(lambda _, args: seen.append((args[0].dtype, args[1].dtype)))
        block.register_forward_hook(lambda _, args, out: seen.append((out.dtype,)))
    ids, targets = torch.randint(0, 1024, (2, 8)), torch.randint(0, 1024, (2, 8))
    context = (torch.autocast("cpu", dtype=autocast_dtype) if autocast_dtype
               else torch.autocast("cpu", enabled=False))
    with context:
        loss = model(ids, targets)
        logits = model.logits(ids)
    want = autocast_dtype or torch.float32
    assert len(seen) == 2 * 2 * len(model.blocks)  # two forwards, a pre- and a post-hook per block
    assert {d for dtypes in seen for d in dtypes} == {want}
    assert logits.dtype == want and loss.dtype == torch.float32
    loss.backward()
    assert all(p.dtype == p.grad.dtype == torch.float32 for p in model.parameters())


def test_backward_reaches_every_parameter():
    model = random_tiny_model(canon={"placements": "ABCD", "bias": True, "activation": True}).train()
    ids, targets = torch.randint(0, 1024, (2, 8)), torch.randint(0, 1024, (2, 8))
    model(ids, targets).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def _hand_quantised_copy(model: GPT) -> GPT:
    copy_ = copy.deepcopy(model)
    copy_.set_qat(False)
    with torch.no_grad():
        for module in copy_.modules():
            if isinstance(module, CastedLinear):
                module.weight.copy_(fake_quant_int6(module.weight))
    return copy_


def test_qat_switch_in_eager_mode():
    model = random_tiny_model().train()
    ids, targets = torch.randint(0, 1024, (2, 8)), torch.randint(0, 1024, (2, 8))
    plain = model(ids, targets).detach()
    assert not model.qat_enabled
    model.set_qat(True)
    assert model.qat_enabled
    quantised = model(ids, targets).detach()
    assert (quantised - plain).abs() > 1e-4
    torch.testing.assert_close(quantised, _hand_quantised_copy(model).train()(ids, targets).detach())
    model.eval()  # QAT only acts on training forwards
    with torch.no_grad():
        torch.testing.assert_close(model(ids, targets), plain)
    assert set(model.state_dict()) == {n for n, _ in model.named_parameters()}
    model.train()
    model.set_qat(False)
    torch.testing.assert_close(model(ids, targets).detach(), plain)


def test_qat_covers_every_matrix_layer_including_bigram_proj():
    model = GPT(tiny_model_config())
    names = {n for n, m in model.named_modules() if isinstance(m, CastedLinear)}
    per_block = {"attn.c_q", "attn.c_k", "attn.c_v", "attn.proj", "mlp.fc", "mlp.proj"}
    assert names == {"bigram.proj"} | {f"blocks.{i}.{n}" for i in range(4) for n in per_block}


def test_parameter_groups(record_params):
    with torch.device("meta"):
        model = GPT(record_params.model)
    groups = split_param_groups(model)
    matrix = [n for n, _ in groups.matrix]
    embed = [n for n, _ in groups.embed]
    scalar = [n for n, _ in groups.scalar]
    assert len(matrix) == 11 * 6 + 1 and "bigram.proj.weight" in matrix
    assert all(n == "bigram.proj.weight" or n.startswith("blocks.") for n in matrix)
    assert embed == ["tok_emb.weight", "bigram.embed.weight"]
    assert {"skip_weights", "smear.gate", "bigram.scale", "blocks.0.resid_mix", "blocks.0.attn.q_gain",
            "blocks.10.canon_a.conv.weight", "blocks.10.canon_a.delta_gate_logit"} <= set(scalar)
    every = [n for n, _ in model.named_parameters()]
    assert sorted(matrix + embed + scalar) == sorted(every)
    assert all(p.ndim == 2 for _, p in groups.matrix)


def test_control_tensors():
    controls = ["skip_weights", "smear.gate", "bigram.scale", "blocks.2.attn_scale", "blocks.2.mlp_scale",
                "blocks.2.resid_mix", "blocks.2.attn.q_gain", "blocks.9.canon_a.delta_gate_logit",
                "blocks.9.canon_c.conv.weight"]
    weights = ["tok_emb.weight", "bigram.embed.weight", "bigram.proj.weight", "blocks.2.attn.c_q.weight",
               "blocks.2.attn.proj.weight", "blocks.2.mlp.fc.weight", "blocks.2.mlp.proj.weight"]
    assert all(is_control_tensor(n) for n in controls)
    assert not any(is_control_tensor(n) for n in weights)


def test_parameter_counts_of_built_model_match_meta():
    model = GPT(tiny_model_config())
    counts = parameter_counts(model)
    assert counts == config_parameter_counts(model.cfg)
    assert counts["total"] == sum(p.numel() for p in model.parameters())


def test_fa3_requested_without_flash_attention_is_a_clear_error():
    cfg = dataclasses.replace(tiny_model_config(), attention_backend="fa3")
    if fa3_available():
        pytest.skip("flash_attn_interface is installed here")
    with pytest.raises(PgolfError, match="fa3"):
        GPT(cfg)


def _fa3_stand_in(returns_lse: bool):
    """FlashAttention-3's `flash_attn_func` contract, written out: (B, T, H, D) bf16 in and
    out, query head h reads KV head h // (H / Hkv), causal; older releases also return the LSE."""
    calls = []

    def flash_attn_func(q, k, v, causal):
        calls.append((q.shape, k.shape, q.dtype, causal))
        assert q.dtype == k.dtype == v.dtype == torch.bfloat16 and causal
        rep = q.size(2) // k.size(2)
        k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q.float(), k.float()) / q.size(-1) ** 0.5
        t = q.size(1)
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
        out = torch.einsum("bhts,bshd->bthd", scores.softmax(-1), v.float()).to(q.dtype)
        return (out, scores.logsumexp(-1)) if returns_lse else out

    return flash_attn_func, calls


@pytest.mark.parametrize("returns_lse", [False, True])
def test_fa3_path_passes_the_model_layout(monkeypatch, returns_lse):
    """The FA3 branch (CUDA-only in use) hands FA3 (B, T, H, D) tensors without transposes and
    gets the same model output as SDPA; checked here with a stand-in that follows FA3's contract."""
    from pipeline.model import attention

    model = random_tiny_model(attention_backend="sdpa").eval()
    ids = torch.randint(0, 1024, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = model.logits(ids).float()
        func, calls = _fa3_stand_in(returns_lse)
        monkeypatch.setattr(attention, "_fa3_func", func)
        monkeypatch.setattr(attention.CausalSelfAttention, "_use_fa3", lambda self, q: True)
        got = model.logits(ids).float()
    cfg = model.cfg
    assert len(calls) == cfg.num_layers
    assert calls[0][:2] == ((2, 12, cfg.num_heads, cfg.head_dim), (2, 12, cfg.num_kv_heads, cfg.head_dim))
    # bf16 rounding differs between the two kernels (max 0.17, mean 0.016 on logits of mean size 1.3);
    # pairing query heads with the wrong KV heads moves them by 3.2 (max) and 0.16 (mean).
    assert (got - want).abs().max() < 0.3 and (got - want).abs().mean() < 0.02 * want.abs().mean()


def test_auto_backend_runs_sdpa_on_cpu():
    auto = random_tiny_model(attention_backend="auto").eval()
    sdpa = random_tiny_model(attention_backend="sdpa").eval()
    ids = torch.randint(0, 1024, (1, 9))
    with torch.no_grad():
        assert torch.equal(auto.logits(ids), sdpa.logits(ids))


def test_cudnn_backend_on_cpu_inputs_is_a_clear_error():
    model = random_tiny_model(attention_backend="cudnn").eval()
    with pytest.raises(PgolfError, match="'cudnn' needs CUDA inputs"):
        model.logits(torch.randint(0, 1024, (1, 9)))


def test_cudnn_backend_pins_sdpa_to_cudnns_kernel_and_never_takes_fa3(monkeypatch):
    """The dispatch, on CPU: `cudnn` asks SDPA for cuDNN's kernel only, and unlike `auto`
    it is not diverted to FlashAttention-3 when that is installed."""
    from types import SimpleNamespace

    from torch.nn.attention import SDPBackend

    from pipeline.model import attention

    cuda_like = SimpleNamespace(is_cuda=True)
    monkeypatch.setattr(attention, "fa3_available", lambda: True)
    chosen = {}
    for backend in ("auto", "sdpa", "cudnn"):
        attn = random_tiny_model(attention_backend=backend).blocks[0].attn
        chosen[backend] = (attn._sdpa_kernels(cuda_like), attn._use_fa3(cuda_like))
    assert chosen == {"auto": (None, True), "sdpa": (None, False), "cudnn": ([SDPBackend.CUDNN_ATTENTION], False)}


def test_a_pinned_sdpa_kernel_wraps_the_call_and_changes_nothing_else(monkeypatch):
    """The pin is a context around the SDPA call (the same path `cudnn` takes on a GPU, with
    the math kernel standing in for cuDNN's on the CPU): inside it only the pinned kernel is
    enabled, and the model's output equals PyTorch's own choice."""
    from torch.nn.attention import SDPBackend

    from pipeline.model import attention

    plain = random_tiny_model(attention_backend="sdpa").eval()
    pinned = random_tiny_model(attention_backend="cudnn").eval()
    seen = []
    causal_sdpa = attention.CausalSelfAttention._causal_sdpa

    def recording(self, q, k, v):
        seen.append((torch.backends.cuda.math_sdp_enabled(), torch.backends.cuda.flash_sdp_enabled(),
                     torch.backends.cuda.cudnn_sdp_enabled()))
        return causal_sdpa(self, q, k, v)

    ids = torch.randint(0, 1024, (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = plain.logits(ids)
        monkeypatch.setattr(attention.CausalSelfAttention, "_sdpa_kernels", lambda self, q: [SDPBackend.MATH])
        monkeypatch.setattr(attention.CausalSelfAttention, "_causal_sdpa", recording)
        got = pinned.logits(ids)
    assert torch.allclose(got, want, atol=1e-5, rtol=0)
    assert seen == [(True, False, False)] * plain.cfg.num_layers
    assert torch.backends.cuda.flash_sdp_enabled()  # restored after the call


def test_model_info_command_prints_record_totals():
    from stages.common import app
    from stages.model_info import model_info

    assert "model-info" in [c.name for c in app.registered_commands]
    # The real app only becomes a command group once every stage is imported;
    # a one-command group built here keeps this test independent of the others.
    cli = typer.Typer()
    cli.callback()(lambda: None)
    cli.command("model-info")(model_info)
    result = CliRunner().invoke(cli, ["model-info", "--params", str(ROOT / "params.yaml")])
    assert result.exit_code == 0, result.output
    lines = dict(line.rsplit(None, 1) for line in result.output.strip().splitlines())
    assert lines["total"] == f"{RECORD_WITHOUT_CANON + RECORD_CANON:,}"
    assert lines["canon"] == f"{RECORD_CANON:,}"
    assert lines["embeddings"] == "524,288"


def test_model_info_bad_params_is_a_one_line_error(tmp_path):
    from stages.model_info import model_info

    cli = typer.Typer()
    cli.callback()(lambda: None)
    cli.command("model-info")(model_info)
    missing = tmp_path / "missing.yaml"
    result = CliRunner().invoke(cli, ["model-info", "--params", str(missing)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("pgolf: error: ") and str(missing) in lines[0] and "params file not found" in lines[0]
    assert result.stdout == ""
