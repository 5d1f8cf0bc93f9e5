#!/usr/bin/env python3
"""pgolf's GPTQ and LQER against the records' own functions, on the same weights and Hessians.

    python scripts/parity/gptq_parity.py [--mirror PATH]

The records' quantisation functions are read from the bare git mirror
(`git show HEAD:records/...`), cut out of their files with `ast` (the files
themselves need CUDA, flash-attn and triton to import) and run on CPU:

- 03-25 `quantize_int6_gptq`: GPTQ with the five-percentile clip search;
- 04-06 `gptq_quantize_weight` with `hessian_clip_lambda` (Hessian-aware SD-clip);
- 04-27 `gptq_mixed_quantize`: SD-clip GPTQ per category (int8 embedding, int6
  matrices), fp16 passthrough, and LQER (asymmetric where B's size allows, else
  symmetric) on the top-2 tensors by error.

Inputs: `tests/quant/gptq_inputs.py`.  The script checks that pgolf's codes,
scales and LQER factors equal the records' bit for bit, prints the sha256
digests that `tests/quant/test_gptq.py` pins, and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import ast
import collections
import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from pipeline.config import load_params  # noqa: E402
from pipeline.quant.gptq import gptq_quantize  # noqa: E402
from pipeline.quant.mixed import quantize_state_dict  # noqa: E402
from pipeline.quant.rtn import RoundToNearest  # noqa: E402
from pipeline.quant.schemes import get_scheme  # noqa: E402
from tests.quant.gptq_inputs import BLOCK_SIZE, digest, state_and_hessians  # noqa: E402

DEFAULT_MIRROR = Path("/work/.mirror/openai+parameter-golf/repo")
RECORDS = "records/track_10min_16mb"
R0325 = f"{RECORDS}/2026-03-25_ValCalib_GPTQ_XSA_BigramHash3072/train_gpt.py"
R0406 = f"{RECORDS}/2026-04-06_SP8192_HessianSDClip_ProgressiveRecurrence/train_gpt_decode.py"
R0427 = f"{RECORDS}/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611/train_gpt.py"


def record_functions(mirror: Path, path: str, names: list[str]) -> dict:
    """The named top-level functions of a record file, compiled on their own."""
    source = subprocess.run(["git", "-C", str(mirror), "show", f"HEAD:{path}"], check=True,
                            capture_output=True, text=True).stdout
    tree = ast.parse(source)
    wanted = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name in names]
    missing = set(names) - {node.name for node in wanted}
    if missing:
        raise SystemExit(f"{path}: no function {sorted(missing)}")
    namespace = {"torch": torch, "Tensor": Tensor, "collections": collections, "re": re,
                 "log": lambda *args, **kwargs: None}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), path, "exec"), namespace)
    return namespace


def same(label: str, ours: Tensor, theirs: Tensor, failures: list[str]) -> None:
    ok = ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    if not ok:
        failures.append(label)
    print(f"  {label:<44} {'equal' if ok else 'DIFFERENT'}  {digest(ours)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR)
    args = parser.parse_args()
    state, hessians = state_and_hessians()
    failures: list[str] = []
    w, H = state["blocks.0.mlp.fc.weight"], hessians["blocks.0.mlp.fc.weight"]

    print("03-25 quantize_int6_gptq (percentile search), int6, block 64:")
    rec = record_functions(args.mirror, R0325, ["quantize_int6_gptq", "_quantize_int6_percentile"])
    q_r, s_r = rec["quantize_int6_gptq"](w, H, clip_range=31, block_size=BLOCK_SIZE)
    q, s = gptq_quantize(w, H, 31, block_size=BLOCK_SIZE, clip="search")
    same("search codes", q, q_r, failures)
    same("search scales", s, s_r, failures)

    print("04-06 gptq_quantize_weight (Hessian-aware SD-clip, lambda 0.5, 12.85 sigmas), int6, block 64:")
    rec = record_functions(args.mirror, R0406, ["gptq_quantize_weight"])
    q_r, s_r = rec["gptq_quantize_weight"](w, H, clip_sigmas=12.85, clip_range=31, block_size=BLOCK_SIZE,
                                           hessian_clip_lambda=0.5)
    q, s = gptq_quantize(w, H, 31, block_size=BLOCK_SIZE, clip="sd", clip_sigmas=12.85, hessian_lambda=0.5)
    same("hessian-sd codes", q, q_r, failures)
    same("hessian-sd scales", s, s_r, failures)

    print("04-27 gptq_mixed_quantize (SD-clip, int8 embed / int6 matrices, LQER top 2 rank 4):")
    rec = record_functions(args.mirror, R0427, ["gptq_quantize_weight", "_quantize_gate_int8_row", "_lqer_pack",
                                                 "_lqer_pack_asym", "gptq_mixed_quantize"])
    h = SimpleNamespace(embed_clip_sigmas=20.0, mlp_clip_sigmas=10.0, attn_clip_sigmas=13.0, matrix_clip_sigmas=12.85,
                        embed_bits=8, matrix_bits=6, gated_attn_quant_gate=False, lqer_enabled=True, lqer_top_k=2,
                        lqer_rank=4, lqer_factor_bits=4, lqer_asym_enabled=True, lqer_asym_group=64)
    result, meta = rec["gptq_mixed_quantize"](state, hessians, h)
    ours = quantize_state_dict(state, mixed_cfg(), {"hessians": hessians})
    for name in state:
        entry, info = ours[name], meta[name]
        if info.startswith("passthrough"):
            same(f"{name} fp16", entry["data"], result[name], failures)
            continue
        same(f"{name} codes", entry["data"], result[name + ".q"], failures)
        same(f"{name} scales", entry["scale"], result[name + ".scale"], failures)
        suffix = {"+lqer_asym": "_a", "+lqer": ""}.get(info[info.index("+"):] if "+" in info else "", None)
        if suffix is None:
            if "lqer" in entry:
                failures.append(f"{name}: pgolf corrected it, the record did not")
            continue
        if entry.get("lqer") != ("asym" if suffix else "sym"):
            failures.append(f"{name}: record packs LQER {info}, pgolf {entry.get('lqer')}")
            continue
        for ours_field, theirs in (("lqer_a", "lqA"), ("lqer_a_scale", "lqAs"), ("lqer_b", "lqB"),
                                   ("lqer_b_scale", "lqBs")):
            same(f"{name} {ours_field} ({entry['lqer']})", entry[ours_field], result[f"{name}.{theirs}{suffix}"],
                 failures)
    print("04-27 _quantize_gate_int8_row vs pgolf's int8row scheme (round to nearest):")
    gate = state["blocks.0.attn.c_q.weight"][:8] * torch.linspace(0.0, 3.0, 8)[:, None]  # row 0 all zero
    q_r, s_r = rec["_quantize_gate_int8_row"](gate)
    entry = RoundToNearest().encode("blocks.0.attn_gate_w", gate, get_scheme("int8row"), None, {})
    same("int8row codes", entry["data"], q_r, failures)
    same("int8row scales", entry["scale"], s_r, failures)
    if failures:
        print(f"DIFFERENT: {', '.join(failures)}")
        return 1
    print("all equal")
    return 0


def mixed_cfg():
    """pgolf's quant params that say what the 04-27 call above says."""
    q = load_params(ROOT / "params.yaml").quant
    return dataclasses.replace(
        q, method="gptq", keep_float_max_numel=65536,
        schemes=dataclasses.replace(q.schemes, embed="int8", mlp="int6", attn="int6", other="int6"),
        gptq=dataclasses.replace(q.gptq, block_size=128, clip="sd", hessian_clip_lambda=0.0,
                                 clip_sigmas=dataclasses.replace(q.gptq.clip_sigmas, embed=20.0, mlp=10.0, attn=13.0,
                                                                 other=12.85)),
        lqer=dataclasses.replace(q.lqer, top_k=2, rank=4, asym=True, asym_group=64, factor_bits=4))


if __name__ == "__main__":
    sys.exit(main())
