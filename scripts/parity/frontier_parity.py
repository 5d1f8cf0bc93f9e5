#!/usr/bin/env python3
"""Parity of pgolf's frontier switches with the 1.0611 record's train_gpt.py.

    python scripts/parity/frontier_parity.py [--mirror PATH]

The record (PR #1855, records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_
BOSSmearFix_9HpStack_1.0611) is read from the challenge's bare git mirror and
imported with its GPU-only pieces stubbed: FlashAttention 3 becomes causal SDPA
(the (B, T, H, D) call, and the varlen call as one causal call per cu_seqlens
segment, which scripts/parity/ttt_parity.py's global TTT phase uses), Triton becomes an inert
module (its kernels are defined, never run: the fused CE is switched off and the
MLP runs its plain path), torch.compile becomes the identity.

Forward: each case is the frontier profile's switch set (conf/profile/frontier.yaml,
composed as `dvc exp run -S profile=frontier` does) at a small size.  pgolf's
weights are filled by SPEC §7's rule (model_parity.spec_filled), with every 17th
token a BOS so the SmearGate mask matters; they are copied into the record's GPT
(its weight banks assembled from pgolf's per-block matrices, strict load), and
both mean cross-entropies are printed (CPU, fp32, eval mode).

Optimiser: one backward of pgolf's model (train mode) gives the gradients; the
record's Muon (Polar Express, MuonEq-R, bf16 momentum) and pgolf's Muon with
`train.muon_variant` = the frontier's take two steps on identical weights and
gradients; the updated matrices are compared bit for bit and the record's are
summarised (sum, sha256) for tests/optim/test_frontier_muon.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts" / "parity"))

from pipeline.config import ModelConfig, load_params  # noqa: E402
from pipeline.model import GPT  # noqa: E402
from pipeline.optim.muon import Muon, polar_express  # noqa: E402
from model_parity import spec_filled  # noqa: E402

DEFAULT_MIRROR = Path("/work/.mirror/openai+parameter-golf/repo")
RECORD = ("HEAD", "records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611/train_gpt.py")
BOS_EVERY = 17


@dataclass(frozen=True)
class Case:
    """The frontier profile's model at a small size; `nested` replaces fields of nested groups."""

    name: str
    overrides: dict
    nested: dict
    seq_len: int
    looping: bool


SMALL = dict(vocab_size=512, num_layers=6, xsa_last_n=6, model_dim=128, num_heads=4, num_kv_heads=2, mlp_mult=4,
             rope_dims=8, rope_ref_len=64, embed_dtype="fp32")
NESTED = dict(lanes=dict(start_layer=4), recurrence=dict(loop_start=1, loop_end=2, num_loops=2))

CASES = (
    # Every frontier switch on, depth recurrence active (encoder [0,1,2,1,2], decoder [1,2,3,4,5]).
    Case("frontier-looped", SMALL, NESTED, 64, True),
    # The same before the loop switches on (plain U-Net order, skip weights beyond 3 unused).
    Case("frontier-unlooped", SMALL, NESTED, 64, False),
    # Beyond the rotary reference length: the record with ROPE_YARN=1 against pgolf's NTK scaling.
    Case("frontier-yarn", dict(SMALL, rope_ref_len=32), NESTED, 64, True),
    # Lane 0 as the final hidden, and lanes from the first decoder layer.
    Case("frontier-attn-lane", SMALL, dict(NESTED, lanes=dict(start_layer=3, final="attn")), 64, True),
)


def frontier_model() -> ModelConfig:
    from dvc.utils.hydra import compose_and_dump

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "params.yaml"
        compose_and_dump(out, str(ROOT / "conf"), None, "config", str(ROOT), ["profile=frontier"])
        return load_params(out).model


def case_config(case: Case, base: ModelConfig | None = None) -> ModelConfig:
    cfg = dataclasses.replace(base or frontier_model(), **case.overrides)
    for group, fields in case.nested.items():
        cfg = dataclasses.replace(cfg, **{group: dataclasses.replace(getattr(cfg, group), **fields)})
    return cfg


def filled(cfg: ModelConfig, seq_len: int, looping: bool) -> tuple[GPT, torch.Tensor]:
    """pgolf's model with SPEC §7 weights (model_parity's fill), its looping mode set (a Python
    flag, outside the state dict), and (2, T+1) ids with BOS every 17th."""
    model, ids = spec_filled(cfg, seq_len)
    model.set_looping(looping)
    ids[:, 3::BOS_EVERY] = 1
    return model, ids


def pgolf_loss(case: Case, base: ModelConfig | None = None) -> float:
    model, ids = filled(case_config(case, base), case.seq_len, case.looping)
    with torch.no_grad():
        return float(model(ids[:, :-1], ids[:, 1:]).item())


# --------------------------------------------------------------------------- the record


class _Inert(types.ModuleType):
    """A module whose every attribute is a do-nothing decorator/value (Triton's names)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *a, **k: (a[0] if len(a) == 1 and callable(a[0]) and not k else None)


def _flash_attn_stub() -> types.ModuleType:
    def flash_attn_func(q, k, v, causal=True):
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=causal, enable_gqa=q.size(2) != k.size(2))
        return y.transpose(1, 2)

    def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=True,
                               window_size=(-1, -1)):
        """(N, H, D) packed: causal attention within each [cu[i], cu[i+1]) (padding entries repeat N)."""
        if not torch.equal(cu_seqlens_q, cu_seqlens_k) or window_size != (-1, -1):
            raise RuntimeError("only the record's self-attention varlen call is stubbed")
        bounds = sorted(set(cu_seqlens_q.tolist()))
        return torch.cat([flash_attn_func(q[None, a:b], k[None, a:b], v[None, a:b], causal)[0]
                          for a, b in zip(bounds, bounds[1:])], dim=0)

    fa = types.ModuleType("flash_attn_interface")
    fa.flash_attn_func = flash_attn_func
    fa.flash_attn_varlen_func = flash_attn_varlen_func
    return fa


# The record's Triton imports, replaced in its source by names bound to an inert module
# (registering a fake `triton` package in sys.modules would mislead torch itself).
TRITON_IMPORTS = ("import triton\nimport triton.language as tl\n"
                  "from triton.tools.tensor_descriptor import TensorDescriptor\n")
TRITON_STUB = "triton = tl = _pgolf_inert_triton\nTensorDescriptor = None\n"


def load_record(mirror: Path, workdir: Path) -> types.ModuleType:
    source = subprocess.run(["git", "-C", str(mirror), "show", f"{RECORD[0]}:{RECORD[1]}"],
                            check=True, capture_output=True, text=True).stdout
    if TRITON_IMPORTS not in source:
        raise SystemExit(f"{RECORD[1]}: its Triton imports moved; update TRITON_IMPORTS")
    target = workdir / "record_1_0611.py"
    target.write_text(source.replace(TRITON_IMPORTS, TRITON_STUB), encoding="utf-8")
    sys.modules.setdefault("flash_attn_interface", _flash_attn_stub())
    compile_ = torch.compile
    torch.compile = lambda fn=None, **kw: fn if fn is not None else (lambda f: f)  # type: ignore[assignment]
    try:
        spec = importlib.util.spec_from_file_location(target.stem, target)
        module = importlib.util.module_from_spec(spec)
        module._pgolf_inert_triton = _Inert("triton")
        spec.loader.exec_module(module)
    finally:
        torch.compile = compile_
    module.BOS_ID = 1
    return module


def record_hparams(cfg: ModelConfig, seq_len: int, yarn: bool) -> types.SimpleNamespace:
    """The record's Hyperparameters fields its GPT reads, from pgolf's config."""
    r = cfg.recurrence
    return types.SimpleNamespace(
        vocab_size=cfg.vocab_size, num_layers=cfg.num_layers, model_dim=cfg.model_dim,
        num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads, mlp_mult=float(cfg.mlp_mult),
        tie_embeddings=True, tied_embed_init_std=cfg.tied_embed_init_std, logit_softcap=cfg.logit_softcap,
        rope_base=cfg.rope_base, rope_dims=cfg.rope_dims, rope_yarn=yarn,
        train_seq_len=cfg.rope_ref_len if yarn else max(cfg.rope_ref_len, seq_len),
        ln_scale=cfg.ln_scale, qk_gain_init=cfg.q_gain_init, xsa_last_n=cfg.xsa_last_n,
        num_loops=r.num_loops, loop_start=r.loop_start, loop_end=r.loop_end,
        parallel_start_layer=cfg.lanes.start_layer, parallel_final_lane=cfg.lanes.final,
        skip_gates_enabled=cfg.skip_gates, fused_ce_enabled=False,
        attn_out_gate_enabled=False, attn_out_gate_src="proj", gate_window=cfg.attn_gate.window,
        gated_attn_enabled=False, gated_attn_init_std=0.01,
        sparse_attn_gate_enabled=cfg.attn_gate.enabled, sparse_attn_gate_init_std=0.0,
        sparse_attn_gate_scale=cfg.attn_gate.scale, smear_gate_enabled=cfg.smear_window > 0,
    )


def to_record_state(model: GPT) -> dict[str, torch.Tensor]:
    """pgolf's state dict under the record's names: per-block matrices stacked into its banks."""
    n = len(model.blocks)
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    blk = lambda i, name: sd[f"blocks.{i}.{name}"]  # noqa: E731
    out["qo_bank"] = torch.stack([blk(i, "attn.c_q.weight") for i in range(n)]
                                 + [blk(i, "attn.proj.weight") for i in range(n)])
    out["kv_bank"] = torch.stack([blk(i, "attn.c_k.weight") for i in range(n)]
                                 + [blk(i, "attn.c_v.weight") for i in range(n)])
    out["mlp_up_bank"] = torch.stack([blk(i, "mlp.fc.weight") for i in range(n)])
    out["mlp_down_bank"] = torch.stack([blk(i, "mlp.proj.weight") for i in range(n)])
    moved = {"attn.c_q.weight", "attn.proj.weight", "attn.c_k.weight", "attn.c_v.weight",
             "mlp.fc.weight", "mlp.proj.weight"}
    renamed = {"smear.gate": "smear_gate.weight", "smear.lam": "smear_lambda"}
    for key, value in sd.items():
        if key.startswith("blocks.") and key.split(".", 2)[2] in moved:
            continue
        out[renamed.get(key, key)] = value
    return out


def record_model(module: types.ModuleType, case: Case, cfg: ModelConfig, ours: GPT) -> torch.nn.Module:
    yarn = cfg.rope_ref_len < case.seq_len
    theirs = module.GPT(record_hparams(cfg, case.seq_len, yarn)).float()
    theirs.load_state_dict(to_record_state(ours), strict=True)
    theirs.looping_active = case.looping
    for block in theirs.blocks:
        block.mlp.use_fused = False  # the plain path: F.leaky_relu(.., 0.5).square()
    return theirs.eval()


def record_loss(module: types.ModuleType, case: Case) -> float:
    cfg = case_config(case)
    ours, ids = filled(cfg, case.seq_len, case.looping)
    theirs = record_model(module, case, cfg, ours)
    with torch.no_grad():
        return float(theirs(ids[:, :-1], ids[:, 1:]).item())


# --------------------------------------------------------------------------- Muon

MUON = dict(lr=0.026, momentum=0.97, backend_steps=5, weight_decay=0.095)
MUON_STEPS = 2


def muon_inputs(base: ModelConfig | None = None) -> tuple[GPT, list[torch.Tensor]]:
    """pgolf's frontier-looped model and one gradient per parameter (one train-mode backward)."""
    case = CASES[0]
    model, ids = filled(case_config(case, base), case.seq_len, True)
    model.train()
    model(ids[:, :-1], ids[:, 1:]).backward()
    return model, [p.grad.detach().clone() for p in model.parameters()]


def matrices(model: GPT) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters()
            if n.startswith("blocks.") and p.ndim == 2 and "resid_mix" not in n and "attn_gate" not in n]


def pgolf_muon(model: GPT) -> dict[str, torch.Tensor]:
    """pgolf's Muon with the frontier's variant, MUON_STEPS steps on the gradients in .grad."""
    named = matrices(model)
    opt = Muon([p for _, p in named], orthogonalize=polar_express, row_normalize=True,
               momentum_dtype=torch.bfloat16, nesterov=True, **MUON)
    for _ in range(MUON_STEPS):
        opt.step()
    return {n: p.detach().clone() for n, p in named}


def record_muon(module: types.ModuleType, model: GPT) -> dict[str, torch.Tensor]:
    """The record's Muon on its banks (same weights, the same gradients stacked), mapped back."""
    n = len(model.blocks)
    sd = to_record_state(model)
    grads = {name: p.grad for name, p in model.named_parameters()}
    gsd = to_record_state(types.SimpleNamespace(blocks=model.blocks, state_dict=lambda: grads))
    banks = {k: torch.nn.Parameter(sd[k].clone()) for k in ("qo_bank", "kv_bank", "mlp_up_bank", "mlp_down_bank")}
    for k, p in banks.items():
        p.grad = gsd[k].clone()
    opt = module.Muon(list(banks.values()), lr=MUON["lr"], momentum=MUON["momentum"],
                      backend_steps=MUON["backend_steps"], nesterov=True,
                      weight_decay=MUON["weight_decay"], row_normalize=True)
    for _ in range(MUON_STEPS):
        opt.step()
    out = {}
    for i in range(n):
        out[f"blocks.{i}.attn.c_q.weight"] = banks["qo_bank"][i]
        out[f"blocks.{i}.attn.proj.weight"] = banks["qo_bank"][n + i]
        out[f"blocks.{i}.attn.c_k.weight"] = banks["kv_bank"][i]
        out[f"blocks.{i}.attn.c_v.weight"] = banks["kv_bank"][n + i]
        out[f"blocks.{i}.mlp.fc.weight"] = banks["mlp_up_bank"][i]
        out[f"blocks.{i}.mlp.proj.weight"] = banks["mlp_down_bank"][i]
    return {k: v.detach().clone() for k, v in out.items()}


def digest(weights: dict[str, torch.Tensor]) -> tuple[float, str]:
    """(sum in float64, sha256 of the fp32 bytes in sorted name order) of updated matrices."""
    h = hashlib.sha256()
    total = 0.0
    for name in sorted(weights):
        t = weights[name].float().contiguous()
        h.update(t.numpy().tobytes())
        total += float(t.double().sum())
    return total, h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR, help="bare git mirror of openai/parameter-golf")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        module = load_record(args.mirror, Path(tmp))
        base = frontier_model()
        for case in CASES:
            ref = record_loss(module, case)
            ours = pgolf_loss(case, base)
            print(f"{case.name:20s} record {ref:.6f}  pgolf {ours:.6f}  diff {abs(ref - ours):.2e}")
        model, grads = muon_inputs(base)
        theirs = record_muon(module, model)
        model2, _ = muon_inputs(base)
        for p, g in zip(model2.parameters(), grads):
            p.grad = g.clone()
        ours = pgolf_muon(model2)
        worst = max(float((ours[k] - theirs[k]).abs().max()) for k in theirs)
        bitwise = all(torch.equal(ours[k], theirs[k]) for k in theirs)
        print(f"muon ({MUON_STEPS} steps, {len(theirs)} matrices): max |diff| {worst:.3e}  bitwise {bitwise}")
        total, sha = digest(theirs)
        print(f"record muon sum {total!r}  sha256 {sha}")


if __name__ == "__main__":
    main()
