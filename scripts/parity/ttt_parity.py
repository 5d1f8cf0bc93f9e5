#!/usr/bin/env python3
"""pgolf's phased TTT against the 1.0611 record's ``eval_val_ttt_phased``, on CPU.

    python scripts/parity/ttt_parity.py [--mirror PATH]

The record's train_gpt.py imports flash-attn and triton at the top, so the
script does not import it: it reads the file from the bare git mirror, picks
out with ``ast`` the functions and classes the phased evaluation uses
(``eval_val_ttt_phased``, ``train_val_ttt_global_sgd_distributed``, the
document, batch, chunk-window, counter and accumulation helpers,
``_build_cu_seqlens``, ``BatchedLinearLoRA``, ``BatchedTTTLoRA``) and runs
them in a namespace holding only torch, numpy and the standard library: the
plain path, with the GPU bits stubbed (autocast to "cuda" is disabled on a
machine without one; ``log`` prints nothing).

Both sides get the same toy model (tests/evaluate/ttt_toy.py, deep copies),
token stream, byte tables and seed, under several configurations (one phase,
three phases, no global phase, SGD LoRA, a byte sidecar); the script prints
each bpb, the difference, and the figures tests/evaluate/test_ttt.py pins.

The real models (``GPT_CASES`` of tests/evaluate/ttt_cases.py): pgolf's GPT with
the frontier's switches at a tiny size against the record's own GPT, loaded
whole as scripts/parity/frontier_parity.py does (FlashAttention 3 and its
varlen call stubbed with causal SDPA, Triton inert, the plain MLP path) and
holding the same weights (its banks stacked from pgolf's matrices).  The
record's ``forward_ttt`` / ``BatchedTTTLoRA`` score and adapt; its global phase
calls its ``forward`` with ``cu_seqlens`` (attention within documents, cut at
eval_seq_len), pgolf's ``ttt_stream_loss`` the same.
"""

from __future__ import annotations

import argparse
import ast
import copy
import fcntl
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "parity"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

import frontier_parity  # noqa: E402
from tests.evaluate.ttt_cases import CASES, GPT_CASES, case_inputs, run_pgolf  # noqa: E402

DEFAULT_MIRROR = Path("/work/.mirror/openai+parameter-golf/repo")
RECORD = "records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611/train_gpt.py"
NAMES = {
    "_build_cu_seqlens", "_find_docs", "_build_ttt_global_batches", "_init_batch_counter", "_claim_next_batch",
    "_compute_chunk_window", "_accumulate_bpb", "_loss_bpb_from_sums", "_add_to_counter", "_init_int64_counter",
    "_select_ttt_doc_entries", "train_val_ttt_global_sgd_distributed", "eval_val_ttt_phased",
    "BatchedLinearLoRA", "BatchedTTTLoRA", "get_next_multiple_of_n",
}


def record_namespace(mirror: Path) -> dict:
    source = subprocess.run(["git", "-C", str(mirror), "show", f"HEAD:{RECORD}"], check=True,
                            capture_output=True, text=True).stdout
    tree = ast.parse(source)
    picked = [node for node in tree.body
              if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in NAMES]
    missing = NAMES - {node.name for node in picked}
    if missing:
        raise SystemExit(f"not found in the record: {sorted(missing)}")
    module = ast.Module(body=picked, type_ignores=[])
    namespace = {"torch": torch, "np": np, "nn": nn, "F": F, "Tensor": Tensor, "dist": dist, "math": math,
                 "os": os, "time": time, "fcntl": fcntl, "random": random, "BOS_ID": 1,
                 "log": lambda *a, **k: None}
    exec(compile(module, RECORD, "exec"), namespace)
    return namespace


def record_hparams(cfg, seq_len: int, run_id: str) -> SimpleNamespace:
    return SimpleNamespace(
        ttt_batch_size=cfg.batch_docs, ttt_lora_rank=cfg.lora_rank, ttt_k_lora=cfg.k_lora,
        ttt_mlp_lora=cfg.mlp_lora, ttt_o_lora=cfg.o_lora, ttt_optimizer=cfg.optimizer, ttt_lora_lr=cfg.lora_lr,
        ttt_beta1=cfg.beta1, ttt_beta2=cfg.beta2, ttt_weight_decay=cfg.weight_decay, ttt_chunk_size=cfg.chunk_size,
        ttt_eval_seq_len=seq_len, eval_seq_len=seq_len, ttt_grad_steps=cfg.grad_steps, ttt_eval_batches="",
        val_doc_fraction=1.0, seed=0, phased_ttt_prefix_docs=cfg.prefix_docs, phased_ttt_num_phases=cfg.num_phases,
        global_ttt_lr=cfg.global_lr, global_ttt_momentum=cfg.global_momentum, global_ttt_epochs=cfg.global_epochs,
        global_ttt_chunk_tokens=cfg.global_chunk_tokens, global_ttt_batch_seqs=cfg.global_batch_seqs,
        global_ttt_warmup_start_lr=cfg.global_warmup_start_lr, global_ttt_warmup_chunks=cfg.global_warmup_chunks,
        global_ttt_grad_clip=cfg.global_grad_clip, global_ttt_respect_doc_boundaries=True,
        run_id=run_id, rank=0, world_size=1,
    )


def record_gpt(module, ours) -> nn.Module:
    """The record's GPT holding pgolf's weights, in pgolf's looping mode (CPU, fp32, plain MLP)."""
    cfg = ours.cfg
    theirs = module.GPT(frontier_parity.record_hparams(cfg, cfg.rope_ref_len, yarn=False)).float()
    theirs.load_state_dict(frontier_parity.to_record_state(ours), strict=True)
    theirs.looping_active = ours.looping_active
    for block in theirs.blocks:
        block.mlp.use_fused = False
    return theirs.eval()


def run_record(ns: dict, name: str, module=None) -> tuple[float, float]:
    model, tokens, luts, sidecar, cfg, seq_len, seed = case_inputs(name)
    if name in GPT_CASES:
        model = record_gpt(module, model)
    ns["BatchedLinearLoRA"]._ALPHA = cfg.lora_alpha
    ns["BatchedLinearLoRA"]._WARM_START_A = cfg.warm_start_a
    val_data = SimpleNamespace(val_tokens=tokens, base_bytes_lut=luts.base_bytes.to(torch.int16),
                               has_leading_space_lut=luts.has_leading_space, is_boundary_token_lut=luts.is_boundary,
                               caseops_enabled=sidecar is not None,
                               val_bytes=sidecar.to(torch.int32) if sidecar is not None else None)
    h = record_hparams(cfg, seq_len, f"parity_{os.getpid()}_{name}")
    torch.manual_seed(seed)
    return ns["eval_val_ttt_phased"](h, model, torch.device("cpu"), val_data, model.forward_ttt)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR)
    args = ap.parse_args()
    ns = record_namespace(args.mirror)
    torch.set_num_threads(2)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        module = frontier_parity.load_record(args.mirror, Path(tmp))
    module.log = lambda *a, **k: None
    for name in [*CASES, *GPT_CASES]:
        rec_loss, rec_bpb = run_record(ns, name, module)
        ours = run_pgolf(name)
        diff = abs(ours.bpb - rec_bpb)
        worst = max(worst, diff, abs(ours.loss - rec_loss))
        print(f"{name:14s} record bpb {rec_bpb!r} loss {rec_loss!r} | pgolf bpb {ours.bpb!r} "
              f"loss {ours.loss!r} tokens {ours.tokens} bytes {ours.bytes} | |d bpb| {diff:.2e}")
    ok = worst <= 1e-6
    print(f"worst difference {worst:.2e}: {'PARITY OK' if ok else 'PARITY FAILED'} (tolerance 1e-6)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
