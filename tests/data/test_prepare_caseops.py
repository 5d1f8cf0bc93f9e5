"""prepare with CaseOps and the byte sidecar; evaluation counting bytes from the sidecar."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import sentencepiece as spm
import torch

from pipeline.config import EncodingConfig
from pipeline.data import caseops
from pipeline.data.sidecar_files import load_sidecar, sidecar_paths
from pipeline.data.layout import DataLayout
from pipeline.data.loader import load_validation_tokens
from pipeline.data.prepare import prepare
from pipeline.errors import DataError
from pipeline.evaluate.bytes import build_byte_luts
from pipeline.evaluate.scoring import evaluate_sliding_window, evaluate_standard
from pipeline.evaluate.session import Evaluator
from pipeline.runtime import Runtime
from tests.conftest import tiny_model_config
from tests.data.caseops_cases import TRICKY
from tests.data.helpers import SMALL_VOCAB, data_config, pydoc_paragraphs, write_jsonl
from tests.evaluate.conftest import ToyLM

VAL_DOCS = 30


@pytest.fixture(scope="module")
def caseops_data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("caseops")
    docs = list(TRICKY[1:]) + pydoc_paragraphs(400)
    cfg = data_config(source="files", files=[write_jsonl(tmp / "c.jsonl", docs)], out_dir=str(tmp / "data"),
                      val_docs=VAL_DOCS, max_docs=0, shard_tokens=1500, tokenizer={"vocab_size": SMALL_VOCAB})
    cfg = dataclasses.replace(cfg, encoding=EncodingConfig(transform="caseops", byte_sidecar=True,
                                                           sidecar_whitespace="original", check_split=True))
    return cfg, prepare(cfg), docs


def test_sidecar_pairs_with_the_val_shards_and_counts_the_original_text(caseops_data):
    cfg, summary, docs = caseops_data
    layout = DataLayout(summary.out_dir)
    val = load_validation_tokens(layout.val_files(), SMALL_VOCAB)
    assert len(layout.val_files()) > 1 and len(sidecar_paths(layout.shards_dir)) == len(layout.val_files())
    counts = load_sidecar(layout.shards_dir, len(val))
    assert counts[val.numpy() == 1].sum() == 0  # BOS: no bytes
    expected = sum(len(d.encode("utf-8")) for d in docs[:VAL_DOCS])
    assert int(counts.sum()) == expected == summary.manifest["encoding"]["byte_sidecar"]["bytes"]
    assert summary.manifest["encoding"]["transform"] == "caseops"
    assert summary.manifest["tokenizer"]["settings"]["user_defined_symbols"] == list(caseops.OPERATORS)
    assert not list(layout.shards_dir.glob("fineweb_train_bytes_*"))


def test_tokens_decode_to_the_caseops_text(caseops_data):
    _, summary, docs = caseops_data
    layout = DataLayout(summary.out_dir)
    sp = spm.SentencePieceProcessor(model_file=str(layout.tokenizer))
    val = load_validation_tokens(layout.val_files(), SMALL_VOCAB).numpy()
    starts = np.flatnonzero(val == sp.bos_id()).tolist() + [len(val)]
    texts = [sp.decode(val[a + 1:b].tolist()) for a, b in zip(starts, starts[1:])]
    assert [caseops.decode(t) for t in texts[:5]] == [" ".join(d.split()) for d in docs[:5]]


def test_evaluation_counts_bytes_from_the_sidecar(caseops_data, record_params):
    cfg, summary, docs = caseops_data
    layout = DataLayout(summary.out_dir)
    rt = Runtime(torch.device("cpu"), "gloo", None)
    ev = Evaluator(tiny_model_config(vocab_size=SMALL_VOCAB), record_params.eval, layout, rt)
    assert ev.sidecar is not None
    tokens = ev.tokens
    ecfg = dataclasses.replace(record_params.eval, seq_len=64, stride=16, batch_seqs=4, max_tokens=0, stream="full")
    model = ToyLM(SMALL_VOCAB)
    luts = build_byte_luts(spm.SentencePieceProcessor(model_file=str(layout.tokenizer)))
    for fn in (evaluate_standard, evaluate_sliding_window):
        with_sidecar = fn(model, tokens, luts, ecfg, rt, sidecar=ev.sidecar)
        plain = fn(model, tokens, luts, ecfg, rt)
        assert with_sidecar.bytes == int(ev.sidecar[1:with_sidecar.tokens + 1].sum())  # the scored prefix
        assert with_sidecar.loss_sum == plain.loss_sum and with_sidecar.bytes != plain.bytes


def test_a_sidecar_that_does_not_match_the_shards_is_refused(caseops_data, tmp_path):
    _, summary, _ = caseops_data
    layout = DataLayout(summary.out_dir)
    val = load_validation_tokens(layout.val_files(), SMALL_VOCAB)
    with pytest.raises(DataError, match="byte sidecar holds .* counts for 5 validation tokens"):
        load_sidecar(layout.shards_dir, 5)
    assert load_sidecar(tmp_path, len(val)) is None


def test_evaluator_runs_score_first_ttt_on_the_gpt_with_the_sidecar(caseops_data, record_params):
    from pipeline.config import ScoreFirstTttConfig, TttConfig
    from pipeline.model import GPT

    _, summary, _ = caseops_data
    rt = Runtime(torch.device("cpu"), "gloo", None)
    ttt_cfg = TttConfig(mode="score_first", budget_seconds=600.0,
                        score_first=ScoreFirstTttConfig(chunk_tokens=512, lr=0.01, epochs=1, batch_seqs=4))
    ecfg = dataclasses.replace(record_params.eval, seq_len=64, stride=32, batch_seqs=8, max_tokens=1024,
                               stream="full", ttt=ttt_cfg)
    model_cfg = tiny_model_config(vocab_size=SMALL_VOCAB)
    ev = Evaluator(model_cfg, ecfg, DataLayout(summary.out_dir), rt)
    torch.manual_seed(0)
    state = GPT(model_cfg).state_dict()
    figures = ev.test_time_training(state)
    sliding, _ = ev.sliding(ev.model_from_state(state))
    assert figures["ttt_tokens"] == sliding.tokens == 1024
    assert figures["ttt_within_budget"] is True and 0 < figures["ttt_seconds"] < 600
    assert figures["ttt_bpb"] != sliding.bpb  # trained on the scored chunk before scoring the next
    # same targets, so the same bytes (the sidecar's) as the sliding pass: bytes = loss x tokens / (bpb ln 2)
    ttt_bytes = figures["ttt_loss"] * figures["ttt_tokens"] / (figures["ttt_bpb"] * math.log(2))
    assert ttt_bytes == pytest.approx(sliding.bytes, rel=1e-9) and sliding.bytes == int(ev.sidecar[1:1025].sum())
    phased = dataclasses.replace(ecfg, ttt=dataclasses.replace(ttt_cfg, mode="phased"))
    # phased TTT runs on the GPT too (its LoRA interface) and counts the sidecar's bytes for the same targets
    phased_figures = Evaluator(model_cfg, phased, DataLayout(summary.out_dir), rt).test_time_training(state)
    assert phased_figures["ttt_tokens"] == 1024
    phased_bytes = phased_figures["ttt_loss"] * 1024 / (phased_figures["ttt_bpb"] * math.log(2))
    assert phased_bytes == pytest.approx(sliding.bytes, rel=1e-9)
