"""params.yaml -> one typed, frozen, validated `Params` object.

Configuration flows one way: the YAML file is read once, converted into the
dataclasses below, validated, and then the relevant group is handed to the
library functions that need it.  Nothing in the library reads environment
variables for hyperparameters.

Every error names the full key path (``model.num_heads``) and the offending
value, so a typo in a sweep (``dvc exp run -S ...``) fails loudly at load time
instead of silently training the wrong model.

Each field declares its one-line description (`doc`), from which
scripts/params-table generates README.md's parameter table, and each group
checks its own fields in a ``validate(self, path)`` method beside them;
`validate` calls every such method in the tree, so a new nested group is
checked without being registered anywhere.  Checks that span groups live in
`Params.validate`.
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


def doc(text: str, default: Any = dataclasses.MISSING) -> Any:
    """Declare a parameter with its one-line description (README.md's parameter table is generated
    from these by scripts/params-table; tests/test_params_table.py fails on a field without one).
    A `default` lets code build the group without it (profiles still set every key)."""
    return dataclasses.field(default=default, metadata={"doc": text})


def field_doc(f: dataclasses.Field) -> str:
    """The description `doc` gave a field ("" when it has none)."""
    return f.metadata.get("doc", "")


# --------------------------------------------------------------------------- groups


@dataclass(frozen=True)
class TokenizerConfig:
    """SentencePiece BPE settings (SPEC §1)."""

    vocab_size: int = doc("SentencePiece BPE vocabulary size (must equal `model.vocab_size`).")
    character_coverage: float = doc("SentencePiece trainer option.")
    byte_fallback: bool = doc("SentencePiece trainer option: unknown characters become byte tokens.")
    split_digits: bool = doc("SentencePiece trainer option: one token per digit.")
    normalization_rule_name: str = doc("SentencePiece normaliser.")
    add_dummy_prefix: bool = doc("SentencePiece option: prepend a space to every document.")
    hard_vocab_limit: bool = doc("SentencePiece option: fail if the corpus cannot fill the vocabulary.")
    train_docs: int = doc(
        "Documents used to train the tokenizer, counted from where `train_from` starts (0 = all).")
    model_path: str = doc("Reuse this SentencePiece `.model` instead of training one (`''` = train).")
    train_from: Literal["all", "train"] = doc(
        "Documents the tokenizer is trained on: `all` from document 0, validation included (the challenge's "
        "exporter), or `train` (the training split only). Cleaned first (NUL → space, strip, empty dropped); "
        "`train_docs` counts raw documents from where it starts.")
    spec: str = doc(
        "An exporter tokenizer spec by name or dataset suffix (sp1024, sp4096, sp8192, ...; "
        "`pipeline/data/tokenizer_specs.py`); `vocab_size` must agree with it (`''` = none).", "")
    specs_file: str = doc("An exporter-format specs JSON to look `spec` up in (`''` = the built-in specs).", "")

    def validate(self, path: str) -> None:
        _check(self.vocab_size >= 8, f"{path}.vocab_size", self.vocab_size, "must be >= 8")
        _check(self.vocab_size <= 65_536, f"{path}.vocab_size", self.vocab_size, "must fit uint16 (<= 65536)")
        _check(0 < self.character_coverage <= 1, f"{path}.character_coverage", self.character_coverage,
               "must be in (0, 1]")
        _check(self.train_docs >= 0, f"{path}.train_docs", self.train_docs, "must be >= 0")


@dataclass(frozen=True)
class EmbeddedSourceConfig:
    """``data.source: embedded``: the interpreter's bundled documentation, no download; no params."""


@dataclass(frozen=True)
class FilesSourceConfig:
    """``data.source: files``: local .jsonl / .txt files."""

    paths: tuple[str, ...] = doc(".jsonl (`{\"text\": ...}` per line) or .txt paths or globs, read in this order.")

    def validate_selected(self, path: str) -> None:
        _check(len(self.paths) > 0, f"{path}.paths", list(self.paths), "source=files needs at least one path")


@dataclass(frozen=True)
class FinewebSourceConfig:
    """``data.source: fineweb``: the challenge's dataset on the Hugging Face Hub."""

    repo: str = doc("The Hugging Face dataset repository.")
    mode: Literal["shards", "docs"] = doc(
        "`shards` downloads the published shards and tokenizer as they are; `docs` downloads "
        "`docs_selected.jsonl` and tokenises it here.")
    revision: str = doc(
        "The revision (commit hash, tag or branch) of `repo` that every download is pinned to, recorded in "
        "`data/manifest.json` with the digest each file was checked against. The challenge's repository pins "
        "none, so the record follows `main`; for byte-identical data, pin the commit you prepared from: "
        "`python -c \"from huggingface_hub import HfApi; "
        "print(HfApi().dataset_info('willdepueoai/parameter-golf').sha)\"`, then "
        "`data.sources.fineweb.revision: <that hash>` in `conf/profile/record.yaml`.")
    train_shards: int = doc("`mode: shards`: how many published train shards to fetch (100M tokens each).")

    def validate(self, path: str) -> None:
        _check(self.train_shards >= 1, f"{path}.train_shards", self.train_shards, "must be >= 1")
        if self.repo:
            check_hub_repo(self.repo, f"{path}.repo")
        _check(bool(_HUB_REVISION.fullmatch(self.revision)), f"{path}.revision", self.revision,
               "not a Hub revision (a commit hash, a tag or a branch name)")

    def validate_selected(self, path: str) -> None:
        check_hub_repo(self.repo, f"{path}.repo")


@dataclass(frozen=True)
class ShardsSourceConfig:
    """``data.source: shards``: a local directory of ready shards, used as is."""

    dir: str = doc("Directory with `fineweb_{train,val}_NNNNNN.bin` and one tokenizer `.model`.")

    def validate_selected(self, path: str) -> None:
        _check(self.dir != "", f"{path}.dir", self.dir, "source=shards needs a directory")


@dataclass(frozen=True)
class DataSources:
    """One params section per data source (`pipeline/data/source_registry.py` opens them by name)."""

    embedded: EmbeddedSourceConfig = doc("Text shipped with Python (no download).")
    files: FilesSourceConfig = doc("Local .jsonl/.txt files.")
    fineweb: FinewebSourceConfig = doc("The challenge's Hugging Face dataset.")
    shards: ShardsSourceConfig = doc("A local directory of ready shards.")


@dataclass(frozen=True)
class EncodingConfig:
    """How documents become tokens and how their bytes are counted (pipeline/data/caseops.py)."""

    transform: Literal["identity", "caseops"] = doc(
        "Text transform before tokenisation: `identity`, or `caseops` (lossless_caps_caseops_v1).", "identity")
    byte_sidecar: bool = doc(
        "Write fineweb_val_bytes_NNNNNN.bin (each validation token's original UTF-8 bytes); evaluation then "
        "counts bytes from it. `caseops` requires it.", False)
    sidecar_whitespace: Literal["record", "original"] = doc(
        "Leading/trailing whitespace SentencePiece strips: `record` = uncounted, as the CaseOps record's "
        "prepare_caseops_data.py; `original` = charged to the first/last token.", "record")
    check_split: bool = doc(
        "Prepare checks that validation is the first val_docs documents (the challenge's 50,000 for fineweb) "
        "and that no training document has a validation one's content (`pipeline/data/split_check.py`).", False)

    def validate(self, path: str) -> None:
        _check(self.transform != "caseops" or self.byte_sidecar, f"{path}.byte_sidecar", self.byte_sidecar,
               f"must be true with {path}.transform=caseops (bpb needs original bytes)")


@dataclass(frozen=True)
class DataConfig:
    """Where the corpus comes from and how it is split and sharded (SPEC §1)."""

    source: str = doc(
        "Where documents come from: the name of a section of `data.sources` (`embedded`, `files`, `fineweb`, "
        "`shards`); the others are ignored.")
    sources: DataSources = doc("Each source's own params.")
    out_dir: str = doc(
        "Output directory of `prepare` (the train and evaluate stages read it); inside the workspace, not "
        "overlapping `train.out_dir`.")
    val_docs: int = doc("The first N documents are the validation split; the rest is training data.")
    max_docs: int = doc("Read at most N documents (0 = all).")
    shard_tokens: int = doc("Tokens per shard file written.")
    tokenizer: TokenizerConfig = doc("The tokenizer.")
    encoding: EncodingConfig = doc("Text transform and byte sidecar (the record: identity, none).", EncodingConfig())

    def validate(self, path: str) -> None:
        _check(self.val_docs >= 1, f"{path}.val_docs", self.val_docs, "must be >= 1")
        _check(self.max_docs >= 0, f"{path}.max_docs", self.max_docs, "must be >= 0")
        _check(self.max_docs == 0 or self.max_docs > self.val_docs, f"{path}.max_docs", self.max_docs,
               f"must exceed {path}.val_docs={self.val_docs} so training data remains")
        _check(self.shard_tokens >= 1, f"{path}.shard_tokens", self.shard_tokens, "must be >= 1")
        names = [f.name for f in dataclasses.fields(self.sources)]
        if self.source not in names:  # the sources are the sections of `sources`
            raise ConfigError(f"{path}.source: must be one of {' | '.join(map(repr, names))}, got {self.source!r}")
        selected = getattr(self.sources, self.source)
        if hasattr(selected, "validate_selected"):
            selected.validate_selected(f"{path}.sources.{self.source}")


@dataclass(frozen=True)
class CanonConfig:
    """Canon layers: depthwise causal convolutions (SPEC §2)."""

    placements: str = doc(
        "Canon layers: A attention input, B q/k/v projections, C MLP input, D MLP hidden; `''` = none.")
    kernel: int = doc("Width of the causal depthwise convolution.")
    residual: bool = doc("x + g·conv(x) instead of g·conv(x).")
    activation: bool = doc("SiLU after the convolution.")
    bias: bool = doc("Convolution bias.")
    first_n: int = doc("Canon only in the first N blocks (with last_n: both 0 = every block).")
    last_n: int = doc("Canon only in the last N blocks.")
    delta_gate: bool = doc("Gate g = sigmoid(α), α learnable per Canon layer (else g = 1).")
    delta_gate_init: float = doc("Initial α.")
    weight_init: Literal["default", "zeros"] = doc("`default` (PyTorch Conv1d) or `zeros`.")
    d_after_relu: bool = doc(
        "Canon-D between the relu and the square of relu² (where PR #312's code puts it) instead of on the "
        "hidden before the activation.")

    def validate(self, path: str) -> None:
        _check(all(ch in "ABCD" for ch in self.placements) and len(set(self.placements)) == len(self.placements),
               f"{path}.placements", self.placements, "must be distinct letters from 'ABCD'")
        _check(self.kernel >= 1, f"{path}.kernel", self.kernel, "must be >= 1")


@dataclass(frozen=True)
class AttnGateConfig:
    """Sparse attention head-output gate (PR #1787): each head's output is
    multiplied by sigmoid(scale * W_h . x[:window]) before the projection."""

    enabled: bool = doc("Every block's attention carries the gate (`attn.attn_gate_w`, zero-initialised).")
    window: int = doc("Leading dims of the attention input that feed the gate (the record's GATE_WINDOW).")
    scale: float = doc("Factor inside the sigmoid (SPARSE_ATTN_GATE_SCALE).")


@dataclass(frozen=True)
class LanesConfig:
    """Parallel two-lane decoder (PR #1530's parallel residuals, lane mix learned)."""

    start_layer: int = doc(
        "First layer that runs as a parallel block on two lanes; 0 = no lanes (one residual stream).")
    final: Literal["mean", "attn", "mlp"] = doc(
        "What the final norm reads: the mean of both lanes, the attention lane, or the MLP lane.")


@dataclass(frozen=True)
class RecurrenceConfig:
    """Depth recurrence (PR #1344): layers loop_start..loop_end run 1 + num_loops
    times once training reaches enable_at of its length (time or steps)."""

    num_loops: int = doc("Extra passes over the looped segment; 0 = no recurrence.")
    loop_start: int = doc("First looped layer.")
    loop_end: int = doc("Last looped layer (inclusive).")
    enable_at: float = doc(
        "Training fraction (elapsed / wall-clock cap, or step / iterations) at which looping starts.")

    def validate(self, path: str) -> None:
        _check(self.num_loops >= 0, f"{path}.num_loops", self.num_loops, "must be >= 0")
        _check(0 <= self.enable_at <= 1, f"{path}.enable_at", self.enable_at, "must be in [0, 1]")


@dataclass(frozen=True)
class ModelConfig:
    """The GPT of SPEC §2."""

    vocab_size: int = doc("Rows of the (tied) token embedding.")
    num_layers: int = doc("Transformer blocks; the first half feed U-Net skips into the second half.")
    model_dim: int = doc("Residual stream width.")
    num_heads: int = doc("Query heads (head_dim = model_dim / num_heads).")
    num_kv_heads: int = doc("Key/value heads (grouped-query attention).")
    mlp_mult: int = doc("MLP hidden width = mlp_mult × model_dim (relu² activation).")
    tie_embeddings: bool = doc("Output projection shares the token embedding (only `true` is implemented).")
    tied_embed_init_std: float = doc("Init std of the token embedding.")
    logit_softcap: float = doc("Logits are c·tanh(z/c) with this c.")
    rope_base: float = doc("Rotary base.")
    rope_dims: int = doc("Head dimensions that get rotary (the first rope_dims).")
    rope_ref_len: int = doc(
        "NTK scaling: beyond this sequence length the rotary base grows to base·(L/ref)^(d/(d−2)).")
    q_gain_init: float = doc("Initial per-head query gain.")
    ln_scale: bool = doc("Scale block i's normalised input by 1/sqrt(i+1).")
    xsa_last_n: int = doc("Exclusive self-attention in the last N blocks (0 = off).")
    bigram_buckets: int = doc("BigramHash table rows (0 = no BigramHash).")
    bigram_dim: int = doc("BigramHash embedding width.")
    bigram_scale_init: float = doc("Initial BigramHash output scale.")
    smear: bool = doc("SmearGate on the input embedding.")
    attention_backend: Literal["auto", "sdpa", "fa3", "cudnn"] = doc(
        "`sdpa` (PyTorch picks the kernel), `fa3` (FlashAttention 3, CUDA), `cudnn` (SDPA pinned to cuDNN's "
        "attention kernel, CUDA) or `auto` (FA3 when importable and on CUDA, else SDPA).")
    canon: CanonConfig = doc("Canon layers.")
    embed_dtype: Literal["bf16", "fp32"] = doc(
        "Storage dtype of `tok_emb` and `bigram.embed`: `bf16` trains, averages and exports them in bf16 as "
        "the reference does (`GPT(...).bfloat16()`); `fp32` keeps them in full precision. Lookups are "
        "computed in fp32 / the autocast dtype either way.")
    smear_bos_mask: bool = doc(
        "`true`: SmearGate treats a BOS position like the stream's first position (previous token 0), so "
        "nothing leaks across documents (the later records' `not_bos` fix); `false` is the reference's "
        "behaviour.")
    mlp_leaky_slope: float = doc(
        "MLP activation leaky_relu(h, slope)²; 0.0 = relu² (the record), 0.5 = PR #493's LeakyReLU(0.5)².")
    smear_window: int = doc(
        "0 = the channel SmearGate (record); N > 0 = PR #1667's token-gated smear on the embeddings, "
        "x_t + lam·sigmoid(W·x_t[:N])·x_{t-1}, before the first norm.")
    skip_gates: bool = doc(
        "U-Net skips as lerp(w·skip, x, sigmoid(gate)) with learned gates (PR #289) instead of x + w·skip.")
    attn_gate: AttnGateConfig = doc("Sparse attention head-output gate.")
    lanes: LanesConfig = doc("Parallel two-lane decoder.")
    recurrence: RecurrenceConfig = doc("Depth recurrence.")
    fused_kernels: Literal["off", "auto", "on"] = doc(
        "The record's Triton kernels for training-mode forwards (soft-capped CE loss, LeakyReLU² MLP; "
        "docs/kernels.md): `off` = plain PyTorch, `auto` = fused on CUDA when Triton imports, `on` = fused "
        "or an error.")

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return self.mlp_mult * self.model_dim

    def validate(self, path: str) -> None:
        _check(self.num_layers >= 1, f"{path}.num_layers", self.num_layers, "must be >= 1")
        _check(self.model_dim >= 1, f"{path}.model_dim", self.model_dim, "must be >= 1")
        _check(self.num_heads >= 1, f"{path}.num_heads", self.num_heads, "must be >= 1")
        _check(self.model_dim % self.num_heads == 0, f"{path}.num_heads", self.num_heads,
               f"must divide {path}.model_dim={self.model_dim}")
        _check(self.num_kv_heads >= 1, f"{path}.num_kv_heads", self.num_kv_heads, "must be >= 1")
        _check(self.num_heads % self.num_kv_heads == 0, f"{path}.num_kv_heads", self.num_kv_heads,
               f"must divide {path}.num_heads={self.num_heads}")
        hd = self.head_dim
        _check(hd % 2 == 0, f"{path}.num_heads", self.num_heads, f"gives an odd head_dim={hd}; RoPE needs it even")
        _check(self.rope_dims % 2 == 0 and self.rope_dims > 0, f"{path}.rope_dims", self.rope_dims,
               "must be a positive even number")
        _check(self.rope_dims <= hd, f"{path}.rope_dims", self.rope_dims, f"must be <= head_dim={hd}")
        _check(self.rope_dims > 2, f"{path}.rope_dims", self.rope_dims,
               "NTK scaling divides by rope_dims-2; use >= 4")
        _check(self.rope_ref_len >= 1, f"{path}.rope_ref_len", self.rope_ref_len, "must be >= 1")
        _check(self.mlp_mult >= 1, f"{path}.mlp_mult", self.mlp_mult, "must be >= 1")
        _check(self.logit_softcap > 0, f"{path}.logit_softcap", self.logit_softcap, "must be > 0")
        _check(self.rope_base > 0, f"{path}.rope_base", self.rope_base, "must be > 0")
        _check(0 <= self.xsa_last_n <= self.num_layers, f"{path}.xsa_last_n", self.xsa_last_n,
               f"must be in [0, num_layers={self.num_layers}]")
        _check(self.bigram_buckets == 0 or self.bigram_buckets >= 2, f"{path}.bigram_buckets",
               self.bigram_buckets, "must be 0 (off) or >= 2")
        _check(self.bigram_dim >= 1, f"{path}.bigram_dim", self.bigram_dim, "must be >= 1")
        _check(self.tie_embeddings, f"{path}.tie_embeddings", self.tie_embeddings,
               "only tied embeddings are implemented (SPEC §2)")
        c = self.canon
        _check(0 <= c.first_n <= self.num_layers, f"{path}.canon.first_n", c.first_n, "must be in [0, num_layers]")
        _check(0 <= c.last_n <= self.num_layers, f"{path}.canon.last_n", c.last_n, "must be in [0, num_layers]")
        _check(self.tied_embed_init_std >= 0, f"{path}.tied_embed_init_std", self.tied_embed_init_std,
               "a standard deviation must be >= 0")
        # The frontier switches (default off in the record profile).
        _check(self.mlp_leaky_slope >= 0, f"{path}.mlp_leaky_slope", self.mlp_leaky_slope, "must be >= 0")
        _check(0 <= self.smear_window <= self.model_dim, f"{path}.smear_window", self.smear_window,
               f"must be in [0, model_dim={self.model_dim}]")
        _check(self.smear_window == 0 or self.smear, f"{path}.smear_window", self.smear_window,
               f"needs {path}.smear: true")
        g = self.attn_gate
        _check(1 <= g.window <= self.model_dim, f"{path}.attn_gate.window", g.window,
               f"must be in [1, model_dim={self.model_dim}]")
        ln = self.lanes
        _check(0 <= ln.start_layer < self.num_layers, f"{path}.lanes.start_layer", ln.start_layer,
               f"must be in [0, num_layers={self.num_layers}) (0 = no lanes)")
        _check(ln.start_layer == 0 or ln.start_layer >= self.num_layers // 2, f"{path}.lanes.start_layer",
               ln.start_layer, f"lanes run in the decoder: must be >= num_layers // 2 = {self.num_layers // 2}")
        r = self.recurrence
        if r.num_loops > 0:
            _check(0 <= r.loop_start <= r.loop_end < self.num_layers, f"{path}.recurrence.loop_end", r.loop_end,
                   f"needs 0 <= loop_start={r.loop_start} <= loop_end < num_layers={self.num_layers}")


@dataclass(frozen=True)
class MuonVariantConfig:
    """How Muon orthogonalises (the frontier records' changes; SPEC §3 is the first row)."""

    ns: Literal["quintic", "polar_express"] = doc(
        "Newton-Schulz coefficients: `quintic` = (3.4445, -4.7750, 2.0315) every step; `polar_express` = "
        "PR #1344's per-iteration minimax tuples.")
    row_normalize: bool = doc("MuonEq-R: divide each row of the update by its norm before Newton-Schulz.")
    momentum_dtype: Literal["fp32", "bf16"] = doc(
        "Storage dtype of the momentum buffer (the 1.0611 record keeps it, and the gradient it adds, in bf16).")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisers, batch, schedule and training mechanics (SPEC §3)."""

    nproc_per_node: int = doc(
        "Processes (GPUs) on this node; > 1 re-launches `pgolf train` under torchrun. The world size must "
        "divide 8.")
    launcher: Literal["auto", "torchrun"] = doc(
        "`auto`: train and evaluate re-launch under torchrun when nproc_per_node > 1; `torchrun`: always, so "
        "even one process runs the multi-GPU code path (a process group on NCCL/gloo, DDP, the collectives): "
        "the one-device check of the 8-GPU path.")
    train_batch_tokens: int = doc(
        "Tokens per optimizer step over all ranks and micro-steps; a multiple of 8 × seq_len.")
    seq_len: int = doc("Training sequence length.")
    iterations: int = doc("Step budget; without a wall-clock cap the warm-down ends here.")
    max_wallclock_seconds: float = doc(
        "Stop training after this many seconds (evaluation excluded); 0 = iteration schedule only.")
    warmup_steps: int = doc("Compile-priming steps, then weights, optimizer state and data position are restored.")
    warmdown_iters: int = doc(
        "Linear LR warm-down to 0: this many steps, or with a cap, this many mean step times before it.")
    matrix_lr: float = doc("Muon learning rate (2-D matrices in blocks, bigram.proj).")
    scalar_lr: float = doc("AdamW learning rate for vectors, scalars and control tensors.")
    embed_lr: float = doc("AdamW learning rate for tok_emb and bigram.embed.")
    muon_momentum: float = doc("Muon momentum after its warm-up.")
    muon_momentum_warmup_start: float = doc("Muon momentum at step 0.")
    muon_momentum_warmup_steps: int = doc("Steps of linear momentum warm-up.")
    muon_backend_steps: int = doc("Newton–Schulz iterations per Muon step.")
    muon_weight_decay: float = doc("Decoupled weight decay of the Muon parameters.")
    adam_beta1: float = doc("AdamW β1.")
    adam_beta2: float = doc("AdamW β2.")
    adam_eps: float = doc("AdamW ε.")
    adam_weight_decay: float = doc("AdamW weight decay.")
    grad_clip_norm: float = doc("Global gradient-norm clip (0 = off).")
    qat_enabled: bool = doc("Late QAT: int6 fake quantisation of matrix weights in training forwards.")
    qat_threshold: float = doc("QAT switches on once the LR multiplier falls below this.")
    qat_targets: Literal["all_linear", "as_stored"] = doc(
        "Which weights late QAT fake-quantises: `all_linear` = every linear at int6 (the reference); "
        "`as_stored` = exactly the weights `quant` stores at low bit width, at their scheme's bits.")
    ema_enabled: bool = doc("Keep an EMA of the weights (written as train/ema.pt).")
    ema_decay: float = doc("EMA decay per step.")
    val_loss_every: int = doc("Validate every N steps into the val curves (`runs/seed_N/dvclive`; 0 = never).")
    val_max_tokens: int = doc("Validation tokens used by that periodic validation (0 = all).")
    log_every: int = doc("A train-curve row every N steps (`runs/seed_N/dvclive`).")
    checkpoint_every: int = doc("Write a resume checkpoint every N steps (0 = only on SIGTERM).")
    compile: bool = doc("torch.compile the model.")
    out_dir: str = doc("Root of the per-seed run directories (`<out_dir>/seed_N/`); inside the workspace.")
    warmdown_frac: float = doc(
        "Warm-down length as a fraction of training (time or steps); 0 = use warmdown_iters.")
    min_lr: float = doc("Floor of the warm-down lr multiplier (the record's MIN_LR); 0 = decay to zero.")
    embed_weight_decay: float = doc(
        "AdamW weight decay of the embedding group (the frontier's EMBED_WD); the record uses adam_weight_decay.")
    muon_variant: MuonVariantConfig = doc("How Muon orthogonalises.")
    batch_layout: Literal["rows", "documents"] = doc(
        "`rows`: (B, seq_len) rows cut from the token stream, attention crossing document boundaries "
        "(SPEC §1); `documents`: one packed (1, N) row per rank, attention within each document "
        "(BOS to BOS, cut every seq_len), the 1.0611 record's order (docs/frontier.md); periodic "
        "validation then scores packed documents too. The evaluate stage keeps its windows.")

    def validate(self, path: str) -> None:
        _check(self.nproc_per_node >= 1 and 8 % self.nproc_per_node == 0, f"{path}.nproc_per_node",
               self.nproc_per_node, "world size must divide 8 (grad_accum_steps = 8 / world_size)")
        _check(self.seq_len >= 1, f"{path}.seq_len", self.seq_len, "must be >= 1")
        _check(self.train_batch_tokens % (8 * self.seq_len) == 0, f"{path}.train_batch_tokens",
               self.train_batch_tokens,
               f"must be a multiple of 8 x {path}.seq_len={self.seq_len} (8 micro-batches of whole sequences)")
        _check(self.iterations >= 1, f"{path}.iterations", self.iterations, "must be >= 1")
        for key in ("max_wallclock_seconds", "warmup_steps", "warmdown_iters"):
            _check(getattr(self, key) >= 0, f"{path}.{key}", getattr(self, key), "must be >= 0")
        _check(0 <= self.warmdown_frac <= 1, f"{path}.warmdown_frac", self.warmdown_frac, "must be in [0, 1]")
        _check(0 <= self.min_lr < 1, f"{path}.min_lr", self.min_lr, "must be in [0, 1)")
        _check(self.embed_weight_decay >= 0, f"{path}.embed_weight_decay", self.embed_weight_decay, "must be >= 0")
        _check(self.muon_backend_steps >= 1, f"{path}.muon_backend_steps", self.muon_backend_steps, "must be >= 1")
        _check(self.muon_momentum_warmup_steps >= 0, f"{path}.muon_momentum_warmup_steps",
               self.muon_momentum_warmup_steps, "must be >= 0")
        for key in ("matrix_lr", "scalar_lr", "embed_lr"):
            _check(getattr(self, key) >= 0, f"{path}.{key}", getattr(self, key), "must be >= 0")
        for key in ("muon_momentum", "muon_momentum_warmup_start", "adam_beta1", "adam_beta2", "ema_decay"):
            v = getattr(self, key)
            _check(0 <= v < 1, f"{path}.{key}", v, "must be in [0, 1)")
        _check(self.adam_eps > 0, f"{path}.adam_eps", self.adam_eps, "must be > 0")
        _check(self.grad_clip_norm >= 0, f"{path}.grad_clip_norm", self.grad_clip_norm, "must be >= 0")
        _check(0 <= self.qat_threshold <= 1, f"{path}.qat_threshold", self.qat_threshold, "must be in [0, 1]")
        for key in ("val_loss_every", "val_max_tokens", "log_every", "checkpoint_every"):
            _check(getattr(self, key) >= 0, f"{path}.{key}", getattr(self, key), "must be >= 0")


@dataclass(frozen=True)
class SwaConfig:
    """Weight averaging.  every/start_lrmul/max_snapshots shape the snapshots the
    train stage writes; method/last_k choose what the swa stage averages."""

    enabled: bool = doc("Take weight snapshots during the warm-down.")
    every: int = doc("Snapshot interval in steps.")
    start_lrmul: float = doc("Snapshots start once the LR multiplier falls below this.")
    max_snapshots: int = doc("Keep the most recent N snapshots (0 = all).")
    method: Literal["snapshots", "ema", "final"] = doc(
        "What the swa stage writes: `snapshots` (their uniform average), `ema` or `final` weights.")
    last_k: int = doc("Average only the last k kept snapshots (0 = all kept).")
    min_snapshots: int = doc(
        "With fewer snapshots than this (after `last_k`), the swa stage writes the final weights instead (the"
        " reference's rule: 2); `0` never falls back (a single snapshot is used alone, none is an error).")

    def validate(self, path: str) -> None:
        _check(self.every >= 1, f"{path}.every", self.every, "must be >= 1")
        _check(0 < self.start_lrmul <= 1, f"{path}.start_lrmul", self.start_lrmul, "must be in (0, 1]")
        for key in ("max_snapshots", "last_k", "min_snapshots"):
            _check(getattr(self, key) >= 0, f"{path}.{key}", getattr(self, key), "must be >= 0")
        _check(self.max_snapshots == 0 or self.last_k <= self.max_snapshots, f"{path}.last_k", self.last_k,
               f"cannot exceed {path}.max_snapshots={self.max_snapshots}")
        _check(self.method != "snapshots" or self.enabled, f"{path}.method", self.method,
               f"averaging snapshots needs {path}.enabled: true")


@dataclass(frozen=True)
class QuantSchemes:
    """Storage scheme (`pipeline.quant.schemes`) of each category's 2-D weights."""

    embed: str = doc(
        "Storage scheme of the embedding's 2-D weights (`tok_emb`, `lm_head`); any registered scheme "
        "(`pipeline/quant/schemes.py`): `int5`, `int6`, `int7` (per row, step rowmax/qmax), `int8` (per row, "
        "clipped at `quant.int8_clip_percentile`), `fp16`, `fp32`, `raw`.")
    mlp: str = doc("Storage scheme of the MLP's 2-D weights.")
    attn: str = doc("Storage scheme of attention's 2-D weights.")
    other: str = doc("Storage scheme of every other 2-D weight (e.g. `bigram.proj`).")

    def validate(self, path: str) -> None:
        from pipeline.quant.schemes import SCHEMES  # imports torch, which loading params otherwise does not need

        for f in dataclasses.fields(self):
            _check_scheme(getattr(self, f.name), f"{path}.{f.name}", SCHEMES)


@dataclass(frozen=True)
class ClipSigmas:
    """GPTQ's SD-clip multiple of each category's row std (`pipeline.quant.gptq`)."""

    embed: float = doc("SD-clip multiple for embedding rows (the 04-27 record's default 20.0; its 1.0611 run 14.0).")
    mlp: float = doc("SD-clip multiple for MLP matrices (the 04-27 record's default 10.0; its 1.0611 run 11.5).")
    attn: float = doc("SD-clip multiple for attention matrices (the 04-27 record: 13.0).")
    other: float = doc("SD-clip multiple for every other matrix (the 04-27 record: 12.85); control tensors "
                       "(gates) are not GPTQ-rounded.")

    def validate(self, path: str) -> None:
        for f in dataclasses.fields(self):
            _check(getattr(self, f.name) > 0, f"{path}.{f.name}", getattr(self, f.name), "must be > 0")


@dataclass(frozen=True)
class GptqConfig:
    """GPTQ rounding (`quant.method: gptq`) and its calibration (`pipeline.quant.gptq`, `calibration`)."""

    calibration_batches: int = doc(
        "Training batches whose activations build each layer's Hessian X^T X (the quantize stage reads the "
        "train shards).")
    calibration_batch_tokens: int = doc("Tokens per calibration batch (sequences of train.seq_len tokens).")
    block_size: int = doc("Columns per GPTQ block (the records: 128).")
    damp: float = doc("Added to H's diagonal, as a fraction of its mean (the records: 0.01).")
    clip: Literal["sd", "search"] = doc(
        "Row step: `sd` = clip_sigmas x row std / qmax (04-05), `search` = best of five |w| percentiles (03-25).")
    clip_sigmas: ClipSigmas = doc("SD-clip multiple of each category's row std.")
    hessian_clip_lambda: float = doc(
        "Hessian-aware SD-clip (04-06): each row's clip scaled by 1 + lambda x (row importance - 1); 0 = off.")

    def validate(self, path: str) -> None:
        _check(self.calibration_batches >= 1, f"{path}.calibration_batches", self.calibration_batches,
               "must be >= 1")
        _check(self.calibration_batch_tokens >= 1, f"{path}.calibration_batch_tokens",
               self.calibration_batch_tokens, "must be >= 1")
        _check(self.block_size >= 1, f"{path}.block_size", self.block_size, "must be >= 1")
        _check(self.damp > 0, f"{path}.damp", self.damp, "must be > 0")
        _check(self.hessian_clip_lambda >= 0, f"{path}.hessian_clip_lambda", self.hessian_clip_lambda,
               "must be >= 0")


@dataclass(frozen=True)
class LqerConfig:
    """LQER: a low-rank int4 correction of the quantisation error of the worst tensors (`pipeline.quant.lqer`)."""

    top_k: int = doc("Tensors corrected: the top_k integer-coded matrices by error norm (0 = off).")
    rank: int = doc("Rank of the correction A @ B.")
    asym: bool = doc(
        "Asymmetric packing (the 04-27 record): A int2 with one scale, B int4 per group; off: both "
        "int`factor_bits` per row.")
    asym_group: int = doc(
        "Group size of B's int4 scales in the asymmetric packing (B's size must be a multiple, else symmetric).")
    factor_bits: int = doc("Bits of A's and B's codes in the symmetric packing.")

    def validate(self, path: str) -> None:
        _check(self.top_k >= 0, f"{path}.top_k", self.top_k, "must be >= 0")
        _check(self.rank >= 1, f"{path}.rank", self.rank, "must be >= 1")
        _check(self.asym_group >= 1, f"{path}.asym_group", self.asym_group, "must be >= 1")
        _check(2 <= self.factor_bits <= 8, f"{path}.factor_bits", self.factor_bits, "must be in [2, 8]")


@dataclass(frozen=True)
class CodecConfig:
    """Settings of the compressors other than zstd (`pipeline.quant.compressors`)."""

    lzma_preset: int = doc("lzma preset (0-9; the 03-25 record: 9).")
    brotli_quality: int = doc("brotli quality (0-11; the records: 11).")
    brotli_window: int = doc("brotli window bits lgwin (10-24; brotli's default 22).")
    shuffle_stride: int = doc("Byte-shuffle stride of the *-shuffle compressors (the 04-01 record: 2).")
    similarity_sort: bool = doc(
        "Per-group compressors: reorder rows of similar int8 matrices (greedy L1 chain), undone on load.")

    def validate(self, path: str) -> None:
        _check(0 <= self.lzma_preset <= 9, f"{path}.lzma_preset", self.lzma_preset, "must be in [0, 9]")
        _check(0 <= self.brotli_quality <= 11, f"{path}.brotli_quality", self.brotli_quality, "must be in [0, 11]")
        _check(10 <= self.brotli_window <= 24, f"{path}.brotli_window", self.brotli_window, "must be in [10, 24]")
        _check(1 <= self.shuffle_stride <= 255, f"{path}.shuffle_stride", self.shuffle_stride, "must be in [1, 255]")


@dataclass(frozen=True)
class QuantConfig:
    """Mixed per-row quantisation and compressed packing (SPEC §4)."""

    method: str = doc(
        "Rounding method of the integer schemes (`pipeline/quant/methods.py`): `rtn` rounds to nearest.")
    schemes: QuantSchemes = doc("Storage scheme of each category's 2-D weights.")
    non_matrix_scheme: str = doc(
        "Storage scheme of large float tensors that are not 2-D (vectors, conv kernels), whatever their "
        "category.")
    control_matrix_scheme: str = doc(
        "Storage scheme of 2-D control tensors (gates, mixes) of any size; `fp32` = the size rule (fp16 when "
        "small, else fp32); `int8row` = the 04-27 record's per-row int8 gates.")
    compressor: str = doc(
        "Payload compressor (`pipeline/quant/compressors.py`); the artifact header records it, so evaluate "
        "reads any registered one.")
    keep_float_max_numel: int = doc(
        "Tensors with at most this many elements stay in float (fp16, as the reference and SPEC §7's golden "
        "figure require); larger control tensors stay fp32.")
    int8_clip_percentile: float = doc("int8 rows are clipped at this percentile of |w|.")
    zstd_level: int = doc("zstd compression level of the artifact.")
    cap_bytes: int = doc("Size cap: compressed model + code bytes (decimal bytes).")
    allow_oversize: bool = doc("Keep an artifact over the cap instead of failing.")
    gptq: GptqConfig = doc("GPTQ rounding (`method: gptq`) and its calibration.")
    lqer: LqerConfig = doc("LQER low-rank correction of the worst-quantised matrices.")
    codec: CodecConfig = doc("Settings of the compressors other than zstd.")
    control_matrix_suffixes: tuple[str, ...] = doc(
        "Only the 2-D control tensors whose names end in one of these take `control_matrix_scheme` (the "
        "04-27 record: `.attn_gate_w`; the rest follow the size rule); empty = every 2-D control tensor.", ())

    def validate(self, path: str) -> None:
        # Imported here: the registries import torch and zstandard, which loading params otherwise does not need.
        from pipeline.quant.compressors import COMPRESSORS
        from pipeline.quant.methods import METHODS
        from pipeline.quant.schemes import SCHEMES

        _check_scheme(self.non_matrix_scheme, f"{path}.non_matrix_scheme", SCHEMES)
        _check_scheme(self.control_matrix_scheme, f"{path}.control_matrix_scheme", SCHEMES)
        _check(self.method in METHODS, f"{path}.method", self.method,
               f"not a registered method ({', '.join(METHODS)})")
        _check(self.compressor in COMPRESSORS, f"{path}.compressor", self.compressor,
               f"not a registered compressor ({', '.join(COMPRESSORS)})")
        needs = COMPRESSORS[self.compressor].check_available
        if needs is not None:
            from pipeline.quant.codecs import CodecUnavailable

            try:
                needs()
            except CodecUnavailable as exc:
                _check(False, f"{path}.compressor", self.compressor, str(exc))
        _check(self.keep_float_max_numel >= 0, f"{path}.keep_float_max_numel", self.keep_float_max_numel,
               "must be >= 0")
        _check(0 < self.int8_clip_percentile <= 100, f"{path}.int8_clip_percentile", self.int8_clip_percentile,
               "must be in (0, 100]")
        _check(1 <= self.zstd_level <= 22, f"{path}.zstd_level", self.zstd_level, "must be in [1, 22]")
        _check(self.cap_bytes >= 1, f"{path}.cap_bytes", self.cap_bytes, "must be >= 1")


@dataclass(frozen=True)
class ScoreFirstTttConfig:
    """Score-first TTT (2026-03-23 record): score a chunk of the stream, then SGD on it."""

    chunk_tokens: int = doc("Validation tokens per chunk: scored with sliding windows, then trained on.", 32768)
    lr: float = doc("SGD learning rate (cosine over the chunks).", 0.002)
    momentum: float = doc("SGD momentum.", 0.9)
    epochs: int = doc("Passes over each scored chunk.", 3)
    batch_seqs: int = doc("Sequences of eval.seq_len per SGD step.", 32)
    grad_clip: float = doc("Gradient-norm clip (0 = none).", 1.0)
    freeze_blocks: int = doc("The first N blocks stay frozen.", 2)

    def validate(self, path: str) -> None:
        _check(self.epochs >= 0 and self.batch_seqs >= 1, path, f"epochs={self.epochs} batch_seqs={self.batch_seqs}",
               "needs epochs >= 0 and batch_seqs >= 1")


@dataclass(frozen=True)
class PhasedTttConfig:
    """Phased TTT (1.0611 record): per-document LoRA, scored chunk by chunk, plus global SGD phases."""

    chunk_size: int = doc("Targets per chunk of a document: scored, then the document's LoRA trains on them.", 48)
    batch_docs: int = doc("Documents adapted together (one LoRA slice each); batches are formed by length.", 64)
    lora_rank: int = doc("LoRA rank.", 96)
    lora_alpha: float = doc("LoRA alpha: the update is scaled by alpha/rank.", 144.0)
    k_lora: bool = doc("A LoRA on the key projection too.", True)
    mlp_lora: bool = doc("A LoRA on the MLP too.", True)
    o_lora: bool = doc("A LoRA on the attention output projection too.", True)
    warm_start_a: bool = doc("Keep A across per-batch resets (only B is zeroed).", True)
    optimizer: Literal["adam", "sgd"] = doc("LoRA optimiser: `adam` (AdamW) or `sgd`.", "adam")
    lora_lr: float = doc("LoRA optimiser learning rate.", 0.0001)
    beta1: float = doc("LoRA AdamW beta1 (SGD: momentum).", 0.0)
    beta2: float = doc("LoRA AdamW beta2.", 0.999)
    weight_decay: float = doc("LoRA optimiser weight decay.", 1.0)
    grad_steps: int = doc("Optimiser steps per chunk.", 1)
    prefix_docs: int = doc("Documents scored before the global phases end (0 = no global SGD).", 2000)
    num_phases: int = doc("Global SGD phases over those documents.", 1)
    global_lr: float = doc("Global SGD learning rate on the already-scored documents at each phase boundary.", 0.001)
    global_momentum: float = doc("Global SGD momentum.", 0.9)
    global_epochs: int = doc("Global SGD passes per phase.", 1)
    global_chunk_tokens: int = doc("Tokens per global SGD chunk.", 32768)
    global_batch_seqs: int = doc("Sequences per global SGD step.", 32)
    global_warmup_start_lr: float = doc("Global SGD warm-up start learning rate.", 0.0)
    global_warmup_chunks: int = doc("Global SGD warm-up chunks (0 = none).", 0)
    global_grad_clip: float = doc("Global SGD gradient-norm clip.", 1.0)

    def validate(self, path: str) -> None:
        for key in ("batch_docs", "lora_rank", "grad_steps", "num_phases", "global_batch_seqs", "global_chunk_tokens"):
            _check(getattr(self, key) >= 1, f"{path}.{key}", getattr(self, key), "must be >= 1")
        _check(self.prefix_docs >= 0, f"{path}.prefix_docs", self.prefix_docs, "must be >= 0")


@dataclass(frozen=True)
class TttConfig:
    """Legal test-time training during evaluation (pipeline/evaluate/ttt.py)."""

    mode: Literal["off", "score_first", "phased"] = doc(
        "Test-time training: `off`, `score_first` (SGD on each chunk after scoring it) or `phased` "
        "(per-document LoRA, the 1.0611 record).", "off")
    budget_seconds: float = doc("Evaluation seconds allowed (the track's 600); the seconds spent are recorded "
                                "and checked.", 600.0)
    score_first: ScoreFirstTttConfig = doc("Score-first TTT.", ScoreFirstTttConfig())
    phased: PhasedTttConfig = doc("Phased TTT.", PhasedTttConfig())

    def validate(self, path: str) -> None:
        _check(self.budget_seconds > 0, f"{path}.budget_seconds", self.budget_seconds, "must be > 0")


@dataclass(frozen=True)
class EvalConfig:
    """Standard and sliding-window bits-per-byte (SPEC §5)."""

    seq_len: int = doc("Evaluation window length.")
    stride: int = doc("Sliding-window step: each window after the first scores its last `stride` targets.")
    batch_seqs: int = doc("Windows per forward batch.")
    max_tokens: int = doc("Validation tokens scored (0 = all).")
    stream: Literal["truncated", "full"] = doc(
        "`truncated`: the validation stream is cut to a multiple of `eval.seq_len` targets before any "
        "evaluation, the sliding window included, as the reference scores it (62,021,632 targets); `full`: "
        "every target is scored.")
    ttt: TttConfig = doc("Test-time training (off in the record profile).", TttConfig())

    def validate(self, path: str) -> None:
        _check(self.seq_len >= 1, f"{path}.seq_len", self.seq_len, "must be >= 1")
        _check(1 <= self.stride <= self.seq_len, f"{path}.stride", self.stride,
               f"must be in [1, {path}.seq_len={self.seq_len}]")
        _check(self.batch_seqs >= 1, f"{path}.batch_seqs", self.batch_seqs, "must be >= 1")
        _check(self.max_tokens >= 0, f"{path}.max_tokens", self.max_tokens, "must be >= 0")
        _check(self.ttt.score_first.chunk_tokens >= self.seq_len, f"{path}.ttt.score_first.chunk_tokens",
               self.ttt.score_first.chunk_tokens, f"must be >= {path}.seq_len={self.seq_len}")
        _check(1 <= self.ttt.phased.chunk_size <= self.seq_len, f"{path}.ttt.phased.chunk_size",
               self.ttt.phased.chunk_size, f"must be in [1, {path}.seq_len={self.seq_len}]")


@dataclass(frozen=True)
class ReportConfig:
    """Multi-seed verdict against the previous record (SPEC §6)."""

    baseline_bpb: float = doc("Previous record score to beat.")
    min_improvement_nats: float = doc("Required mean improvement, in nats per byte (bpb × ln 2).")
    p_threshold: float = doc("Required p-value of the one-sided t-test over seeds.")

    def validate(self, path: str) -> None:
        _check(self.baseline_bpb > 0, f"{path}.baseline_bpb", self.baseline_bpb, "must be > 0")
        _check(self.min_improvement_nats >= 0, f"{path}.min_improvement_nats", self.min_improvement_nats,
               "must be >= 0")
        _check(0 < self.p_threshold < 1, f"{path}.p_threshold", self.p_threshold, "must be in (0, 1)")


@dataclass(frozen=True)
class Params:
    """Everything in params.yaml."""

    seeds: tuple[int, ...] = doc("Random seeds; each gets its own train, swa, quantize and evaluate stages.")
    data: DataConfig = doc("Where the corpus comes from, how it is split and sharded.")
    model: ModelConfig = doc("The GPT's architecture.")
    train: TrainConfig = doc("Optimisers, batch, schedule and training mechanics.")
    swa: SwaConfig = doc("Weight averaging.")
    quant: QuantConfig = doc("Quantisation and packing of the artifact.")
    eval: EvalConfig = doc("Evaluation.")
    report: ReportConfig = doc("The multi-seed verdict.")

    def validate(self, path: str = "") -> None:
        """The seeds, and the checks that span groups (each group has checked itself already)."""
        _check(len(self.seeds) > 0, "seeds", list(self.seeds), "at least one seed is required")
        _check(len(set(self.seeds)) == len(self.seeds), "seeds", list(self.seeds), "seeds must be distinct")
        for i, s in enumerate(self.seeds):
            _check(s >= 0, f"seeds[{i}]", s, "must be >= 0")
            check_seed(s, f"seeds[{i}]")
        tok = self.data.tokenizer
        _check(self.model.vocab_size == tok.vocab_size, "model.vocab_size", self.model.vocab_size,
               f"must equal data.tokenizer.vocab_size={tok.vocab_size}")
        _check(self.swa.method != "ema" or self.train.ema_enabled, "swa.method", self.swa.method,
               "needs train.ema_enabled: true")

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


def validate(p: Any) -> None:
    """Every consistency check of `p` (a `Params`, or any tree of config dataclasses); raises
    ConfigError naming the key at fault.

    Any dataclass in the tree with a ``validate(self, path)`` method is checked
    with its dotted key path, its nested groups before itself, so a group's own
    checks (and `Params.validate`'s cross-group checks) can rely on the groups
    inside it being valid.  A new group needs nothing more than that method.
    """
    bad = _non_finite(p, "")
    if bad is not None:
        _check(False, bad, _dotted_get(p, bad), "must be a finite number")
    _validate_tree(p, "")


def _validate_tree(obj: Any, path: str) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _validate_tree(value, f"{path}.{f.name}" if path else f.name)
    own = getattr(obj, "validate", None)
    if own is not None:
        own(path)


def _check_scheme(value: str, key: str, schemes: dict[str, Any]) -> None:
    _check(value in schemes, key, value, f"not a registered storage scheme ({', '.join(schemes)})")


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


def check_hub_repo(repo: str, key: str = "data.sources.fineweb.repo") -> None:
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
