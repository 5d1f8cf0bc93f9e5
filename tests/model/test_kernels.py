"""The fused Triton kernels (pipeline/model/kernels) equal the plain PyTorch paths.

Run in Triton's CPU interpreter (TRITON_INTERPRET=1 while the kernels are first
launched; see kernels/_triton.py), at small shapes that are not multiples of
the block sizes.  Skipped when Triton is not installed, except the dispatch
tests, which need no kernel.  What only a GPU can show is in docs/kernels.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pipeline.errors import PgolfError
from pipeline.model import GPT
from pipeline.model.gpt import MLP
from pipeline.model.kernels import _triton, leaky_mlp, plain_leaky_mlp, plain_softcapped_ce, softcapped_ce, use_fused
from tests.model.helpers import fill_like_spec
from tests.conftest import tiny_model_config

ROOT = Path(__file__).resolve().parents[2]
needs_triton = pytest.mark.skipif(not _triton.triton_available(), reason="Triton is not installed (pgolf[kernels])")


def _interpreter_ready() -> bool:
    """Triton was imported with TRITON_INTERPRET=1 (tests/conftest.py sets it without a GPU):
    its own library functions (tl.sigmoid, ...) are then interpreter functions too."""
    if not _triton.interpreting():
        return False
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_triton.tl.standard.sigmoid, InterpretedFunction)


@pytest.fixture
def interpreter():
    """Triton's CPU interpreter for the kernels launched in this test."""
    if not _interpreter_ready():
        pytest.skip("Triton was imported without TRITON_INTERPRET=1 (tests/conftest.py sets it on CPU-only hosts)")


@pytest.fixture
def no_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


# ------------------------------------------------------------------------------------------- dispatch


def test_dispatch_off_and_auto_take_the_plain_path_on_cpu(no_interpreter):
    x = torch.zeros(2, 3)
    assert not use_fused("off", x, "the loss")
    assert not use_fused("auto", x, "the loss")


@needs_triton
def test_dispatch_on_without_cuda_is_a_clear_error(no_interpreter):
    with pytest.raises(PgolfError, match=r"model.fused_kernels: 'on' .*the MLP, got cpu"):
        use_fused("on", torch.zeros(2, 3), "the MLP")


def test_dispatch_on_without_triton_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_triton, "TRITON_IMPORT_ERROR", ImportError("No module named 'triton'"))
    with pytest.raises(PgolfError, match=r"Triton does not import .*pgolf\[kernels\]"):
        use_fused("on", torch.zeros(2, 3), "the loss")
    assert not use_fused("auto", torch.zeros(2, 3), "the loss")


def test_dispatch_rejects_an_unknown_mode():
    with pytest.raises(PgolfError, match="'fast' is not one of off, auto, on"):
        use_fused("fast", torch.zeros(1), "the loss")


def test_a_model_that_can_never_run_fused_is_refused_when_built(monkeypatch):
    monkeypatch.setattr(_triton, "TRITON_IMPORT_ERROR", ImportError("No module named 'triton'"))
    with pytest.raises(PgolfError, match="'on' but Triton does not import"):
        GPT(tiny_model_config(fused_kernels="on"))
    GPT(tiny_model_config(fused_kernels="auto"))  # auto falls back to the plain path


@needs_triton
def test_dispatch_on_runs_the_interpreter_on_cpu(interpreter):
    assert use_fused("on", torch.zeros(2, 3), "the loss")
    assert not use_fused("auto", torch.zeros(2, 3), "the loss")  # auto stays CUDA-only


# ------------------------------------------------------------------------------- soft-capped CE


def _ce_inputs(rows: int, vocab: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(rows, vocab, generator=g) * 40).to(dtype)  # far into the cap's curve (C = 30)
    targets = torch.randint(0, vocab, (rows,), generator=g)
    targets[0], targets[-1] = 0, vocab - 1  # the first and the last column (the partial block)
    return logits, targets


@needs_triton
@pytest.mark.parametrize("vocab, block", [(1000, 256), (77, 32)])
def test_softcapped_ce_equals_plain_fp32(interpreter, vocab, block):
    # vocab not a multiple of the block: the last block of every row is masked.
    logits, targets = _ce_inputs(6, vocab)
    fused_in = logits.clone().requires_grad_()
    plain_in = logits.clone().requires_grad_()
    fused = softcapped_ce(fused_in, targets, 30.0, block=block)
    plain = plain_softcapped_ce(plain_in, targets, 30.0)
    fused.backward()
    plain.backward()
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=0)
    torch.testing.assert_close(fused_in.grad, plain_in.grad, rtol=0, atol=1e-7)


@needs_triton
def test_softcapped_ce_reads_strided_logits(interpreter):
    logits, targets = _ce_inputs(5, 300)
    wide = torch.zeros(5, 600)
    wide[:, ::2] = logits  # column stride 2
    torch.testing.assert_close(softcapped_ce(wide[:, ::2], targets, 30.0, block=128),
                               plain_softcapped_ce(logits, targets, 30.0), rtol=1e-6, atol=0)


@needs_triton
def test_softcapped_ce_computes_bf16_logits_in_fp32(interpreter):
    # bf16 storage (the GPU's autocast): the kernel upcasts every value, so the loss is the
    # fp32 loss of the same bf16 numbers; the gradient is stored in bf16.
    logits, targets = _ce_inputs(6, 500, torch.bfloat16)
    x = logits.clone().requires_grad_()
    ref = logits.float().requires_grad_()
    fused = softcapped_ce(x, targets, 30.0, block=128)
    plain = plain_softcapped_ce(ref, targets, 30.0)
    fused.backward()
    plain.backward()
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=0)
    assert x.grad.dtype == torch.bfloat16
    torch.testing.assert_close(x.grad.float(), ref.grad, rtol=1e-2, atol=1e-5)


# ------------------------------------------------------------------------------- LeakyReLU² MLP


def _mlp_inputs(dtype=torch.float32):
    # M = 2·19 = 38, K = 40, N = 70, D = 24: none a multiple of the interpreter's 32-blocks.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 19, 40, generator=g)
    w1 = torch.randn(70, 40, generator=g) * 0.2
    w2 = torch.randn(24, 70, generator=g) * 0.2
    grad = torch.randn(2, 19, 24, generator=g)
    return [t.to(dtype) for t in (x, w1, w2)], grad.to(dtype)


def _run(fn, tensors, grad, slope):
    leaves = [t.clone().requires_grad_() for t in tensors]
    out = fn(*leaves, slope)
    out.backward(grad)
    return [out.detach()] + [t.grad for t in leaves]


@needs_triton
@pytest.mark.parametrize("slope", [0.5, 0.0])
def test_leaky_mlp_equals_plain_fp32(interpreter, slope):
    tensors, grad = _mlp_inputs()
    fused = _run(leaky_mlp, tensors, grad, slope)
    plain = _run(plain_leaky_mlp, tensors, grad, slope)
    for name, a, b in zip(("out", "dx", "dw1", "dw2"), fused, plain):
        # fp32 with a different summation order: relative to the tensor's largest entry.
        assert (a - b).abs().max() <= 2e-6 * b.abs().max(), name


@needs_triton
def test_leaky_mlp_bf16_is_about_as_close_to_fp32_as_the_plain_bf16_path(interpreter):
    # Triton 3.9's interpreter rounds fp32 -> bf16 toward zero (the GPU rounds to nearest),
    # and the interpreted kernel multiplies bf16 tiles in fp32 (its bf16 tl.dot returns
    # garbage): so here the bound is 4x the plain bf16 path's error, not equality.
    tensors, grad = _mlp_inputs()
    exact = _run(plain_leaky_mlp, tensors, grad, 0.5)
    bf16, bf16_grad = _mlp_inputs(torch.bfloat16)
    fused = _run(leaky_mlp, bf16, bf16_grad, 0.5)
    plain = _run(plain_leaky_mlp, bf16, bf16_grad, 0.5)
    for name, f, p, e in zip(("out", "dx", "dw1", "dw2"), fused, plain, exact):
        assert f.dtype == torch.bfloat16, name
        fused_err = (f.float() - e).abs().max()
        plain_err = (p.float() - e).abs().max()
        assert fused_err <= 4 * plain_err, (name, fused_err, plain_err)


# ------------------------------------------------------------------------------- in the model


def _fused_config(mode: str):
    return tiny_model_config(canon={"placements": ""}, mlp_leaky_slope=0.5, fused_kernels=mode)


def _loss_and_grads(model: GPT, ids, targets):
    model.zero_grad()
    loss = model(ids, targets)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _plain_and_fused_gpt():
    """Two tiny GPTs with the same weights, `off` and `on`, and a batch of ids and targets."""
    plain = GPT(_fused_config("off"))
    g = fill_like_spec(plain, std=0.1)
    fused = GPT(_fused_config("on"))
    fused.load_state_dict(plain.state_dict())
    ids = torch.randint(0, plain.cfg.vocab_size, (2, 16), generator=g)
    targets = torch.randint(0, plain.cfg.vocab_size, (2, 16), generator=g)
    return plain, fused, ids, targets


@needs_triton
def test_gpt_training_forward_fused_equals_plain(interpreter):
    plain, fused, ids, targets = _plain_and_fused_gpt()
    for model in (plain, fused):
        model.train()
        model.set_qat(True)  # the fused MLP must multiply by the same fake-quantised weights
    loss_p, grads_p = _loss_and_grads(plain, ids, targets)
    loss_f, grads_f = _loss_and_grads(fused, ids, targets)
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-6, atol=0)
    assert grads_f.keys() == grads_p.keys()
    for name, grad in grads_p.items():
        assert (grads_f[name] - grad).abs().max() <= 1e-5 * grad.abs().max() + 1e-9, name
    # Evaluation is always the plain path: eval-mode losses are identical to the bit.
    for model in (plain, fused):
        model.eval()
    torch.testing.assert_close(fused(ids, targets), plain(ids, targets), rtol=0, atol=0)


@needs_triton
def test_gpt_fused_under_bf16_autocast_takes_the_activation_dtype(interpreter):
    # The GPU's precision: the residual stream, the MLP's inputs and the logits in bf16, the
    # CastedLinear weights cast to it.  The fused path accepts those dtypes and lands within
    # bf16 noise of the plain path (the interpreter's bf16 rounding: see the MLP bf16 test).
    plain, fused, ids, targets = _plain_and_fused_gpt()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss_p, grads_p = _loss_and_grads(plain.train(), ids, targets)
        loss_f, grads_f = _loss_and_grads(fused.train(), ids, targets)
    assert loss_f.dtype == torch.float32
    torch.testing.assert_close(loss_f, loss_p, rtol=2e-3, atol=0)  # measured: 2.4e-4
    for name, grad in grads_p.items():  # measured: at most 4% of the tensor's largest entry
        assert grads_f[name].dtype == torch.float32, name
        assert (grads_f[name] - grad).abs().max() <= 0.1 * grad.abs().max() + 1e-9, name


@needs_triton
def test_mlp_with_canon_d_or_in_eval_never_calls_the_kernel(interpreter, monkeypatch):
    def refuse(*args):
        raise AssertionError("the fused MLP ran")

    monkeypatch.setattr("pipeline.model.gpt.leaky_mlp", refuse)
    mlp = MLP(8, 16, leaky_slope=0.5, fused="on")
    mlp.canon_d = torch.nn.Identity()
    mlp(torch.randn(3, 8))
    mlp.canon_d = None
    mlp.eval()
    mlp(torch.randn(3, 8))
    mlp.train()
    with pytest.raises(AssertionError, match="the fused MLP ran"):
        mlp(torch.randn(3, 8))


@needs_triton
@pytest.mark.slow
@pytest.mark.compile
def test_custom_ops_trace_under_fullgraph_compile(interpreter):
    """Dynamo keeps both custom ops as single nodes (their fake functions give the shapes);
    aot_eager builds the joint graph from their autograd formulas.  Inductor would
    call the same ops as extern kernels."""
    torch._dynamo.reset()
    logits, targets = _ce_inputs(6, 100)
    (x, w1, w2), _ = _mlp_inputs()

    def step(logits, x, w1, w2):
        return softcapped_ce(logits, targets, 30.0, block=64) + leaky_mlp(x, w1, w2, 0.5).square().mean()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    leaves_c = [t.clone().requires_grad_() for t in (logits, x, w1, w2)]
    leaves_e = [t.clone().requires_grad_() for t in (logits, x, w1, w2)]
    out_c = compiled(*leaves_c)
    out_e = step(*leaves_e)
    out_c.backward()
    out_e.backward()
    torch.testing.assert_close(out_c, out_e, rtol=0, atol=0)
    for a, b in zip(leaves_c, leaves_e):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)


@needs_triton
@pytest.mark.slow
@pytest.mark.compile
def test_gpt_with_the_kernels_compiles_fullgraph_and_equals_plain(interpreter):
    """The dispatch is traceable (its interpreter check is a trace-time constant) and the
    compiled fused model trains to the plain model's loss and gradients."""
    torch._dynamo.reset()
    plain, fused, ids, targets = _plain_and_fused_gpt()
    compiled = torch.compile(fused.train(), fullgraph=True, backend="aot_eager")
    loss_c, grads_c = _loss_and_grads(compiled, ids, targets)
    loss_p, grads_p = _loss_and_grads(plain.train(), ids, targets)
    torch.testing.assert_close(loss_c, loss_p, rtol=1e-6, atol=0)
    for name, grad in grads_p.items():
        assert (grads_c["_orig_mod." + name] - grad).abs().max() <= 1e-5 * grad.abs().max() + 1e-9, name


@needs_triton
@pytest.mark.slow
def test_kernels_compile_for_hopper_without_a_gpu():
    """What the interpreter cannot show: each kernel as the GPU path launches it compiles for
    sm_90 and its shared memory fits an H100 (scripts/check-kernels, in a process whose Triton
    is not the interpreter's)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "check-kernels")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.count(" ok ") == 8, proc.stdout  # 2 CE + 2 MLP kernels, bf16 and fp32
