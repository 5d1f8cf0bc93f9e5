"""Training memory worked out from the compiled graph: what is saved, and how it scales."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline.activation_memory import MemoryEstimate, estimate_training_memory, state_bytes, trace_saved_bytes
from pipeline.model import GPT
from tests.conftest import tiny_model_config

pytestmark = pytest.mark.slow  # each trace builds and walks a training graph
CPU = torch.device("cpu")
BATCH, SEQ_LEN = 3, 32


@pytest.fixture(scope="module")
def model() -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_model_config())


@pytest.fixture(scope="module")
def bf16(model) -> MemoryEstimate:
    return estimate_training_memory(model, BATCH, SEQ_LEN, torch.bfloat16, CPU)


def test_under_bf16_autocast_no_fp32_activation_is_saved(model, bf16):
    per_token_fp32 = bf16.saved_per_seq_by_dtype.get("float32", 0) / SEQ_LEN
    # Only per-token statistics (RMS norm reciprocals, attention log-sum-exp) stay fp32:
    # less than one fp32 vector of model width per token for the whole model.
    assert 0 < per_token_fp32 < 4 * model.cfg.model_dim
    assert bf16.saved_per_seq_by_dtype["bfloat16"] > 20 * bf16.saved_per_seq_by_dtype["float32"]
    # Without autocast every saved tensor is fp32, and one sequence saves more.
    fp32 = trace_saved_bytes(model, 1, SEQ_LEN, None, CPU)
    assert "bfloat16" not in fp32
    assert sum(fp32.values()) > 1.5 * (bf16.saved_bytes_fixed + bf16.saved_bytes_per_seq)


def _state_bytes_written_out(m) -> int:
    """fp32 weights + grads for every parameter, Muon's momentum for the block and bigram matrices,
    AdamW's two moments for the rest (SPEC §3's optimiser split)."""
    kv = m.num_kv_heads * m.head_dim
    matrices = m.num_layers * (2 * m.model_dim**2 + 2 * m.model_dim * kv + 2 * m.model_dim * m.mlp_hidden)
    matrices += m.model_dim * m.bigram_dim
    total = sum(p.numel() for p in GPT(m).parameters())
    return 4 * (3 * matrices + 4 * (total - matrices))


def test_saved_bytes_grow_linearly_with_the_batch(model, bf16):
    # The estimate extrapolates from batches 1 and 2; batches 3 and 5 are traced here directly.
    measured = {b: sum(trace_saved_bytes(model, b, SEQ_LEN, torch.bfloat16, CPU).values()) for b in (3, 5)}
    assert bf16.saved_bytes == measured[3]
    assert estimate_training_memory(model, 5, SEQ_LEN, torch.bfloat16, CPU).saved_bytes == measured[5]
    assert 2 * bf16.saved_bytes_per_seq == measured[5] - measured[3]
    assert bf16.total_bytes == _state_bytes_written_out(model.cfg) + measured[3]
    assert bf16.saved_bytes_fixed > 0  # the bf16 weight copies
    assert model.training  # the estimate traced in training mode and left the mode as it was


def test_state_bytes_of_the_record_model(record_params):
    """Weights and gradients, plus Muon's momentum (matrices) or AdamW's two moments (the rest), all fp32
    but the two embedding tables, which the record stores in bf16 (weight, gradient and moments: 2 bytes)."""
    m = record_params.model
    kv = m.num_kv_heads * m.head_dim
    per_block = 2 * m.model_dim**2 + 2 * m.model_dim * kv + 2 * m.model_dim * m.mlp_hidden
    matrices = m.num_layers * per_block + m.model_dim * m.bigram_dim  # + bigram.proj
    model = GPT(m)
    total = sum(p.numel() for p in model.parameters())
    assert matrices == 26_017_792 and total == 26_845_283
    embeddings = m.vocab_size * m.model_dim + m.bigram_buckets * m.bigram_dim
    assert m.embed_dtype == "bf16" and embeddings == 786_432
    assert state_bytes(model) == 4 * (3 * matrices + 4 * (total - matrices - embeddings)) + 2 * 4 * embeddings
    assert state_bytes(model) == 319_161_904
    fp32 = GPT(dataclasses.replace(m, embed_dtype="fp32"))
    assert state_bytes(fp32) == 4 * (3 * matrices + 4 * (total - matrices)) == 325_453_360
