"""conf/profile/frontier.yaml: the 1.0611 record's whole configuration (data, model, training,
post-training, evaluation), composed as `dvc exp run -S profile=frontier` composes it; its size
through `pgolf model-info`; its quantisation packing a small model of the same kind.

The values are pinned here; scripts/parity/frontier_profile_parity.py reads them off the record
(README reproduce command, train_seed42.log, train_gpt.py defaults) in the mirror."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from pipeline.config import ConfigError, Params, load_params, replace_path, validate
from pipeline.model import GPT
from pipeline.quant.artifact import HEADER_BYTES, MAGIC_PREFIX, pack_artifact, read_artifact
from pipeline.quant.calibration import collect_hessians
from pipeline.quant.compressors import get_compressor
from pipeline.quant.gptq import gptq_quantize
from pipeline.quant.mixed import dequantize_state_dict
from pipeline.quant.rtn import RoundToNearest
from pipeline.quant.schemes import get_scheme
from stages.cli import app
from tests.test_profiles import compose

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def frontier_file(tmp_path_factory) -> Path:
    return compose(tmp_path_factory.mktemp("frontier"), "profile=frontier")


@pytest.fixture(scope="module")
def frontier(frontier_file) -> Params:
    return load_params(frontier_file)


def test_frontier_profile_starts_from_the_record():
    text = (ROOT / "conf" / "profile" / "frontier.yaml").read_text(encoding="utf-8")
    assert yaml.safe_load(text)["defaults"] == ["record", "_self_"]


def test_frontier_model_is_the_records(frontier: Params):
    # train_seed42.log's hyperparameters, model part.
    m = frontier.model
    assert (m.vocab_size, m.num_layers, m.model_dim, m.num_heads, m.num_kv_heads, m.mlp_mult) == (8192, 11, 512, 8, 4, 4)
    assert (m.mlp_leaky_slope, m.xsa_last_n, m.q_gain_init, m.rope_dims, m.rope_ref_len) == (0.5, 11, 5.0, 16, 2048)
    assert m.skip_gates and m.smear and m.smear_window == 12 and m.smear_bos_mask
    assert (m.attn_gate.enabled, m.attn_gate.window, m.attn_gate.scale) == (True, 12, 0.5)
    assert (m.lanes.start_layer, m.lanes.final) == (8, "mean")
    r = m.recurrence
    assert (r.num_loops, r.loop_start, r.loop_end, r.enable_at) == (2, 3, 5, 0.35)
    assert m.bigram_buckets == 0 and m.canon.placements == ""
    assert m.fused_kernels == "auto"  # FUSED_CE_ENABLED=1 and MLP.use_fused: the Triton kernels on the GPU


def test_the_record_profile_leaves_the_fused_kernels_off_and_smoke_takes_the_frontiers(record_params: Params,
                                                                                        tmp_path):
    # The record profile's golden figures are the plain path's.  The smoke profile takes the
    # frontier's `auto` (the plain path on CI's CPU), so the export test covers metadata holding
    # two equal `auto` strings (pipeline/quant/artifact.py `_interned`).
    assert record_params.model.fused_kernels == "off"
    assert load_params(compose(tmp_path, "profile=smoke")).model.fused_kernels == "auto"


def test_frontier_training_is_the_records(frontier: Params):
    t = frontier.train
    assert (t.matrix_lr, t.scalar_lr, t.embed_lr) == (0.026, 0.02, 0.03)
    assert (t.muon_momentum, t.muon_momentum_warmup_start, t.muon_momentum_warmup_steps) == (0.97, 0.92, 1500)
    assert (t.muon_weight_decay, t.adam_weight_decay, t.embed_weight_decay) == (0.095, 0.02, 0.085)
    assert (t.adam_beta1, t.adam_beta2, t.grad_clip_norm) == (0.9, 0.99, 0.3)
    assert (t.warmdown_frac, t.min_lr, t.warmup_steps) == (0.85, 0.1, 20)
    assert (t.ema_enabled, t.ema_decay, t.qat_enabled) == (True, 0.9965, False)
    v = t.muon_variant
    assert (v.ns, v.row_normalize, v.momentum_dtype, t.muon_backend_steps) == ("polar_express", True, "bf16", 5)
    assert t.max_wallclock_seconds == 599.5 and t.train_batch_tokens == 786432
    assert t.batch_layout == "documents"  # DocumentPackingLoader + flash_attn_varlen_func
    assert frontier.swa.method == "ema" and not frontier.swa.enabled


def test_frontier_model_info_prints_the_records_parameter_count(frontier_file, frontier: Params):
    # model_params:35945671 in the record's train_seed42.log.
    result = CliRunner().invoke(app, ["model-info", "-p", str(frontier_file)])
    assert result.exit_code == 0, result.output
    total = 35_945_671
    assert result.output.strip().splitlines()[-1].split() == ["total", f"{total:,}"]
    with torch.device("meta"):
        model = GPT(frontier.model)
    assert sum(p.numel() for p in model.parameters()) == total
    # 8 skip weights and gates (the looped order pairs 8 encoder with 9 decoder passes).
    assert model.skip_weights.shape == model.skip_gates.shape == (8, 512)


def test_frontier_data_is_the_records_caseops_sp8192(frontier: Params):
    # CASEOPS_ENABLED=1, VOCAB_SIZE=8192; prepare_caseops_data.py: docs_selected.jsonl, SHARD_TOKENS, sidecar;
    # 50,000 validation documents as the log's ttt_phased total_docs.
    d = frontier.data
    assert (d.source, d.sources.fineweb.mode, d.val_docs, d.max_docs, d.shard_tokens) == (
        "fineweb", "docs", 50_000, 0, 10_000_000)
    t = d.tokenizer
    assert (t.spec, t.vocab_size, t.model_path) == ("sp8192", 8192, "")
    # The shipped tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model's trainer_spec.
    assert (t.character_coverage, t.byte_fallback, t.split_digits, t.normalization_rule_name,
            t.add_dummy_prefix, t.hard_vocab_limit) == (0.999, True, True, "nmt_nfkc", False, False)
    e = d.encoding
    assert (e.transform, e.byte_sidecar, e.sidecar_whitespace, e.check_split) == ("caseops", True, "record", True)


def test_frontier_quantisation_is_the_records(frontier: Params):
    q = frontier.quant
    assert (q.method, q.compressor, q.allow_oversize, q.cap_bytes) == ("gptq", "pergroup-brotli", False, 16_000_000)
    assert dataclasses.astuple(q.schemes) == ("int7", "int6", "int6", "int6")  # EMBED_BITS=7, MATRIX_BITS=6
    assert (q.control_matrix_scheme, q.control_matrix_suffixes) == ("int8row", (".attn_gate_w",))
    assert q.keep_float_max_numel == 65_536  # the record's fp16 passthrough: numel <= 65536
    g = q.gptq
    assert (g.calibration_batches, g.calibration_batch_tokens, g.block_size, g.damp, g.clip) == (
        16, 786_432, 128, 0.01, "sd")
    assert dataclasses.astuple(g.clip_sigmas) == (14.0, 11.5, 13.0, 12.85)  # embed, mlp, attn, matrix
    assert g.hessian_clip_lambda == 0.0
    assert dataclasses.astuple(q.lqer) == (3, 4, True, 64, 4)  # top_k, rank, asym, asym_group, factor_bits
    assert (q.codec.brotli_quality, q.codec.brotli_window, q.codec.similarity_sort) == (11, 24, True)


def test_frontier_params_validate_and_the_records_lrzip_is_one_override_away(frontier: Params):
    validate(frontier)  # composed, loaded and validated without the lrzip program
    if shutil.which("lrzip"):
        assert replace_path(frontier, "quant.compressor", "pergroup-lrzip").quant.compressor == "pergroup-lrzip"
    else:
        with pytest.raises(ConfigError, match="quant.compressor: the lrzip compressors need the external 'lrzip'"):
            replace_path(frontier, "quant.compressor", "pergroup-lrzip")


def test_frontier_evaluation_is_the_records_phased_ttt(frontier: Params):
    e = frontier.eval
    assert (e.seq_len, e.stride, e.stream) == (2048, 64, "truncated")
    assert (e.ttt.mode, e.ttt.budget_seconds) == ("phased", 600.0)
    ph = e.ttt.phased
    assert (ph.chunk_size, ph.batch_docs, ph.lora_rank, ph.lora_alpha, ph.warm_start_a) == (48, 64, 80, 144.0, True)
    assert (ph.k_lora, ph.mlp_lora, ph.o_lora, ph.optimizer, ph.grad_steps) == (True, True, True, "adam", 1)
    assert (ph.lora_lr, ph.beta1, ph.beta2, ph.weight_decay) == (0.0001, 0.0, 0.99, 0.5)
    assert (ph.prefix_docs, ph.num_phases) == (2500, 3)
    assert (ph.global_lr, ph.global_momentum, ph.global_epochs, ph.global_chunk_tokens, ph.global_batch_seqs) == (
        0.001, 0.9, 1, 32768, 32)
    assert (ph.global_warmup_start_lr, ph.global_warmup_chunks, ph.global_grad_clip) == (0.0, 0, 1.0)
    assert frontier.report.baseline_bpb == 1.0810 and frontier.seeds == (42, 0, 1234)


def _small_frontier_model(frontier: Params) -> GPT:
    """Every frontier switch on, at toy sizes, with random weights (zero-initialised gates included)."""
    cfg = dataclasses.replace(frontier.model, vocab_size=512, model_dim=64, num_heads=4, num_kv_heads=2,
                              num_layers=6, rope_dims=8, rope_ref_len=64,
                              lanes=dataclasses.replace(frontier.model.lanes, start_layer=4))
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape) * 0.05)
    return model.eval()


def test_frontier_quantisation_packs_and_round_trips(frontier: Params, tmp_path):
    model = _small_frontier_model(frontier)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    calib = collect_hessians(model, [torch.randint(0, 512, (2, 64), generator=torch.Generator().manual_seed(i))
                                     for i in range(2)])
    # The frontier's quantisation exactly, but for the fp16 threshold: the toy matrices are all below the
    # record's 65,536 elements, so they would all be kept.
    cfg = dataclasses.replace(frontier.quant, keep_float_max_numel=1024)
    blob, stats = pack_artifact(state, cfg, {"profile": "frontier"}, {"hessians": calib.hessians})
    assert blob[:7] == MAGIC_PREFIX and blob[7] == get_compressor("pergroup-brotli").code
    assert (stats.method, stats.compressor, stats.format_version) == ("gptq", "pergroup-brotli", 2)
    tensors = torch.load(io.BytesIO(get_compressor("pergroup-brotli").decompress(blob[HEADER_BYTES:])),
                         weights_only=True)["tensors"]
    schemes = {k: e["scheme"] for k, e in tensors.items()}
    assert schemes["tok_emb.weight"] == "int7"
    assert {schemes[k] for k in state if ".mlp." in k or ".attn.c_" in k or ".attn.proj" in k} == {"int6"}
    gates = [k for k in state if k.endswith(".attn_gate_w")]
    assert len(gates) == 6 and all(schemes[k] == "int8row" for k in gates)
    # The other 2-D control tensors stay fp16, as the record passes them through.
    assert {schemes[k] for k in ("skip_weights", "skip_gates", "blocks.0.resid_mix", "smear.gate")} == {"fp16"}

    # Gates: per-row int8 on the row max, as the record's _quantize_gate_int8_row, not GPTQ.
    for k in gates:
        rtn = RoundToNearest().encode(k, state[k], get_scheme("int8row"), cfg, {})
        assert torch.equal(tensors[k]["data"], rtn["data"]) and torch.equal(tensors[k]["scale"], rtn["scale"])
    # Matrices: GPTQ on the calibrated Hessian with the category's clip (MLP 11.5 sigma, int6).
    key = "blocks.2.mlp.fc.weight"
    codes, step = gptq_quantize(state[key], calib.hessians[key], 31, block_size=128, damp=0.01, clip="sd",
                                clip_sigmas=11.5, hessian_lambda=0.0)
    assert torch.equal(tensors[key]["data"].float(), codes.float())
    # LQER: the 3 integer-coded weight matrices with the largest error, never a gate.
    lqer = {k for k, e in tensors.items() if "lqer" in e}
    errors = {k: float((state[k].float() - get_scheme(e["scheme"]).decode(e, torch.float32, state[k].shape)).norm())
              for k, e in tensors.items() if e["scheme"] in ("int6", "int7")}  # the codes alone, before LQER
    assert lqer == set(sorted(errors, key=errors.get, reverse=True)[:3])

    # The artifact reads back to exactly the dequantised tensors, in the original names, dtypes and shapes.
    path = tmp_path / "model.int6.ptz"
    path.write_bytes(blob)
    back, meta = read_artifact(path)
    assert meta == {"profile": "frontier"} and back.keys() == state.keys()
    expected = dequantize_state_dict(tensors)
    for k, t in state.items():
        assert back[k].dtype == t.dtype and back[k].shape == t.shape, k
        assert torch.equal(back[k], expected[k]), k
    rel = {k: float((back[k].float() - t.float()).norm() / t.float().norm()) for k, t in state.items()
           if schemes[k] in ("int6", "int7")}
    # SD-clip steps of 11.5-14 sigma / qmax round with an rms error near 0.12 sigma (int6); GPTQ spends
    # more weight error for less output error: about 0.2 here, nothing near a failed reconstruction.
    assert max(rel.values()) < 0.3, rel
    model.load_state_dict(back)
    assert torch.isfinite(model.logits(torch.randint(0, 512, (1, 32)))).all()
