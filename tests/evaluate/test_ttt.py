"""Legal test-time training: parity with the 1.0611 record, the ordering guard, the budget."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config import ScoreFirstTttConfig
from pipeline.evaluate import ttt
from pipeline.evaluate.ttt import ScoreLedger, TttOrderError, find_documents, score_first_ttt, timed
from pipeline.runtime import Runtime
from tests.evaluate.ttt_cases import CASES, GPT_CASES, case_inputs, run_pgolf
from tests.evaluate.ttt_toy import ToyTttModel, toy_stream

# scripts/parity/ttt_parity.py: the record's eval_val_ttt_phased (plain path) on the same inputs
RECORD = {
    "one_phase": (3.0694432171792156, 5.878659840693369),
    "three_phases": (2.93587720002689, 5.622851498411566),
    "no_global": (3.1279115954960526, 5.990639663495737),
    "sgd_lora": (3.015424664926833, 5.775202414929257),
    "sidecar": (3.453922268382146, 5.878659840693369),
    # The record's own GPT (forward_ttt, BatchedTTTLoRA, varlen global phase) holding pgolf's GPT's weights
    "gpt_looped": (2.716143667079588, 5.145720808937488),
    "gpt_plain_two_phases": (2.6780965211812955, 5.07364067829402),
}


@pytest.mark.parametrize("name", sorted(CASES) + sorted(GPT_CASES))
def test_phased_bpb_equals_the_records(name):
    ledger = ScoreLedger(case_inputs(name)[1].numel())
    sums = run_pgolf(name, ledger)
    bpb, loss = RECORD[name]
    assert sums.bpb == pytest.approx(bpb, abs=1e-6)
    assert sums.loss == pytest.approx(loss, abs=1e-6)
    n = case_inputs(name)[1].numel()
    assert sums.tokens == n - 1
    ledger.check_complete(np.arange(1, n))  # every target scored exactly once


def test_a_global_phase_on_unscored_documents_is_caught(monkeypatch):
    """Break the order: the global phase takes the first documents of the stream, scored or not."""
    def leak(gathered, boundary, docs):
        return [(0, i, start, length) for i, (start, length) in enumerate(docs[:boundary])]

    monkeypatch.setattr(ttt, "_global_documents", leak)
    tokens = case_inputs("one_phase")[1]
    with pytest.raises(TttOrderError, match=r"an update trains on target \d+ before it is scored"):
        run_pgolf("one_phase", ScoreLedger(tokens.numel()))


def test_ledger_refuses_every_broken_order():
    ledger = ScoreLedger(10)
    ledger.score(np.array([1, 2]))
    with pytest.raises(TttOrderError, match="target 2 is scored a second time"):
        ledger.score(np.array([2, 3]))
    with pytest.raises(TttOrderError, match="trains on target 3 before it is scored"):
        ledger.train(np.array([2, 3]))
    ledger.train(np.array([1, 2]))
    ledger2 = ScoreLedger(10)
    ledger2.trained[5] = True
    with pytest.raises(TttOrderError, match="target 5 is scored after an update that trained on it"):
        ledger2.score(np.array([4, 5]))
    with pytest.raises(TttOrderError, match="target 3 was scored 0 times, not once"):
        ledger.check_complete(np.arange(1, 4))


def test_documents_end_on_the_next_bos():
    tokens = torch.tensor([1, 5, 6, 1, 7, 1, 8, 9])
    assert find_documents(tokens, 1) == [(0, 4), (3, 3), (5, 3)]


def test_score_first_scores_everything_once_and_learns(record_params):
    tokens = toy_stream(48, 30, seed=5)
    rt = Runtime(torch.device("cpu"), "gloo", None)
    luts = case_inputs("one_phase")[2]
    cfg = ScoreFirstTttConfig(chunk_tokens=512, lr=0.05, momentum=0.9, epochs=2, batch_seqs=4, grad_clip=1.0,
                              freeze_blocks=0)
    ledger = ScoreLedger(tokens.numel())
    torch.manual_seed(0)
    model = ToyTttModel(48)
    adapted = score_first_ttt(model, tokens, luts, cfg, 64, 16, 8, rt, ledger=ledger)
    ledger.check_complete(np.arange(1, tokens.numel()))
    assert adapted.tokens == tokens.numel() - 1
    torch.manual_seed(0)
    frozen = score_first_ttt(ToyTttModel(48), tokens, luts, dataclasses.replace(cfg, epochs=0), 64, 16, 8, rt)
    assert frozen.tokens == adapted.tokens and frozen.bytes == adapted.bytes
    assert adapted.loss_sum != frozen.loss_sum  # the updates changed later chunks' scores


def test_seconds_are_recorded_against_the_budget():
    rt = Runtime(torch.device("cpu"), "gloo", None)
    result = timed(lambda: run_pgolf("no_global"), 600.0, rt)
    assert 0 < result.seconds < 600 and result.within_budget
    over = timed(lambda: run_pgolf("no_global"), 1e-6, rt)
    figures = over.figures("ttt")
    assert figures["ttt_within_budget"] is False and figures["ttt_budget_seconds"] == 1e-6


def _phased_rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        model, tokens, luts, _, cfg, seq_len, seed = case_inputs("three_phases")
        torch.manual_seed(seed + rank)
        rt = Runtime(torch.device("cpu"), "gloo", None, rank=rank, world_size=world_size)
        ledger = ScoreLedger(tokens.numel())
        sums = ttt.phased_ttt(model, tokens, luts, cfg, seq_len, rt, ledger=ledger, workdir=Path(out_dir))
        np.save(Path(out_dir) / f"scored{rank}.npy", ledger.scored)
        np.save(Path(out_dir) / f"sums{rank}.npy", np.array([sums.tokens, sums.bytes]))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_share_the_documents_and_score_each_target_once(tmp_path):
    """Ranks claim document batches from the shared counter; together they score every target once."""
    import torch.multiprocessing as mp

    mp.spawn(_phased_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    tokens = case_inputs("three_phases")[1]
    scored = [np.load(tmp_path / f"scored{r}.npy") for r in range(2)]
    assert all(s.sum() > 0 for s in scored)  # both ranks did work
    combined = scored[0] + scored[1]
    assert (combined[1:] == 1).all() and combined[0] == 0
    totals = [np.load(tmp_path / f"sums{r}.npy") for r in range(2)]
    assert totals[0].tolist() == totals[1].tolist()  # all-reduced
    assert totals[0][0] == tokens.numel() - 1
    assert totals[0][1] == run_pgolf("three_phases").bytes


def test_ranks_share_a_fresh_coordination_folder_that_goes_afterwards():
    """evaluate's phased TTT on several ranks: rank 0's fresh folder holds the batch counter
    (its path is the one broadcast) and is removed after the pass; one process needs none."""
    from pipeline.evaluate.session import _coordination_dir

    cpu = torch.device("cpu")
    with _coordination_dir(Runtime(cpu, "gloo", None)) as folder:
        assert folder is None
    with _coordination_dir(Runtime(cpu, "gloo", None, rank=0, world_size=2)) as folder:
        assert folder.is_dir() and folder.name.startswith("pgolf-ttt-")
        (folder / ".ttt_counter").write_bytes(b"\0" * 8)
    assert not folder.exists()
    with _coordination_dir(Runtime(cpu, "gloo", None, rank=1, world_size=2)) as other:
        assert other is not None and other.is_dir()
    assert other.is_dir()  # a placeholder rank 1 never writes in, left alone
