"""Muon against a plain re-statement of SPEC §3, batched vs per-matrix
Newton-Schulz, and two gloo processes against one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pipeline.optim import Muon, newton_schulz

SHAPES = [(32, 16), (16, 32), (24, 24), (32, 16), (40, 8), (16, 32), (32, 16)]


# --------------------------------------------------------------------------- a plain reference


def plain_orthogonalize(G: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """SPEC §3 for one matrix, in bf16: normalise by ||G||_F + 1e-7, transpose a
    tall matrix, iterate X <- aX + (bA + cA²)X with A = XXᵀ, transpose back.
    cA² is computed as (c·A)·A: the reference's left-to-right reading of
    ``c * A @ A``; in bf16 the association changes the last bits."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.bfloat16()
    X = X / (X.norm() + 1e-7)
    tall = G.shape[0] > G.shape[1]
    if tall:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        X = a * X + (b * A + (c * A) @ A) @ X
    return X.T if tall else X


def plain_muon(weights, grad_steps, lr, momentums, wd, nesterov=True):
    """Apply SPEC §3's Muon step by step, one matrix at a time, no sharding."""
    W = [w.clone() for w in weights]
    bufs = [torch.zeros_like(w) for w in weights]
    for grads, mom in zip(grad_steps, momentums):
        for k, g in enumerate(grads):
            bufs[k].mul_(mom).add_(g)
            u = g.add(bufs[k], alpha=mom) if nesterov else bufs[k]
            rows, cols = u.shape
            O = plain_orthogonalize(u) * math.sqrt(max(1.0, rows / cols))
            W[k].mul_(1.0 - lr * wd)
            W[k].add_(O.float(), alpha=-lr)
    return W, bufs


def make_problem(shapes, n_steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(s, generator=g) * 0.1 for s in shapes]
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in range(n_steps)]
    return weights, grads


def run_muon(weights, grad_steps, lr, momentums, wd, *, nesterov=True, rank=0, world_size=1):
    params = [torch.nn.Parameter(w.clone()) for w in weights]
    opt = Muon(params, lr=lr, momentum=momentums[0], backend_steps=5, weight_decay=wd,
               nesterov=nesterov, rank=rank, world_size=world_size)
    for grads, mom in zip(grad_steps, momentums):
        for p, gr in zip(params, grads):
            p.grad = gr.clone()
        for group in opt.param_groups:
            group["momentum"] = mom  # the loop rewrites it every step
        opt.step()
    bufs = [opt.state[p]["momentum_buffer"] for p in params]
    return [p.detach() for p in params], bufs


def assert_same_update(got, want, lr: float, steps: int) -> None:
    """Weights after `steps` Muon steps agree up to the bf16 rounding of the orthogonalised update.

    Newton-Schulz runs in bf16, and how a GEMM sums (BLAS build, thread count, a
    batched kernel) moves an element of the update by a bf16 ulp or two: at most
    2^-6 for |O| < 4, so lr·2^-5 per step.  A wrong formula (scale, Nesterov,
    decay) moves weights by ~lr per step, far outside this."""
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=steps * lr * 2**-5)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("wd", [0.0, 0.04])
def test_one_step_matches_plain_formula(wd):
    shapes = [(48, 16), (16, 48), (32, 32)]  # tall, wide, square
    weights, grads = make_problem(shapes, 1, seed=1)
    got, _ = run_muon(weights, grads, lr=0.025, momentums=[0.92], wd=wd)
    want, _ = plain_muon(weights, grads, lr=0.025, momentums=[0.92], wd=wd)
    assert_same_update(got, want, lr=0.025, steps=1)
    moved = [(a - w).abs().max().item() for a, w in zip(got, weights)]
    assert all(m > 1e-3 for m in moved)


def test_weight_decay_is_decoupled():
    """With wd the result is exactly p·(1 - lr·wd) - lr·O: zero grad gives O = 0."""
    w = torch.randn(16, 32)
    got, _ = run_muon([w], [[torch.zeros(16, 32)]], lr=0.5, momentums=[0.9], wd=0.1)
    assert torch.equal(got[0], w * (1 - 0.5 * 0.1))


@pytest.mark.parametrize("nesterov", [True, False])
def test_several_steps_with_momentum_state(nesterov):
    weights, grads = make_problem(SHAPES, 4, seed=2)
    momentums = [0.92, 0.93, 0.95, 0.99]
    got, got_bufs = run_muon(weights, grads, lr=0.02, momentums=momentums, wd=0.04, nesterov=nesterov)
    want, want_bufs = plain_muon(weights, grads, lr=0.02, momentums=momentums, wd=0.04, nesterov=nesterov)
    assert_same_update(got, want, lr=0.02, steps=4)
    for a, b in zip(got_bufs, want_bufs):  # element-wise fp32 ops only: bitwise anywhere
        assert torch.equal(a, b)


def test_batched_newton_schulz_equals_per_matrix():
    """The stack runs the same element-wise ops with per-matrix norms.  Seen
    bitwise on CPU and, eager, on an H200 (torch 2.11, cuBLAS); a GEMM back-end
    may pick another kernel for a batch, so agreement is asserted to two bf16
    ulps of the result (|X| < 2 here: 2^-6)."""
    g = torch.Generator().manual_seed(3)
    for shape in [(48, 16), (16, 48), (32, 32)]:
        stack = torch.randn(5, *shape, generator=g)
        batched = newton_schulz(stack, 5)
        assert batched.shape == stack.shape and batched.dtype == torch.bfloat16
        for i in range(5):
            torch.testing.assert_close(batched[i], newton_schulz(stack[i], 5), rtol=0, atol=2**-6)
            torch.testing.assert_close(batched[i], plain_orthogonalize(stack[i]), rtol=0, atol=2**-6)


def test_newton_schulz_orthogonalises():
    """Five quintic steps leave every singular value near 1 (roughly 0.7-1.2)."""
    G = torch.randn(64, 24, generator=torch.Generator().manual_seed(4))
    s = torch.linalg.svdvals(newton_schulz(G, 5).float())
    assert s.min() > 0.5 and s.max() < 1.3
    assert torch.equal(newton_schulz(torch.zeros(8, 4), 5), torch.zeros(8, 4, dtype=torch.bfloat16))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="2-D"):
        Muon([torch.nn.Parameter(torch.zeros(4))], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="rank 2"):
        Muon([torch.nn.Parameter(torch.zeros(4, 4))], lr=0.1, momentum=0.9, rank=2, world_size=2)


# --------------------------------------------------------------------------- two processes


N_DIST_STEPS = 3
DIST_MOMENTUMS = [0.92, 0.95, 0.99]


def _dist_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        weights, grads = make_problem(SHAPES, N_DIST_STEPS, seed=5)
        params, bufs = run_muon(weights, grads, lr=0.03, momentums=DIST_MOMENTUMS, wd=0.04,
                                rank=rank, world_size=world_size)
        torch.save({"params": params, "bufs": bufs}, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    """Rank r orthogonalises params r, r+2, ...; the bf16 SUM all-reduce adds
    exactly one non-zero per element, so two ranks reach the weights of one
    process (to the bf16 rounding of the update: the ranks run their GEMMs on one
    thread, this process on two), and both ranks hold the full momentum state,
    bitwise."""
    mp.spawn(_dist_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    weights, grads = make_problem(SHAPES, N_DIST_STEPS, seed=5)
    single, single_bufs = run_muon(weights, grads, lr=0.03, momentums=DIST_MOMENTUMS, wd=0.04)
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt")
        assert_same_update(out["params"], single, lr=0.03, steps=N_DIST_STEPS)
        for a, b in zip(out["bufs"], single_bufs):
            assert torch.equal(a, b), rank
