"""Each seed profile's model against the challenge's scripts: forward losses pinned from the
reference, recomputed here with pgolf alone.

The numbers come from `scripts/parity/model_parity.py`, which builds the same
configuration (the profile's switches at a small size, CPU, fp32, eval mode),
fills pgolf's weights by SPEC §7's rule, copies them into the reference's GPT
and prints its loss.  The non-Canon cases use the records each PR builds on
(PR #400: 2026-03-21_11L_XSA4_EMA_PartialRoPE_LateQAT_1.1248; PR #312:
2026-03-20_Int6_MLP3x_SmearGate_BigramHash_MuonWD_SWA); the Canon cases use the
PRs' own train_gpt.py (refs/pull/312/head, the same file on PR #400's branch).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.scripts import load_script

# Reference losses printed by scripts/parity/model_parity.py (torch 2.13, CPU).
REFERENCE_LOSS = {
    "record": 9.545096,
    "pr312": 9.300925,
    "record-canon": 9.449709,
    "pr312-canon": 9.411575,
    "pr312-canon-ntk": 8.249359,
}


parity = load_script("scripts/parity/model_parity.py")
CASES = {case.name: case for case in parity.CASES}


def test_every_case_has_a_pinned_reference():
    assert set(CASES) == set(REFERENCE_LOSS)


@pytest.mark.parametrize("name", sorted(REFERENCE_LOSS))
def test_profile_model_matches_the_reference(name):
    assert abs(parity.pgolf_loss(CASES[name]) - REFERENCE_LOSS[name]) < 1e-5


def test_cases_carry_the_profiles_switches():
    record, pr312 = parity.case_config(CASES["record-canon"]), parity.case_config(CASES["pr312-canon"])
    assert (record.xsa_last_n, record.rope_dims, record.ln_scale) == (2, 16, True)
    assert (record.canon.placements, record.canon.delta_gate, record.canon.last_n) == ("AC", True, 2)
    assert (pr312.xsa_last_n, pr312.rope_dims, pr312.ln_scale) == (0, pr312.head_dim, False)
    assert (pr312.canon.placements, pr312.canon.delta_gate, pr312.canon.d_after_relu) == ("ACD", False, True)
    assert record.embed_dtype == pr312.embed_dtype == "fp32"


def test_canon_d_position_is_what_makes_pr312_match():
    # With Canon-D before the relu (SPEC's placement) the PR's model is not reproduced.
    case = CASES["pr312-canon"]
    cfg = parity.case_config(case)
    moved = dataclasses.replace(cfg, canon=dataclasses.replace(cfg.canon, d_after_relu=False))
    model, ids = parity.spec_filled(moved, case.seq_len)
    with torch.no_grad():
        loss = model(ids[:, :-1], ids[:, 1:]).item()
    assert abs(loss - REFERENCE_LOSS["pr312-canon"]) > 1e-3
