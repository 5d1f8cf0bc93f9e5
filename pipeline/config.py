"""params.yaml -> one typed, frozen, validated `Params` object.

Configuration flows one way: the YAML file is read once, converted into the
dataclasses below, validated, and then the relevant group is handed to the
library functions that need it.  Nothing in the library reads environment
variables for hyperparameters.

Every error names the full key path (``model.num_heads``) and the offending
value, so a typo in a sweep (``dvc exp run -S ...``) fails loudly at load time
instead of silently training the wrong model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Literal

from pipeline.errors import PgolfError
from pipeline.stage_params import fingerprint_values


class ConfigError(PgolfError, ValueError):
    """A parameter is unknown, of the wrong type, or inconsistent with another."""


# --------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class TokenizerConfig:
    """SentencePiece BPE settings (SPEC §1)."""

    vocab_size: int
    character_coverage: float
    byte_fallback: bool
    split_digits: bool
    normalization_rule_name: str
    add_dummy_prefix: bool
    hard_vocab_limit: bool
    # Documents of the training split used to train the tokenizer (0 = all).
    train_docs: int
    # Reuse an existing SentencePiece .model instead of training one ("" = train).
    model_path: str
    # Which documents train the tokenizer: "all" = from document 0, validation
    # included (the challenge's exporter); "train" = the training split only.
    train_from: Literal["all", "train"]


@dataclass(frozen=True)
class DataConfig:
    """Where the corpus comes from and how it is split and sharded (SPEC §1)."""

    source: Literal["embedded", "files", "fineweb", "shards"]
    # source=files: .jsonl / .txt paths or globs.
    files: tuple[str, ...]
    # source=fineweb: Hugging Face dataset repo and what to take from it.
    hub_repo: str
    hub_mode: Literal["shards", "docs"]
    # source=fineweb: the Hub revision (commit hash, tag or branch) every download is pinned to.
    hub_revision: str
    train_shards: int
    # source=shards: a directory of published shards (+ tokenizer) used as is.
    shards_dir: str
    # Output directory of the prepare stage.
    out_dir: str
    val_docs: int
    # Cap on documents read from the source (0 = all); handy for quick runs.
    max_docs: int
    shard_tokens: int
    tokenizer: TokenizerConfig


@dataclass(frozen=True)
class CanonConfig:
    """Canon layers: depthwise causal convolutions (SPEC §2)."""

    placements: str  # any subset of "ABCD"; "" disables Canon
    kernel: int
    residual: bool
    activation: bool
    bias: bool
    first_n: int
    last_n: int
    delta_gate: bool
    delta_gate_init: float
    weight_init: Literal["default", "zeros"]
    # Canon-D between the relu and the square of relu^2 (PR #312's code) instead
    # of on the hidden before the activation.
    d_after_relu: bool


@dataclass(frozen=True)
class AttnGateConfig:
    """Sparse attention head-output gate (PR #1787): each head's output is
    multiplied by sigmoid(scale * W_h . x[:window]) before the projection."""

    # true: every block's attention carries the gate (`attn.attn_gate_w`, zero-initialised).
    enabled: bool
    # Leading dims of the attention input that feed the gate (the record's GATE_WINDOW).
    window: int
    # Factor inside the sigmoid (SPARSE_ATTN_GATE_SCALE).
    scale: float


@dataclass(frozen=True)
class LanesConfig:
    """Parallel two-lane decoder (PR #1530's parallel residuals, lane mix learned)."""

    # First layer that runs as a parallel block on two lanes; 0 = no lanes (one residual stream).
    start_layer: int
    # What the final norm reads: the mean of both lanes, the attention lane, or the MLP lane.
    final: Literal["mean", "attn", "mlp"]


@dataclass(frozen=True)
class RecurrenceConfig:
    """Depth recurrence (PR #1344): layers loop_start..loop_end run 1 + num_loops
    times once training reaches enable_at of its length (time or steps)."""

    # Extra passes over the looped segment; 0 = no recurrence.
    num_loops: int
    # First looped layer.
    loop_start: int
    # Last looped layer (inclusive).
    loop_end: int
    # Training fraction (elapsed / wall-clock cap, or step / iterations) at which looping starts.
    enable_at: float


@dataclass(frozen=True)
class ModelConfig:
    """The GPT of SPEC §2."""

    vocab_size: int
    num_layers: int
    model_dim: int
    num_heads: int
    num_kv_heads: int
    mlp_mult: int
    tie_embeddings: bool
    tied_embed_init_std: float
    logit_softcap: float
    rope_base: float
    rope_dims: int
    rope_ref_len: int
    q_gain_init: float
    ln_scale: bool
    xsa_last_n: int
    bigram_buckets: int  # 0 disables BigramHash
    bigram_dim: int
    bigram_scale_init: float
    smear: bool
    attention_backend: Literal["auto", "sdpa", "fa3"]
    canon: CanonConfig
    # Storage dtype of tok_emb and bigram.embed: the reference trains, averages
    # and exports them in bf16 (`GPT(...).bfloat16()`), fp32 keeps full precision.
    embed_dtype: Literal["bf16", "fp32"]
    # SmearGate does not blend into a BOS position (no leak across documents).
    smear_bos_mask: bool
    # MLP activation leaky_relu(h, slope)^2; 0.0 = relu^2 (the record), 0.5 = PR #493's LeakyReLU(0.5)^2.
    mlp_leaky_slope: float
    # 0 = the channel SmearGate (record); N > 0 = PR #1667's token-gated smear on the
    # embeddings, x_t + lam * sigmoid(W . x_t[:N]) * x_{t-1}, before the first norm.
    smear_window: int
    # U-Net skips as lerp(w * skip, x, sigmoid(gate)) with learned gates (PR #289) instead of x + w * skip.
    skip_gates: bool
    attn_gate: AttnGateConfig
    lanes: LanesConfig
    recurrence: RecurrenceConfig

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return self.mlp_mult * self.model_dim


@dataclass(frozen=True)
class MuonVariantConfig:
    """How Muon orthogonalises (the frontier records' changes; SPEC §3 is the first row)."""

    # Newton-Schulz coefficients: "quintic" = (3.4445, -4.7750, 2.0315) every step;
    # "polar_express" = PR #1344's per-iteration minimax tuples.
    ns: Literal["quintic", "polar_express"]
    # MuonEq-R: divide each row of the update by its norm before Newton-Schulz.
    row_normalize: bool
    # Storage dtype of the momentum buffer (the 1.0611 record keeps it, and the gradient it adds, in bf16).
    momentum_dtype: Literal["fp32", "bf16"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisers, batch, schedule and training mechanics (SPEC §3)."""

    nproc_per_node: int
    train_batch_tokens: int
    seq_len: int
    iterations: int
    max_wallclock_seconds: float  # 0 = iteration schedule, no cap
    warmup_steps: int  # compile-priming steps, then state is restored
    warmdown_iters: int
    matrix_lr: float
    scalar_lr: float
    embed_lr: float
    muon_momentum: float
    muon_momentum_warmup_start: float
    muon_momentum_warmup_steps: int
    muon_backend_steps: int
    muon_weight_decay: float
    adam_beta1: float
    adam_beta2: float
    adam_eps: float
    adam_weight_decay: float
    grad_clip_norm: float  # 0 disables clipping
    qat_enabled: bool
    qat_threshold: float
    # Which layers late QAT fake-quantises: all_linear = every linear at int6 (the reference);
    # as_stored = exactly the weights quant stores at low bit width, at their scheme's bits (pipeline/train/qat.py).
    qat_targets: Literal["all_linear", "as_stored"]
    ema_enabled: bool
    ema_decay: float
    val_loss_every: int  # 0 = no periodic validation
    val_max_tokens: int  # cap on validation tokens for periodic validation (0 = all)
    log_every: int
    checkpoint_every: int  # 0 = only on SIGTERM
    compile: bool
    out_dir: str
    # Warm-down length as a fraction of training (time or steps); 0 = use warmdown_iters.
    warmdown_frac: float
    # Floor of the warm-down lr multiplier (the record's MIN_LR); 0 = decay to zero.
    min_lr: float
    # AdamW weight decay of the embedding group (the frontier's EMBED_WD); the record uses adam_weight_decay.
    embed_weight_decay: float
    muon_variant: MuonVariantConfig


@dataclass(frozen=True)
class SwaConfig:
    """Weight averaging.  every/start_lrmul/max_snapshots shape the snapshots the
    train stage writes; method/last_k choose what the swa stage averages."""

    enabled: bool
    every: int
    start_lrmul: float
    max_snapshots: int  # 0 = keep all
    method: Literal["snapshots", "ema", "final"]
    last_k: int  # average only the last k kept snapshots (0 = all)
    # Fewer snapshots than this -> the final weights (the reference's rule: 2);
    # 0 = never fall back (one snapshot is used alone, none is an error).
    min_snapshots: int


@dataclass(frozen=True)
class QuantSchemes:
    """Storage scheme (`pipeline.quant.schemes`) of each category's 2-D weights."""

    embed: str
    mlp: str
    attn: str
    other: str


@dataclass(frozen=True)
class QuantConfig:
    """Mixed per-row quantisation and compressed packing (SPEC §4)."""

    # Rounding method (`pipeline.quant.methods`): rtn = round to nearest.
    method: str
    schemes: QuantSchemes
    # Scheme of large float tensors that are not 2-D (vectors, conv kernels), whatever their category.
    non_matrix_scheme: str
    # Payload compressor (`pipeline.quant.compressors`), recorded in the artifact header.
    compressor: str
    keep_float_max_numel: int
    int8_clip_percentile: float
    zstd_level: int
    cap_bytes: int
    allow_oversize: bool


@dataclass(frozen=True)
class EvalConfig:
    """Standard and sliding-window bits-per-byte (SPEC §5)."""

    seq_len: int
    stride: int
    batch_seqs: int
    max_tokens: int  # cap on validation tokens scored (0 = all)
    # "truncated": the stream cut to a multiple of seq_len targets, as the
    # reference scores it; "full": every target.
    stream: Literal["truncated", "full"]


@dataclass(frozen=True)
class ReportConfig:
    """Multi-seed verdict against the previous record (SPEC §6)."""

    baseline_bpb: float
    min_improvement_nats: float
    p_threshold: float


@dataclass(frozen=True)
class Params:
    """Everything in params.yaml."""

    seeds: tuple[int, ...]
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    swa: SwaConfig
    quant: QuantConfig
    eval: EvalConfig
    report: ReportConfig

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def digest(self) -> str:
        """sha256 of the canonical JSON of every parameter: a provenance fingerprint."""
        return _sha256_json(self.to_dict())

    def stage_digest(self, stage: str) -> str:
        """sha256 of the canonical JSON of the params `stage` reads (`pipeline.stage_params.STAGE_PARAMS`,
        the same keys as dvc.yaml), output locations (`LOCATION_KEYS`) left out: changes when DVC would
        re-run the stage for a params change, other than a moved output directory."""
        return _sha256_json(fingerprint_values(self.to_dict(), stage))

    def stage_digests(self, stages: tuple[str, ...]) -> dict[str, str]:
        return {stage: self.stage_digest(stage) for stage in stages}


def _sha256_json(value: Any) -> str:
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- loading


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read, convert and validate a params file."""
    # Imported here, not at the top: the exported train_gpt.py uses this module without yaml.
    from pipeline.params_yaml import read_params_yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    raw = read_params_yaml(path)
    if raw is None:
        raw = {}
    try:
        return params_from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def params_from_dict(raw: dict[str, Any]) -> Params:
    """Convert a plain mapping (as parsed from YAML) into validated `Params`."""
    params = _convert(Params, raw, "")
    validate(params)
    validate_values(params)
    return params


def replace_path(params: Params, dotted: str, value: Any) -> Params:
    """Return a copy of `params` with one dotted key replaced (validated)."""
    data = params.to_dict()
    node = data
    keys = dotted.split(".")
    for key in keys[:-1]:
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(f"{dotted}: unknown key")
        node = node[key]
    if keys[-1] not in node:
        raise ConfigError(f"{dotted}: unknown key")
    node[keys[-1]] = value
    return params_from_dict(data)


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, path: str) -> Any:
    """Convert `value` to type `tp`, raising ConfigError with `path` on mismatch."""
    where = path or "<root>"
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            key = f"{path}.{unknown[0]}" if path else str(unknown[0])
            raise ConfigError(f"{key}: unknown key (value {value[unknown[0]]!r})")
        missing = sorted(names - set(value))
        if missing:
            key = f"{path}.{missing[0]}" if path else missing[0]
            raise ConfigError(f"{key}: missing (every parameter must be set in the params file)")
        kwargs = {
            name: _convert(hints[name], value[name], f"{path}.{name}" if path else name)
            for name in names
            if name in value
        }
        return tp(**kwargs)
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: must be one of {_type_name(tp)}, got {value!r}")
        return value
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{where}: union types are not supported in Params")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            # YAML reads "1e-8" (no dot) as a string; accept numeric strings.
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported parameter type {tp!r}")


# --------------------------------------------------------------------------- validation


def _check(cond: bool, key: str, value: Any, why: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {why} (got {value!r})")


def validate(p: Params) -> None:
    """Cross-field consistency checks; raises ConfigError naming the key at fault."""
    _check(len(p.seeds) > 0, "seeds", list(p.seeds), "at least one seed is required")
    _check(len(set(p.seeds)) == len(p.seeds), "seeds", list(p.seeds), "seeds must be distinct")
    for i, s in enumerate(p.seeds):
        _check(s >= 0, f"seeds[{i}]", s, "must be >= 0")

    d = p.data
    _check(d.val_docs >= 1, "data.val_docs", d.val_docs, "must be >= 1")
    _check(d.max_docs >= 0, "data.max_docs", d.max_docs, "must be >= 0")
    _check(
        d.max_docs == 0 or d.max_docs > d.val_docs,
        "data.max_docs",
        d.max_docs,
        f"must exceed data.val_docs={d.val_docs} so training data remains",
    )
    _check(d.shard_tokens >= 1, "data.shard_tokens", d.shard_tokens, "must be >= 1")
    _check(d.train_shards >= 1, "data.train_shards", d.train_shards, "must be >= 1")
    if d.source == "files":
        _check(len(d.files) > 0, "data.files", list(d.files), "source=files needs at least one path")
    if d.source == "shards":
        _check(d.shards_dir != "", "data.shards_dir", d.shards_dir, "source=shards needs a directory")
    t = d.tokenizer
    _check(t.vocab_size >= 8, "data.tokenizer.vocab_size", t.vocab_size, "must be >= 8")
    _check(t.vocab_size <= 65_536, "data.tokenizer.vocab_size", t.vocab_size, "must fit uint16 (<= 65536)")
    _check(0 < t.character_coverage <= 1, "data.tokenizer.character_coverage", t.character_coverage, "must be in (0, 1]")
    _check(t.train_docs >= 0, "data.tokenizer.train_docs", t.train_docs, "must be >= 0")

    m = p.model
    _check(m.vocab_size == t.vocab_size, "model.vocab_size", m.vocab_size,
           f"must equal data.tokenizer.vocab_size={t.vocab_size}")
    _check(m.num_layers >= 1, "model.num_layers", m.num_layers, "must be >= 1")
    _check(m.model_dim >= 1, "model.model_dim", m.model_dim, "must be >= 1")
    _check(m.num_heads >= 1, "model.num_heads", m.num_heads, "must be >= 1")
    _check(m.model_dim % m.num_heads == 0, "model.num_heads", m.num_heads,
           f"must divide model.model_dim={m.model_dim}")
    _check(m.num_kv_heads >= 1, "model.num_kv_heads", m.num_kv_heads, "must be >= 1")
    _check(m.num_heads % m.num_kv_heads == 0, "model.num_kv_heads", m.num_kv_heads,
           f"must divide model.num_heads={m.num_heads}")
    hd = m.model_dim // m.num_heads
    _check(hd % 2 == 0, "model.num_heads", m.num_heads, f"gives an odd head_dim={hd}; RoPE needs it even")
    _check(m.rope_dims % 2 == 0 and m.rope_dims > 0, "model.rope_dims", m.rope_dims, "must be a positive even number")
    _check(m.rope_dims <= hd, "model.rope_dims", m.rope_dims, f"must be <= head_dim={hd}")
    _check(m.rope_dims > 2, "model.rope_dims", m.rope_dims, "NTK scaling divides by rope_dims-2; use >= 4")
    _check(m.rope_ref_len >= 1, "model.rope_ref_len", m.rope_ref_len, "must be >= 1")
    _check(m.mlp_mult >= 1, "model.mlp_mult", m.mlp_mult, "must be >= 1")
    _check(m.logit_softcap > 0, "model.logit_softcap", m.logit_softcap, "must be > 0")
    _check(m.rope_base > 0, "model.rope_base", m.rope_base, "must be > 0")
    _check(0 <= m.xsa_last_n <= m.num_layers, "model.xsa_last_n", m.xsa_last_n,
           f"must be in [0, num_layers={m.num_layers}]")
    _check(m.bigram_buckets == 0 or m.bigram_buckets >= 2, "model.bigram_buckets", m.bigram_buckets,
           "must be 0 (off) or >= 2")
    _check(m.bigram_dim >= 1, "model.bigram_dim", m.bigram_dim, "must be >= 1")
    _check(m.tie_embeddings, "model.tie_embeddings", m.tie_embeddings,
           "only tied embeddings are implemented (SPEC §2)")
    c = m.canon
    _check(all(ch in "ABCD" for ch in c.placements) and len(set(c.placements)) == len(c.placements),
           "model.canon.placements", c.placements, "must be distinct letters from 'ABCD'")
    _check(c.kernel >= 1, "model.canon.kernel", c.kernel, "must be >= 1")
    _check(0 <= c.first_n <= m.num_layers, "model.canon.first_n", c.first_n, "must be in [0, num_layers]")
    _check(0 <= c.last_n <= m.num_layers, "model.canon.last_n", c.last_n, "must be in [0, num_layers]")
    validate_frontier(p)

    tr = p.train
    _check(tr.nproc_per_node >= 1 and 8 % tr.nproc_per_node == 0, "train.nproc_per_node", tr.nproc_per_node,
           "world size must divide 8 (grad_accum_steps = 8 / world_size)")
    _check(tr.seq_len >= 1, "train.seq_len", tr.seq_len, "must be >= 1")
    _check(tr.train_batch_tokens % (8 * tr.seq_len) == 0, "train.train_batch_tokens", tr.train_batch_tokens,
           f"must be a multiple of 8 x train.seq_len={tr.seq_len} (8 micro-batches of whole sequences)")
    _check(tr.iterations >= 1, "train.iterations", tr.iterations, "must be >= 1")
    _check(tr.max_wallclock_seconds >= 0, "train.max_wallclock_seconds", tr.max_wallclock_seconds, "must be >= 0")
    _check(tr.warmup_steps >= 0, "train.warmup_steps", tr.warmup_steps, "must be >= 0")
    _check(tr.warmdown_iters >= 0, "train.warmdown_iters", tr.warmdown_iters, "must be >= 0")
    _check(tr.muon_backend_steps >= 1, "train.muon_backend_steps", tr.muon_backend_steps, "must be >= 1")
    _check(tr.muon_momentum_warmup_steps >= 0, "train.muon_momentum_warmup_steps",
           tr.muon_momentum_warmup_steps, "must be >= 0")
    for key in ("matrix_lr", "scalar_lr", "embed_lr"):
        v = getattr(tr, key)
        _check(v >= 0, f"train.{key}", v, "must be >= 0")
    for key in ("muon_momentum", "muon_momentum_warmup_start", "adam_beta1", "adam_beta2", "ema_decay"):
        v = getattr(tr, key)
        _check(0 <= v < 1, f"train.{key}", v, "must be in [0, 1)")
    _check(tr.adam_eps > 0, "train.adam_eps", tr.adam_eps, "must be > 0")
    _check(tr.grad_clip_norm >= 0, "train.grad_clip_norm", tr.grad_clip_norm, "must be >= 0")
    _check(0 <= tr.qat_threshold <= 1, "train.qat_threshold", tr.qat_threshold, "must be in [0, 1]")
    for key in ("val_loss_every", "val_max_tokens", "log_every", "checkpoint_every"):
        v = getattr(tr, key)
        _check(v >= 0, f"train.{key}", v, "must be >= 0")

    s = p.swa
    _check(s.every >= 1, "swa.every", s.every, "must be >= 1")
    _check(0 < s.start_lrmul <= 1, "swa.start_lrmul", s.start_lrmul, "must be in (0, 1]")
    _check(s.max_snapshots >= 0, "swa.max_snapshots", s.max_snapshots, "must be >= 0")
    _check(s.last_k >= 0, "swa.last_k", s.last_k, "must be >= 0")
    _check(s.min_snapshots >= 0, "swa.min_snapshots", s.min_snapshots, "must be >= 0")
    _check(s.max_snapshots == 0 or s.last_k <= s.max_snapshots, "swa.last_k", s.last_k,
           f"cannot exceed swa.max_snapshots={s.max_snapshots}")
    _check(s.method != "snapshots" or s.enabled, "swa.method", s.method,
           "averaging snapshots needs swa.enabled: true")
    _check(s.method != "ema" or tr.ema_enabled, "swa.method", s.method, "needs train.ema_enabled: true")

    q = p.quant
    validate_quant_names(q)
    _check(q.keep_float_max_numel >= 0, "quant.keep_float_max_numel", q.keep_float_max_numel, "must be >= 0")
    _check(0 < q.int8_clip_percentile <= 100, "quant.int8_clip_percentile", q.int8_clip_percentile,
           "must be in (0, 100]")
    _check(1 <= q.zstd_level <= 22, "quant.zstd_level", q.zstd_level, "must be in [1, 22]")
    _check(q.cap_bytes >= 1, "quant.cap_bytes", q.cap_bytes, "must be >= 1")

    e = p.eval
    _check(e.seq_len >= 1, "eval.seq_len", e.seq_len, "must be >= 1")
    _check(1 <= e.stride <= e.seq_len, "eval.stride", e.stride, f"must be in [1, eval.seq_len={e.seq_len}]")
    _check(e.batch_seqs >= 1, "eval.batch_seqs", e.batch_seqs, "must be >= 1")
    _check(e.max_tokens >= 0, "eval.max_tokens", e.max_tokens, "must be >= 0")

    r = p.report
    _check(r.baseline_bpb > 0, "report.baseline_bpb", r.baseline_bpb, "must be > 0")
    _check(r.min_improvement_nats >= 0, "report.min_improvement_nats", r.min_improvement_nats, "must be >= 0")
    _check(0 < r.p_threshold < 1, "report.p_threshold", r.p_threshold, "must be in (0, 1)")


def validate_frontier(p: Params) -> None:
    """Checks of the frontier switches (model.attn_gate/lanes/recurrence, Muon variant, lr floor)."""
    m, tr = p.model, p.train
    _check(m.mlp_leaky_slope >= 0, "model.mlp_leaky_slope", m.mlp_leaky_slope, "must be >= 0")
    _check(0 <= m.smear_window <= m.model_dim, "model.smear_window", m.smear_window,
           f"must be in [0, model_dim={m.model_dim}]")
    _check(m.smear_window == 0 or m.smear, "model.smear_window", m.smear_window, "needs model.smear: true")
    g = m.attn_gate
    _check(1 <= g.window <= m.model_dim, "model.attn_gate.window", g.window, f"must be in [1, model_dim={m.model_dim}]")
    ln = m.lanes
    _check(0 <= ln.start_layer < m.num_layers, "model.lanes.start_layer", ln.start_layer,
           f"must be in [0, num_layers={m.num_layers}) (0 = no lanes)")
    _check(ln.start_layer == 0 or ln.start_layer >= m.num_layers // 2, "model.lanes.start_layer", ln.start_layer,
           f"lanes run in the decoder: must be >= num_layers // 2 = {m.num_layers // 2}")
    r = m.recurrence
    _check(r.num_loops >= 0, "model.recurrence.num_loops", r.num_loops, "must be >= 0")
    if r.num_loops > 0:
        _check(0 <= r.loop_start <= r.loop_end < m.num_layers, "model.recurrence.loop_end", r.loop_end,
               f"needs 0 <= loop_start={r.loop_start} <= loop_end < num_layers={m.num_layers}")
    _check(0 <= r.enable_at <= 1, "model.recurrence.enable_at", r.enable_at, "must be in [0, 1]")
    _check(0 <= tr.warmdown_frac <= 1, "train.warmdown_frac", tr.warmdown_frac, "must be in [0, 1]")
    _check(0 <= tr.min_lr < 1, "train.min_lr", tr.min_lr, "must be in [0, 1)")
    _check(tr.embed_weight_decay >= 0, "train.embed_weight_decay", tr.embed_weight_decay, "must be >= 0")


def validate_quant_names(q: QuantConfig) -> None:
    """Every scheme, method and compressor name in `quant` is registered (tests may register more)."""
    # Imported here: the registries import torch and zstandard, which loading params otherwise does not need.
    from pipeline.quant.compressors import COMPRESSORS
    from pipeline.quant.methods import METHODS
    from pipeline.quant.schemes import SCHEMES

    for key, value in [*((f"quant.schemes.{f.name}", getattr(q.schemes, f.name))
                         for f in dataclasses.fields(q.schemes)),
                       ("quant.non_matrix_scheme", q.non_matrix_scheme)]:
        _check(value in SCHEMES, key, value, f"not a registered storage scheme ({', '.join(SCHEMES)})")
    _check(q.method in METHODS, "quant.method", q.method, f"not a registered method ({', '.join(METHODS)})")
    _check(q.compressor in COMPRESSORS, "quant.compressor", q.compressor,
           f"not a registered compressor ({', '.join(COMPRESSORS)})")


# --------------------------------------------------------------------------- output locations

# Params that name a directory pgolf writes (and may later replace).
OUTPUT_DIR_KEYS = ("data.out_dir", "train.out_dir")
# Directories of the workspace that hold code or repository metadata: never an output.
PROTECTED_DIRS = frozenset({"pipeline", "stages", "conf", ".git", ".dvc"})


def check_output_dirs(p: Params, params_file: str | Path) -> None:
    """Refuse output directories outside the workspace or over its code and metadata.

    The workspace is the directory holding the params file (where DVC runs the
    stages).  A relative path must stay below it ('', '.', '..' and anything
    climbing out are refused); an absolute one must lie inside it.  No part of
    the path below the workspace may be one of `PROTECTED_DIRS`, and the two
    outputs may not lie inside each other (prepare replaces its directory whole).
    """
    workspace = Path(os.path.abspath(Path(params_file).parent))
    where = {key: _output_location(p, key, workspace, params_file) for key in OUTPUT_DIR_KEYS}
    (key_a, a), (key_b, b) = where.items()
    if a == b or a in b.parents or b in a.parents:
        raise ConfigError(f"{params_file}: {key_b}: must not overlap {key_a} "
                          f"(got {_dotted_get(p, key_b)!r} and {_dotted_get(p, key_a)!r})")


def _dotted_get(p: Params, key: str) -> Any:
    node: Any = p
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _output_location(p: Params, key: str, workspace: Path, params_file: str | Path) -> PurePath:
    """`key`'s directory relative to the workspace, or ConfigError naming the key."""
    value = _dotted_get(p, key)
    path = Path(value)
    if path.is_absolute():
        rel = os.path.relpath(os.path.normpath(path), workspace)
    else:
        rel = os.path.normpath(value) if value.strip() else "."
    rel_path = PurePath(rel)
    if rel == "." or rel_path.parts[0] == "..":
        raise ConfigError(f"{params_file}: {key}: must be a directory inside the workspace {workspace} "
                          f"(the directory of the params file), not the workspace itself or outside it "
                          f"(got {value!r})")
    protected = next((part for part in rel_path.parts if part in PROTECTED_DIRS), None)
    if protected is not None:
        raise ConfigError(f"{params_file}: {key}: must not be or lie inside {protected}/, which holds "
                          f"pgolf's code or repository metadata (got {value!r})")
    return rel_path


# --------------------------------------------------------------------------- values the types let through

SEED_MAX = 2**32 - 1  # numpy's seed range, the narrowest of the generators a seed feeds
# A Hub repo id: [namespace/]name, letters, digits, '-', '_', '.', no '--' or '..', at most 96 characters a part.
_HUB_PART = r"(?!.*(?:--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?"
_HUB_REPO = re.compile(rf"(?:{_HUB_PART}/)?{_HUB_PART}")
# A git revision the Hub resolves: a branch, a tag or a commit hash; no spaces, no '..', no leading '/' or '-'.
_HUB_REVISION = re.compile(r"(?!.*\.\.)[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,254}")


def check_seed(seed: int, key: str = "--seed") -> None:
    """A seed every random generator accepts: an integer in [0, 2**32 - 1]."""
    _check(0 <= seed <= SEED_MAX, key, seed, f"must be in [0, {SEED_MAX}]")


def check_hub_repo(repo: str, key: str = "data.hub_repo") -> None:
    _check(bool(_HUB_REPO.fullmatch(repo)), key, repo,
           "not a Hugging Face repo id ([namespace/]name: letters, digits, '-', '_', '.')")


def _non_finite(obj: Any, prefix: str) -> str | None:
    """The dotted key of the first float parameter that is NaN or infinite, if any."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            found = _non_finite(value, key + ".")
            if found:
                return found
        elif isinstance(value, float) and not math.isfinite(value):
            return key
    return None


def validate_values(p: Params) -> None:
    """Values of the right type that still make no sense: NaN or infinite numbers (no parameter
    means anything at infinity), a negative standard deviation (learning rates: `validate`), seeds a random
    generator refuses, a Hub repo id or revision the Hub would reject."""
    bad = _non_finite(p, "")
    if bad is not None:
        value = p.to_dict()
        for part in bad.split("."):
            value = value[part]
        _check(False, bad, value, "must be a finite number")
    for i, s in enumerate(p.seeds):
        check_seed(s, f"seeds[{i}]")
    _check(p.model.tied_embed_init_std >= 0, "model.tied_embed_init_std", p.model.tied_embed_init_std,
           "a standard deviation must be >= 0")
    d = p.data
    if d.source == "fineweb" or d.hub_repo:
        check_hub_repo(d.hub_repo)
    _check(bool(_HUB_REVISION.fullmatch(d.hub_revision)), "data.hub_revision", d.hub_revision,
           "not a Hub revision (a commit hash, a tag or a branch name)")
