#!/usr/bin/env python3
"""Every value of conf/profile/frontier.yaml against the 1.0611 record's own statement of it.

    python scripts/parity/frontier_profile_parity.py [--mirror PATH]

The record (PR #1855, records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_
BOSSmearFix_9HpStack_1.0611) states its configuration in three places, all read
from the challenge's bare git mirror:

- the hyperparameters train_seed42.log prints (`Hyperparameters:` block, one
  `name: value` a line) -- what the run actually used;
- prepare_caseops_data.py (the data: shard size, transform, sidecar) and the
  shipped tokenizer's trainer_spec (read with SentencePiece's model proto);
- submission.json (seeds, the baseline it beat).

The profile is composed as `dvc exp run -S profile=frontier` composes it, and
each pgolf key is compared with the record's value through the table below;
every line prints `ok` or `DIFF`, and the exit status is 1 on any DIFF.
tests/test_frontier_profile.py pins the same values without the mirror.
The keys pgolf has no counterpart for (per-document attention) and the choices pgolf makes differently (per-group brotli for
lrzip) are listed at the end with the reason.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from pipeline.config import Params, load_params  # noqa: E402

DEFAULT_MIRROR = Path("/work/.mirror/openai+parameter-golf/repo")
FOLDER = "records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
TOKENIZER = "tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"

# pgolf key -> the log's hyperparameter name (and a conversion of the log's text).
LOG_KEYS: dict[str, tuple[str, type]] = {
    "model.vocab_size": ("vocab_size", int),
    "model.num_layers": ("num_layers", int),
    "model.model_dim": ("model_dim", int),
    "model.num_heads": ("num_heads", int),
    "model.num_kv_heads": ("num_kv_heads", int),
    "model.mlp_mult": ("mlp_mult", float),
    "model.tied_embed_init_std": ("tied_embed_init_std", float),
    "model.logit_softcap": ("logit_softcap", float),
    "model.rope_base": ("rope_base", float),
    "model.rope_dims": ("rope_dims", int),
    "model.rope_ref_len": ("rope_train_seq_len", int),
    "model.q_gain_init": ("qk_gain_init", float),
    "model.ln_scale": ("ln_scale", bool),
    "model.xsa_last_n": ("xsa_last_n", int),
    "model.smear": ("smear_gate_enabled", bool),
    "model.smear_window": ("gate_window", int),
    "model.skip_gates": ("skip_gates_enabled", bool),
    "model.attn_gate.enabled": ("sparse_attn_gate_enabled", bool),
    "model.attn_gate.window": ("gate_window", int),
    "model.attn_gate.scale": ("sparse_attn_gate_scale", float),
    "model.lanes.start_layer": ("parallel_start_layer", int),
    "model.lanes.final": ("parallel_final_lane", str),
    "model.recurrence.num_loops": ("num_loops", int),
    "model.recurrence.loop_start": ("loop_start", int),
    "model.recurrence.loop_end": ("loop_end", int),
    "model.recurrence.enable_at": ("enable_looping_at", float),
    "train.nproc_per_node": ("world_size", int),
    "train.train_batch_tokens": ("train_batch_tokens", int),
    "train.seq_len": ("train_seq_len", int),
    "train.iterations": ("iterations", int),
    "train.warmup_steps": ("warmup_steps", int),
    "train.warmdown_frac": ("warmdown_frac", float),
    "train.min_lr": ("min_lr", float),
    "train.matrix_lr": ("matrix_lr", float),
    "train.scalar_lr": ("scalar_lr", float),
    "train.embed_lr": ("tied_embed_lr", float),
    "train.muon_momentum": ("muon_momentum", float),
    "train.muon_momentum_warmup_start": ("muon_momentum_warmup_start", float),
    "train.muon_momentum_warmup_steps": ("muon_momentum_warmup_steps", int),
    "train.muon_backend_steps": ("muon_backend_steps", int),
    "train.muon_weight_decay": ("muon_wd", float),
    "train.muon_variant.row_normalize": ("muon_row_normalize", bool),
    "train.adam_beta1": ("beta1", float),
    "train.adam_beta2": ("beta2", float),
    "train.adam_eps": ("adam_eps", float),
    "train.adam_weight_decay": ("adam_wd", float),
    "train.embed_weight_decay": ("embed_wd", float),
    "train.grad_clip_norm": ("grad_clip_norm", float),
    "train.ema_decay": ("ema_decay", float),
    "train.val_loss_every": ("val_loss_every", int),
    "train.log_every": ("train_log_every", int),
    "quant.gptq.calibration_batches": ("gptq_calibration_batches", int),
    "quant.gptq.calibration_batch_tokens": ("train_batch_tokens", int),
    "quant.gptq.clip_sigmas.embed": ("embed_clip_sigmas", float),
    "quant.gptq.clip_sigmas.mlp": ("mlp_clip_sigmas", float),
    "quant.gptq.clip_sigmas.attn": ("attn_clip_sigmas", float),
    "quant.gptq.clip_sigmas.other": ("matrix_clip_sigmas", float),
    "quant.lqer.top_k": ("lqer_top_k", int),
    "quant.lqer.rank": ("lqer_rank", int),
    "quant.lqer.asym": ("lqer_asym_enabled", bool),
    "quant.lqer.asym_group": ("lqer_asym_group", int),
    "quant.lqer.factor_bits": ("lqer_factor_bits", int),
    "data.tokenizer.vocab_size": ("vocab_size", int),
    "data.encoding.transform": ("caseops_enabled", lambda v: "caseops" if v == "True" else "identity"),
    "eval.seq_len": ("eval_seq_len", int),
    "eval.stride": ("eval_stride", int),
    "eval.ttt.mode": ("phased_ttt_num_phases", lambda v: "phased"),  # ttt_enabled + phased settings below
    "eval.ttt.phased.chunk_size": ("ttt_chunk_size", int),
    "eval.ttt.phased.batch_docs": ("ttt_batch_size", int),
    "eval.ttt.phased.lora_rank": ("ttt_lora_rank", int),
    "eval.ttt.phased.k_lora": ("ttt_k_lora", bool),
    "eval.ttt.phased.mlp_lora": ("ttt_mlp_lora", bool),
    "eval.ttt.phased.o_lora": ("ttt_o_lora", bool),
    "eval.ttt.phased.optimizer": ("ttt_optimizer", str),
    "eval.ttt.phased.lora_lr": ("ttt_lora_lr", float),
    "eval.ttt.phased.beta1": ("ttt_beta1", float),
    "eval.ttt.phased.beta2": ("ttt_beta2", float),
    "eval.ttt.phased.weight_decay": ("ttt_weight_decay", float),
    "eval.ttt.phased.grad_steps": ("ttt_grad_steps", int),
    "eval.ttt.phased.prefix_docs": ("phased_ttt_prefix_docs", int),
    "eval.ttt.phased.num_phases": ("phased_ttt_num_phases", int),
    "eval.ttt.phased.global_lr": ("global_ttt_lr", float),
    "eval.ttt.phased.global_momentum": ("global_ttt_momentum", float),
    "eval.ttt.phased.global_epochs": ("global_ttt_epochs", int),
    "eval.ttt.phased.global_chunk_tokens": ("global_ttt_chunk_tokens", int),
    "eval.ttt.phased.global_batch_seqs": ("global_ttt_batch_seqs", int),
    "eval.ttt.phased.global_warmup_start_lr": ("global_ttt_warmup_start_lr", float),
    "eval.ttt.phased.global_warmup_chunks": ("global_ttt_warmup_chunks", int),
    "eval.ttt.phased.global_grad_clip": ("global_ttt_grad_clip", float),
}

# Values stated in words or code rather than as a hyperparameter: pgolf key -> (where, the value).
DERIVED = {
    "quant.method": ("log: gptq_calibration_batches set, 'gptq (int6)' per matrix", "gptq"),
    "quant.control_matrix_scheme": ("log: gated_attn_quant_gate: True, 'gate_int8_row: blocks.attn.attn_gate_w'",
                                    "int8row"),
    "quant.control_matrix_suffixes": ("log: only attn_gate_w is gate_int8_row", (".attn_gate_w",)),
    "quant.keep_float_max_numel": ("train_gpt.py: passthrough when numel <= 65536", 65536),
    "quant.gptq.clip": ("train_gpt.py gptq_quantize_weight: clip_sigmas x row std", "sd"),
    "quant.gptq.block_size": ("train_gpt.py gptq_quantize_weight: block_size=128", 128),
    "quant.gptq.damp": ("train_gpt.py gptq_quantize_weight: 0.01 x mean diag", 0.01),
    "quant.codec.brotli_quality": ("train_gpt.py _serialize_pergroup: quality=11", 11),
    "quant.codec.brotli_window": ("train_gpt.py _serialize_pergroup: remainder lgwin=24", 24),
    "quant.allow_oversize": ("submission.json: artifact_bytes_max 15,907,550 < 16,000,000", False),
    "model.smear_bos_mask": ("README: SmearGate cross-document leak fix", True),
    "model.mlp_leaky_slope": ("README: LeakyReLU(0.5)^2", 0.5),
    "model.fused_kernels": ("log fused_ce_enabled: True, train_gpt.py MLP.use_fused = True: the Triton kernels "
                            "on the GPU", "auto"),
    "train.muon_variant.ns": ("README: Polar-Express Newton-Schulz", "polar_express"),
    "train.batch_layout": ("train_gpt.py: train_loader = DocumentPackingLoader(h, device)", "documents"),
    "data.encoding.byte_sidecar": ("log: val_bytes_files fineweb_val_bytes_*.bin", True),
    "eval.ttt.phased.lora_alpha": ("train_gpt.py: TTT_LORA_ALPHA default 144", 144.0),
    "eval.ttt.phased.warm_start_a": ("train_gpt.py: TTT_WARM_START_A default 1", True),
    "eval.ttt.budget_seconds": ("README: 600 s evaluation budget", 600.0),
}

NOT_IN_PGOLF = (
    "compressor: pergroup (lrzip -z -L 9 on the groups) -> pgolf pergroup-brotli by default: lrzip is an external "
    "program; -S quant.compressor=pergroup-lrzip where it is installed",
    "varlen attention in the diagnostic eval_val after training: pgolf's evaluate stage scores windows "
    "(training and periodic validation use train.batch_layout: documents)",
    "global_ttt_respect_doc_boundaries: True: pgolf has no switch for it (its global SGD phase is the one "
    "scripts/parity/ttt_parity.py compares with the record's)",
    "tokenizer file: pgolf trains an SP8192 CaseOps tokenizer with the shipped model's trainer settings",
)


def git_show(mirror: Path, path: str) -> bytes:
    return subprocess.run(["git", "-C", str(mirror), "show", f"HEAD:{FOLDER}/{path}"], check=True,
                          capture_output=True).stdout


def log_hyperparameters(text: str) -> dict[str, str]:
    """The `name: value` lines under `Hyperparameters:` in a record log."""
    block = text.split("Hyperparameters:", 1)[1]
    out: dict[str, str] = {}
    for line in block.splitlines()[1:]:
        m = re.fullmatch(r"  (\w+): ?(.*)", line)
        if not m:
            break
        out[m.group(1)] = m.group(2)
    return out


def convert(raw: str, kind) -> object:
    if kind is bool:
        return raw == "True"
    return kind(raw)


def lookup(p: Params, key: str) -> object:
    node: object = p
    for part in key.split("."):
        node = getattr(node, part)
    return node


def compose_frontier() -> Params:
    sys.path.insert(0, str(ROOT / "tests"))
    from tests.test_profiles import compose  # the composition `dvc exp run -S profile=frontier` does

    return load_params(compose(Path(tempfile.mkdtemp(prefix="frontier-")), "profile=frontier"))


def data_facts(mirror: Path) -> dict[str, tuple[str, object]]:
    """The data values prepare_caseops_data.py, the log and the shipped tokenizer state."""
    script = git_show(mirror, "prepare_caseops_data.py").decode()
    shard = int(re.search(r"^SHARD_TOKENS = ([\d_]+)", script, re.M).group(1).replace("_", ""))
    facts: dict[str, tuple[str, object]] = {
        "data.shard_tokens": ("prepare_caseops_data.py SHARD_TOKENS", shard),
        "data.sources.fineweb.mode": ("prepare_caseops_data.py reads docs_selected.jsonl", "docs"),
    }
    log = git_show(mirror, "train_seed42.log").decode()
    total = int(re.search(r"ttt_phased: total_docs:(\d+)", log).group(1))
    facts["data.val_docs"] = ("log: ttt_phased total_docs", total)
    from sentencepiece import sentencepiece_model_pb2 as pb

    proto = pb.ModelProto()
    proto.ParseFromString(git_show(mirror, TOKENIZER))
    t, n = proto.trainer_spec, proto.normalizer_spec
    spec = f"{TOKENIZER} trainer_spec"
    facts.update({
        "data.tokenizer.vocab_size": (spec, t.vocab_size),
        "data.tokenizer.character_coverage": (spec, round(t.character_coverage, 6)),
        "data.tokenizer.byte_fallback": (spec, t.byte_fallback),
        "data.tokenizer.split_digits": (spec, t.split_digits),
        "data.tokenizer.hard_vocab_limit": (spec, t.hard_vocab_limit),
        "data.tokenizer.normalization_rule_name": (spec, n.name),
        "data.tokenizer.add_dummy_prefix": (spec, n.add_dummy_prefix),
    })
    return facts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR)
    args = ap.parse_args()
    p = compose_frontier()
    hp = log_hyperparameters(git_show(args.mirror, "train_seed42.log").decode())
    submission = json.loads(git_show(args.mirror, "submission.json"))
    rows: list[tuple[str, object, object, str]] = []
    for key, (name, kind) in LOG_KEYS.items():
        want = kind(hp[name]) if kind not in (bool, int, float, str) else convert(hp[name], kind)
        rows.append((key, lookup(p, key), want, f"log {name}: {hp[name]}"))
    log = git_show(args.mirror, "train_seed42.log").decode()
    effective_ms = int(re.search(r"effective=(\d+)ms", log).group(1))
    read_off = {  # stated by the log in another form
        "quant.schemes.embed": (f"log embed_bits: {hp['embed_bits']}", f"int{hp['embed_bits']}"),
        **{f"quant.schemes.{c}": (f"log matrix_bits: {hp['matrix_bits']}", f"int{hp['matrix_bits']}")
           for c in ("mlp", "attn", "other")},
        "train.max_wallclock_seconds": (f"log gptq: effective={effective_ms}ms", effective_ms / 1000),
    }
    for key, (source, want) in {**DERIVED, **read_off, **data_facts(args.mirror)}.items():
        rows.append((key, lookup(p, key), want, source))
    rows.append(("seeds", p.seeds, tuple(int(s) for s in submission["seeds"]), "submission.json seeds"))
    rows.append(("report.baseline_bpb", p.report.baseline_bpb, submission["comparison_baseline_bpb"],
                 "submission.json comparison_baseline_bpb"))
    bad = 0
    for key, have, want, source in rows:
        same = have == want or (isinstance(want, float) and isinstance(have, (int, float)) and float(have) == want)
        bad += not same
        print(f"{'ok  ' if same else 'DIFF'} {key} = {have!r}  (record: {want!r}; {source})")
    print(f"\n{len(rows) - bad} of {len(rows)} values agree with the record")
    print("\nNot compared (pgolf differs or has no counterpart):")
    for line in NOT_IN_PGOLF:
        print(f"  - {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
