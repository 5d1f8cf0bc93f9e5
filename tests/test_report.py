"""Multi-seed summary and the SPEC §6 one-sided t-test, checked against scipy."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from scipy import stats

from pipeline.report import render_markdown, significance_test, summarize

RECORD = {1337: 1.12962, 1335: 1.12970, 1336: 1.1303}


def _metrics(bpb: float, seed: int) -> dict:
    return {"seed": seed, "sliding_bpb": bpb, "int6_bpb": bpb + 0.02, "steps": 6250 + seed % 7,
            "sizes": {"total_bytes": 15_580_000 + seed}, "ok": True, "device": "8xH100"}


def seed_metrics_record(bpb: float, seed: int):
    """A complete metrics file's record, as `pgolf evaluate` writes it."""
    from pipeline.records import Figures, SeedMetrics

    def fig(b: float) -> Figures:
        return Figures(loss=b / 0.6, bpb=b, tokens=62_021_632, seconds=70.0)

    return SeedMetrics(prequant_final_standard=fig(bpb + 0.03), prequant_averaged_standard=fig(bpb + 0.02),
                       int6_standard=fig(bpb + 0.025), sliding=fig(bpb), steps=6250, train_seconds=600.0,
                       mean_step_ms=96.0, model_bytes=15_500_000, code_bytes=80_000, total_bytes=15_580_000,
                       seed=seed, eval={"stride": 64}, provenance={"device": "8xH100"})


def test_typed_seed_metrics_round_trip_and_summarize_like_their_json(record_params, tmp_path):
    from pipeline.stage_files import read_seed_metrics, write_seed_metrics

    records = {seed: seed_metrics_record(bpb, seed) for seed, bpb in RECORD.items()}
    for seed, record in records.items():
        write_seed_metrics(tmp_path / f"{seed}.json", record)
        assert read_seed_metrics(tmp_path / f"{seed}.json", seed) == record
    assert json.loads((tmp_path / "1337.json").read_text())["sliding_bpb"] == RECORD[1337]
    typed = summarize(records, record_params.report)
    assert typed == summarize({s: r.to_dict() for s, r in records.items()}, record_params.report)
    assert typed["figures"]["sliding_bpb"]["mean"] == pytest.approx(sum(RECORD.values()) / 3)
    assert not any(k.startswith(("eval.", "provenance.")) for k in typed["figures"])


def test_matches_scipy_on_the_record(record_params):
    cfg = record_params.report
    sig = significance_test(list(RECORD.values()), cfg)
    d = [(cfg.baseline_bpb - b) * math.log(2) for b in RECORD.values()]
    ref = stats.ttest_1samp(d, popmean=cfg.min_improvement_nats, alternative="greater")
    assert sig.t == pytest.approx(ref.statistic, rel=1e-10)
    assert sig.p == pytest.approx(ref.pvalue, rel=1e-8)
    assert sig.df == 2 and sig.n == 3
    assert sig.mean_improvement_nats == pytest.approx(sum(d) / 3)
    assert sig.std_improvement_nats == pytest.approx(stats.tstd(d))
    assert sig.p < 0.01 and sig.passed and sig.verdict == "pass"


def test_fail_cases(record_params):
    cfg = record_params.report
    small = significance_test([1.139, 1.1395, 1.1385], cfg)  # ~0.0025 nats: below the bar
    assert not small.passed and small.verdict == "fail" and small.p > 0.5
    noisy = significance_test([1.120, 1.139, 1.128], cfg)  # big mean gain, too much spread for p < 0.01
    assert noisy.mean_improvement_nats > cfg.min_improvement_nats
    ref = stats.ttest_1samp([(cfg.baseline_bpb - b) * math.log(2) for b in (1.120, 1.139, 1.128)],
                            cfg.min_improvement_nats, alternative="greater")
    assert noisy.p == pytest.approx(ref.pvalue) and noisy.p > cfg.p_threshold and not noisy.passed


def test_one_seed_is_insufficient(record_params):
    sig = significance_test([1.10], record_params.report)
    assert sig.verdict == "insufficient seeds" and sig.p is None and sig.t is None and not sig.passed
    assert sig.std_improvement_nats is None and sig.df is None


def test_zero_variance(record_params):
    cfg = record_params.report
    good = significance_test([1.12, 1.12, 1.12], cfg)
    assert good.t is None and good.p == 0.0 and good.passed and "zero variance" in good.note
    bad = significance_test([1.14, 1.14], cfg)
    assert bad.p == 1.0 and not bad.passed
    looser = dataclasses.replace(cfg, p_threshold=0.5)
    assert significance_test([1.1428, 1.1428], looser).verdict == "fail"


def test_summary_and_markdown(record_params):
    per_seed = {seed: _metrics(bpb, seed) for seed, bpb in RECORD.items()}
    summary = summarize(per_seed, record_params.report)
    assert list(summary["figures"])[0] == "sliding_bpb"
    assert "sizes.total_bytes" in summary["figures"] and "ok" not in summary["figures"]
    fig = summary["figures"]["sliding_bpb"]
    assert fig["mean"] == pytest.approx(sum(RECORD.values()) / 3)
    assert fig["std"] == pytest.approx(stats.tstd(list(RECORD.values())))
    assert (fig["min"], fig["max"]) == (1.12962, 1.1303)
    assert summary["significance"]["verdict"] == "pass"
    json.dumps(summary)  # stage writes it as JSON
    md = render_markdown(summary)
    assert sum(line.startswith("| ") for line in md.splitlines()) == 1 + 3 + 4  # header, seeds, stats
    assert "seed" not in summary["figures"]
    assert "| 1337 | 1.12962 |" in md and "**Verdict: pass**" in md and "| **std** |" in md
    one = render_markdown(summarize({1337: _metrics(1.13, 1337)}, record_params.report))
    assert "insufficient seeds" in one and "p = –" in one


def test_missing_score_rejected(record_params):
    with pytest.raises(ValueError, match="1335"):
        summarize({1337: {"sliding_bpb": 1.1}, 1335: {"int6_bpb": 1.2}}, record_params.report)
    with pytest.raises(ValueError):
        significance_test([], record_params.report)


@pytest.mark.parametrize(("content", "problem"), [
    ('{"seed": 1335, "int6_bpb": 1.2}', "no 'sliding_bpb' field"),
    ('{"seed": 1335, "sliding_bpb": ', "not valid JSON (Expecting value at line 1, column 31)"),
])
def test_report_on_a_seed_without_its_score_is_one_line_naming_the_file(record_params, tmp_path, monkeypatch,
                                                                        content, problem):
    from typer.testing import CliRunner

    from pipeline.layout import MetricsLayout
    from stages.cli import app
    from tests.train.helpers import write_params

    monkeypatch.chdir(tmp_path)
    layout = MetricsLayout()
    layout.seed(1337).parent.mkdir(parents=True)
    layout.seed(1337).write_text(json.dumps(seed_metrics_record(1.12962, 1337).to_dict()))
    layout.seed(1335).write_text(content)
    params = write_params(dataclasses.replace(record_params, seeds=(1337, 1335)), tmp_path / "params.yaml")
    result = CliRunner().invoke(app, ["report", "--params", str(params)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0] == f"pgolf: error: {layout.seed(1335)}: {problem}"
    assert not layout.summary.exists() and not layout.summary_table.exists()
