"""The frontier switches against the 1.0611 record's train_gpt.py: figures pinned from
`scripts/parity/frontier_parity.py`, recomputed here with pgolf alone.

Forward: the frontier profile's switch set at a small size (CPU, fp32, eval
mode, SPEC §7 weights, a BOS every 17th token); the record's loss printed by the
script.  Muon: two Polar-Express / MuonEq-R / bf16-momentum steps on identical
weights and gradients; the record's updated matrices' sum and sha256 (the
script also checks pgolf's against them bit for bit).
"""

from __future__ import annotations

import pytest

from tests.scripts import load_script

# The record's losses printed by scripts/parity/frontier_parity.py (torch 2.13, CPU).
RECORD_LOSS = {
    "frontier-looped": 8.317997,
    "frontier-unlooped": 8.594762,
    "frontier-yarn": 8.316270,
    "frontier-attn-lane": 8.510818,
}
RECORD_MUON_SUM = -59.62283391875761
RECORD_MUON_SHA256 = "03aa3006ab919faa6ca24bd3d8931bfb33431abb3025289a02d742bc8dde2cd6"


parity = load_script("scripts/parity/frontier_parity.py")
CASES = {case.name: case for case in parity.CASES}


@pytest.fixture(scope="module")
def base():
    return parity.frontier_model()


def test_every_case_has_a_pinned_reference():
    assert set(CASES) == set(RECORD_LOSS)


@pytest.mark.parametrize("name", sorted(RECORD_LOSS))
def test_frontier_model_matches_the_record(name, base):
    assert abs(parity.pgolf_loss(CASES[name], base) - RECORD_LOSS[name]) < 1e-5


def test_cases_carry_every_frontier_switch(base):
    cfg = parity.case_config(CASES["frontier-looped"], base)
    assert cfg.mlp_leaky_slope == 0.5 and cfg.skip_gates and cfg.smear_window == 12 and cfg.smear_bos_mask
    assert (cfg.attn_gate.enabled, cfg.attn_gate.window, cfg.attn_gate.scale) == (True, 12, 0.5)
    assert cfg.xsa_last_n == cfg.num_layers and cfg.q_gain_init == 5.0
    assert cfg.lanes.start_layer == 4 and cfg.recurrence.num_loops == 2
    assert cfg.bigram_buckets == 0 and cfg.canon.placements == ""


def test_polar_express_muon_matches_the_record(base):
    model, _ = parity.muon_inputs(base)  # gradients left in .grad
    total, sha = parity.digest(parity.pgolf_muon(model))
    assert abs(total - RECORD_MUON_SUM) < 1e-6
    assert sha == RECORD_MUON_SHA256  # bit for bit
