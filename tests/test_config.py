"""params.yaml -> Params: the record values, and every kind of bad input named by key path."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from pipeline.config import ConfigError, load_params, params_from_dict, replace_path
from tests.conftest import ROOT


@pytest.fixture()
def raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_record_values_match_spec(record_params):
    p = record_params
    assert p.seeds == (1337, 1335, 1336)
    m = p.model
    assert (m.vocab_size, m.num_layers, m.model_dim, m.num_heads, m.num_kv_heads, m.mlp_mult) == (1024, 11, 512, 8, 4, 3)
    assert m.head_dim == 64 and m.mlp_hidden == 1536
    assert (m.rope_dims, m.rope_ref_len, m.xsa_last_n, m.bigram_buckets, m.bigram_dim) == (16, 1024, 4, 2048, 128)
    assert m.canon.placements == "AC" and m.canon.kernel == 3 and m.canon.last_n == 5
    assert m.canon.delta_gate and m.canon.delta_gate_init == -4.0
    t = p.train
    assert (t.train_batch_tokens, t.seq_len, t.iterations, t.warmdown_iters, t.warmup_steps) == (786432, 2048, 7000, 3000, 20)
    assert (t.matrix_lr, t.scalar_lr, t.embed_lr, t.grad_clip_norm, t.qat_threshold) == (0.025, 0.025, 0.035, 0.3, 0.1)
    assert t.adam_eps == 1e-8 and t.max_wallclock_seconds == 600.0 and t.nproc_per_node == 8
    assert (p.swa.every, p.swa.start_lrmul, p.swa.max_snapshots) == (50, 0.2, 12)
    assert p.quant.zstd_level == 22 and p.quant.cap_bytes == 16_000_000
    assert (p.eval.seq_len, p.eval.stride, p.eval.batch_seqs) == (2048, 64, 32)
    assert p.report.baseline_bpb == 1.1428
    # Where the reference's behaviour produced the score, the record reproduces it.
    assert (m.embed_dtype, m.smear_bos_mask, m.canon.d_after_relu) == ("bf16", False, False)
    assert (p.eval.stream, p.swa.min_snapshots, p.data.tokenizer.train_from) == ("truncated", 2, "all")
    assert p.data.val_docs == 50_000 and p.data.shard_tokens == 100_000_000


def test_params_are_frozen(record_params):
    with pytest.raises(dataclasses.FrozenInstanceError, match="num_layers"):
        record_params.model.num_layers = 3  # type: ignore[misc]
    assert record_params.model.num_layers == 11


def test_digest_is_stable_and_sensitive(record_params):
    assert record_params.digest() == load_params(ROOT / "params.yaml").digest()
    assert replace_path(record_params, "eval.stride", 32).digest() != record_params.digest()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("model.num_heads", 7, "model.num_heads: must divide model.model_dim=512 (got 7)"),
        ("model.num_kv_heads", 3, "model.num_kv_heads: must divide model.num_heads=8 (got 3)"),
        ("model.rope_dims", 80, "model.rope_dims: must be <= head_dim=64 (got 80)"),
        ("train.nproc_per_node", 3, "train.nproc_per_node: world size must divide 8"),
        ("model.vocab_size", 2048, "model.vocab_size: must equal data.tokenizer.vocab_size=1024"),
        ("eval.stride", 4096, "eval.stride: must be in [1, eval.seq_len=2048]"),
        ("model.canon.placements", "AX", "model.canon.placements: must be distinct letters"),
        ("data.source", "web", "data.source: must be one of 'embedded' | 'files' | 'fineweb' | 'shards'"),
        ("model.embed_dtype", "fp16", "model.embed_dtype: must be one of 'bf16' | 'fp32'"),
        ("eval.stream", "tail", "eval.stream: must be one of 'truncated' | 'full'"),
        ("data.tokenizer.train_from", "val", "data.tokenizer.train_from: must be one of 'all' | 'train'"),
        ("swa.min_snapshots", -1, "swa.min_snapshots: must be >= 0"),
    ],
)
def test_inconsistent_values_are_rejected_with_key_path(raw, path, value, message):
    node = raw
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    with pytest.raises(ConfigError) as err:
        params_from_dict(raw)
    assert message in str(err.value)
    assert repr(value) in str(err.value)


def test_odd_head_dim_is_rejected(raw):
    raw["model"]["model_dim"] = 24
    raw["model"]["num_heads"] = 8
    raw["model"]["num_kv_heads"] = 4
    with pytest.raises(ConfigError, match="odd head_dim=3"):
        params_from_dict(raw)


def test_unknown_key_wrong_type_and_missing_key(raw):
    bad = copy.deepcopy(raw)
    bad["train"]["lerning_rate"] = 0.1
    with pytest.raises(ConfigError, match=r"train\.lerning_rate: unknown key \(value 0\.1\)"):
        params_from_dict(bad)
    bad = copy.deepcopy(raw)
    bad["model"]["num_layers"] = "eleven"
    with pytest.raises(ConfigError, match=r"model\.num_layers: expected an integer, got 'eleven'"):
        params_from_dict(bad)
    bad = copy.deepcopy(raw)
    bad["model"]["smear"] = 1
    with pytest.raises(ConfigError, match=r"model\.smear: expected true/false, got 1"):
        params_from_dict(bad)
    bad = copy.deepcopy(raw)
    del bad["swa"]["every"]
    with pytest.raises(ConfigError, match=r"swa\.every: missing"):
        params_from_dict(bad)


def test_load_params_names_the_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("seeds: [1]\n")
    with pytest.raises(ConfigError, match=rf"{f}: data: missing"):
        load_params(f)
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "none.yaml")
