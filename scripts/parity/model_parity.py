#!/usr/bin/env python3
"""Forward-loss parity of pgolf's GPT with the challenge's record scripts, per seed profile.

    python scripts/parity/model_parity.py [--mirror PATH]

For each case below: build pgolf's model from the profile's switches at a
reduced size (composed from conf/ exactly as `dvc exp run -S profile=...`),
fill its weights by SPEC §7's rule (one generator seeded 1234, every state-dict
tensor in sorted key order becomes randn * 0.2, then the token ids), copy
those weights into the reference script's GPT (strict names) and print both
mean cross-entropies, on CPU in fp32, eval mode.  The weights flow pgolf ->
reference, so `tests/model/test_profile_parity.py` needs only pgolf and the
reference's number pinned here.

The reference is read from the challenge's bare git mirror (`git show`), written
to a temporary directory and imported; the only stub is FlashAttention 3
(`flash_attn_interface`, CUDA only), replaced by PyTorch's causal SDPA with the
same (B, T, H, D) layout.  Nothing GPU-only runs: the model is built and called
directly, without the script's main().
"""

from __future__ import annotations

import argparse
import dataclasses
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

from pipeline.config import ModelConfig, load_params  # noqa: E402
from pipeline.model import GPT  # noqa: E402

DEFAULT_MIRROR = Path("/work/.mirror/openai+parameter-golf/repo")
RECORDS = "records/track_10min_16mb"
# PR #312's own train_gpt.py; PR #400's branch carries the same file (only a report differs).
PR_SCRIPT = ("refs/pull/312/head", "train_gpt.py")


@dataclass(frozen=True)
class Case:
    """One parity configuration: a profile's switches at a small size, and its reference."""

    name: str
    profile: str
    reference: tuple[str, str]  # (git revision, path of train_gpt.py)
    overrides: dict  # ModelConfig fields replaced on the profile's model
    seq_len: int


SMALL = dict(vocab_size=1024, model_dim=128, num_heads=4, num_kv_heads=2, mlp_mult=3, embed_dtype="fp32")

CASES = (
    # PR #400's stack without Canon against the record it builds on.
    Case("record", "record",
         ("HEAD", f"{RECORDS}/2026-03-21_11L_XSA4_EMA_PartialRoPE_LateQAT_1.1248/train_gpt.py"),
         dict(SMALL, num_layers=4, xsa_last_n=2, bigram_buckets=256, bigram_dim=32, canon={"placements": ""}),
         96),
    # PR #312's stack without Canon against the record it builds on (full RoPE, no XSA,
    # no LN scale; T <= 1024, where that script, which has no NTK scaling, agrees).
    Case("pr312", "pr312",
         ("HEAD", f"{RECORDS}/2026-03-20_Int6_MLP3x_SmearGate_BigramHash_MuonWD_SWA/train_gpt.py"),
         dict(SMALL, num_layers=3, rope_dims=32, bigram_buckets=256, bigram_dim=32, canon={"placements": ""}),
         96),
    # Each profile with its Canon layers, against the PRs' own script.
    Case("record-canon", "record", PR_SCRIPT,
         dict(SMALL, num_layers=4, xsa_last_n=2, bigram_buckets=256, bigram_dim=32, canon={"last_n": 2}),
         96),
    Case("pr312-canon", "pr312", PR_SCRIPT,
         dict(SMALL, num_layers=3, rope_dims=32, bigram_buckets=256, bigram_dim=32), 96),
    # PR #312 beyond 1024 tokens: its rotary (on the whole head) gets NTK scaling there.
    Case("pr312-canon-ntk", "pr312", PR_SCRIPT,
         dict(SMALL, num_layers=2, model_dim=64, num_heads=2, num_kv_heads=1, rope_dims=32,
              bigram_buckets=256, bigram_dim=32), 1100),
)


def profile_model(profile: str) -> ModelConfig:
    """The `model` group of a profile, composed from conf/ as `dvc exp run -S profile=...` does."""
    from dvc.utils.hydra import compose_and_dump

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "params.yaml"
        compose_and_dump(out, str(ROOT / "conf"), None, "config", str(ROOT), [f"profile={profile}"])
        return load_params(out).model


def case_config(case: Case) -> ModelConfig:
    base = profile_model(case.profile)
    fields = {k: v for k, v in case.overrides.items() if k != "canon"}
    cfg = dataclasses.replace(base, **fields)
    return dataclasses.replace(cfg, canon=dataclasses.replace(cfg.canon, **case.overrides.get("canon", {})))


def spec_filled(cfg: ModelConfig, seq_len: int) -> tuple[GPT, torch.Tensor]:
    """pgolf's model with SPEC §7-filled weights (eval mode) and the (2, T+1) token ids."""
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    g = torch.Generator().manual_seed(1234)
    state = model.state_dict()
    with torch.no_grad():
        for key in sorted(state):
            state[key].copy_(torch.randn(state[key].shape, generator=g) * 0.2)
    ids = torch.randint(0, cfg.vocab_size, (2, seq_len + 1), generator=g)
    return model, ids


def pgolf_loss(case: Case) -> float:
    model, ids = spec_filled(case_config(case), case.seq_len)
    with torch.no_grad():
        return float(model(ids[:, :-1], ids[:, 1:]).item())


# --------------------------------------------------------------------------- the reference


def _flash_attn_stub() -> types.ModuleType:
    """`flash_attn_interface.flash_attn_func(q, k, v, causal=True)` on (B, T, H, D) via SDPA."""

    def flash_attn_func(q, k, v, causal=True):
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           is_causal=causal, enable_gqa=q.size(2) != k.size(2))
        return y.transpose(1, 2)

    module = types.ModuleType("flash_attn_interface")
    module.flash_attn_func = flash_attn_func
    return module


def load_reference(mirror: Path, revision: str, path: str, workdir: Path) -> types.ModuleType:
    source = subprocess.run(["git", "-C", str(mirror), "show", f"{revision}:{path}"],
                            check=True, capture_output=True, text=True).stdout
    target = workdir / f"ref_{abs(hash((revision, path)))}.py"
    target.write_text(source, encoding="utf-8")
    sys.modules.setdefault("flash_attn_interface", _flash_attn_stub())
    spec = importlib.util.spec_from_file_location(target.stem, target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_model(module: types.ModuleType, cfg: ModelConfig) -> torch.nn.Module:
    """The reference GPT for `cfg`, keyword by keyword (each script takes a different set)."""
    c = cfg.canon
    kwargs = dict(
        vocab_size=cfg.vocab_size, num_layers=cfg.num_layers, model_dim=cfg.model_dim,
        num_heads=cfg.num_heads, num_kv_heads=cfg.num_kv_heads, mlp_mult=cfg.mlp_mult,
        tie_embeddings=cfg.tie_embeddings, tied_embed_init_std=cfg.tied_embed_init_std,
        logit_softcap=cfg.logit_softcap, rope_base=cfg.rope_base, qk_gain_init=cfg.q_gain_init,
        bigram_vocab_size=cfg.bigram_buckets, bigram_dim=cfg.bigram_dim,
        xsa_last_n=cfg.xsa_last_n, rope_dims=cfg.rope_dims, ln_scale=cfg.ln_scale,
        xsa_learnable_gate=False, xsa_gate_init=2.0,
        canon_set=c.placements, canon_kernel=c.kernel, canon_first_n=c.first_n, canon_last_n=c.last_n,
        canon_layers=(), canon_bias=c.bias, canon_activation=c.activation, canon_residual=c.residual,
        canon_delta_gate=c.delta_gate, canon_delta_gate_init=c.delta_gate_init,
        boundary_delta_enabled=False, boundary_delta_first_n=0, boundary_delta_gate_vector=False,
        boundary_delta_gate_init=-4.0,
    )
    import inspect

    accepted = inspect.signature(module.GPT.__init__).parameters
    missing = [k for k in ("xsa_last_n", "rope_dims", "ln_scale", "canon_set") if k not in accepted]
    # A switch the script lacks must be off in the case, or the comparison is meaningless.
    for key in missing:
        off = {"xsa_last_n": 0, "rope_dims": cfg.head_dim, "ln_scale": False, "canon_set": ""}[key]
        if kwargs[key] != off:
            raise SystemExit(f"{module.__name__} has no {key}; the case must use {off!r}")
    return module.GPT(**{k: v for k, v in kwargs.items() if k in accepted}).eval()


def reference_loss(case: Case, mirror: Path, workdir: Path) -> float:
    cfg = case_config(case)
    module = load_reference(mirror, *case.reference, workdir)
    ours, ids = spec_filled(cfg, case.seq_len)
    theirs = reference_model(module, cfg).float()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    with torch.no_grad():
        return float(theirs(ids[:, :-1], ids[:, 1:]).item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR, help="bare git mirror of openai/parameter-golf")
    parser.add_argument("cases", nargs="*", help="case names (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            if args.cases and case.name not in args.cases:
                continue
            ref = reference_loss(case, args.mirror, Path(tmp))
            ours = pgolf_loss(case)
            print(f"{case.name:14s} reference {ref:.6f}  pgolf {ours:.6f}  diff {abs(ref - ours):.2e}   "
                  f"({case.reference[0]}:{case.reference[1]})")


if __name__ == "__main__":
    main()
