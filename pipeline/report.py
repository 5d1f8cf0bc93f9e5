"""Several seeds -> one summary and the challenge's acceptance verdict (SPEC §6).

A record must beat the previous best by at least `min_improvement_nats` nats
per byte (bpb x ln 2) with p < `p_threshold`.  Per seed i the improvement is
d_i = (baseline - bpb_i) ln 2; the one-sided one-sample t-test takes
H0: mean(d) <= threshold, t = (mean(d) - threshold) / (s / sqrt(n)) with the
sample standard deviation s and n - 1 degrees of freedom, p = P(T_{n-1} >= t).

Degenerate samples are answered explicitly rather than with NaN: one seed
gives no test (verdict "insufficient seeds", p None); identical seeds (s = 0)
make the improvement exact, so p is 0 when it clears the threshold and 1
otherwise (t is reported as None: it is infinite or undefined).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from scipy import stats as scipy_stats

from pipeline.config import ReportConfig
from pipeline.records import SeedMetrics

SCORE_KEY = "sliding_bpb"  # the figure the verdict is about (SPEC §5: the sliding-window score)
# Sections of a metrics file that describe the run rather than measure it.
NOT_FIGURES = ("seed", "provenance", "eval")
# The columns of the Markdown table, in this order, where present (SPEC §5's per-seed figures).
TABLE_FIGURES = ("sliding_bpb", "sliding_loss", "int6_standard_bpb", "prequant_averaged_standard_bpb",
                 "prequant_final_standard_bpb", "steps",
                 "train_seconds", "mean_step_ms", "model_bytes", "total_bytes")


@dataclass(frozen=True)
class Significance:
    n: int
    baseline_bpb: float
    improvements_nats: list[float]
    mean_improvement_nats: float
    std_improvement_nats: float | None  # sample (ddof=1); None for one seed
    threshold_nats: float
    t: float | None
    df: int | None
    p: float | None
    p_threshold: float
    passed: bool
    verdict: str  # "pass" | "fail" | "insufficient seeds"
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def significance_test(bpbs: Sequence[float], cfg: ReportConfig) -> Significance:
    """One-sided t-test of the improvement over `cfg.baseline_bpb` (see the module doc)."""
    if not bpbs:
        raise ValueError("significance test needs at least one seed")
    ln2 = math.log(2.0)
    d = [(cfg.baseline_bpb - b) * ln2 for b in bpbs]
    n = len(d)
    mean = math.fsum(d) / n
    thr = cfg.min_improvement_nats
    common = dict(n=n, baseline_bpb=cfg.baseline_bpb, improvements_nats=d, mean_improvement_nats=mean,
                  threshold_nats=thr, p_threshold=cfg.p_threshold)
    if n == 1:
        return Significance(**common, std_improvement_nats=None, t=None, df=None, p=None, passed=False,
                            verdict="insufficient seeds", note="one seed: no variance estimate, no test possible")
    s = statistics.stdev(d)
    if s == 0.0:
        p = 0.0 if mean > thr else 1.0
        t = None
        note = "zero variance: every seed scored the same, so the improvement is exact"
    else:
        t = (mean - thr) / (s / math.sqrt(n))
        p = float(scipy_stats.t.sf(t, df=n - 1))
        note = ""
    passed = p < cfg.p_threshold and mean >= thr
    return Significance(**common, std_improvement_nats=s, t=t, df=n - 1, p=p, passed=passed,
                        verdict="pass" if passed else "fail", note=note)


def _flatten(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric figures of a (possibly nested) metrics dict, nested keys joined with '.'."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if name in NOT_FIGURES:  # labels and provenance, not figures
            continue
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = value
    return out


def describe(values: Sequence[float]) -> dict[str, float | None]:
    """mean, sample std (None for one value), min, max."""
    return {
        "mean": math.fsum(values) / len(values),
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
    }


def summarize(
    per_seed: Mapping[int | str, SeedMetrics | Mapping[str, Any]], cfg: ReportConfig, score_key: str = SCORE_KEY
) -> dict[str, Any]:
    """Per-seed figures, their mean/std/min/max, and the verdict on `score_key`.

    Figures are the numeric entries present for every seed (nested dicts
    flattened to dotted keys, a top-level "seed" label skipped); the score is
    listed first.
    """
    if not per_seed:
        raise ValueError("report needs the metrics of at least one seed")
    flat = {str(seed): _flatten(m.to_dict() if isinstance(m, SeedMetrics) else m) for seed, m in per_seed.items()}
    missing = [seed for seed, m in flat.items() if score_key not in m]
    if missing:
        raise ValueError(f"seed(s) {', '.join(missing)}: no {score_key!r} figure in the metrics")
    names: list[str] = [score_key]
    for m in flat.values():
        names.extend(k for k in m if k not in names and all(k in other for other in flat.values()))
    figures = {name: describe([m[name] for m in flat.values()]) for name in names}
    sig = significance_test([m[score_key] for m in flat.values()], cfg)
    return {
        "score_key": score_key,
        "seeds": list(flat),
        "per_seed": {seed: {name: m[name] for name in names} for seed, m in flat.items()},
        "figures": figures,
        "significance": sig.to_dict(),
    }


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return str(value)
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.5f}"


def render_markdown(summary: Mapping[str, Any]) -> str:
    """The summary as a Markdown table (one row per seed, then mean/std/min/max) and a verdict line.

    Columns: the figures of TABLE_FIGURES that are present, or every figure when none is.
    """
    names = [n for n in TABLE_FIGURES if n in summary["figures"]] or list(summary["figures"])
    lines = ["| seed | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for seed, row in summary["per_seed"].items():
        lines.append(f"| {seed} | " + " | ".join(_fmt(row[n]) for n in names) + " |")
    for stat in ("mean", "std", "min", "max"):
        lines.append(f"| **{stat}** | " + " | ".join(_fmt(summary["figures"][n][stat]) for n in names) + " |")
    sig = summary["significance"]
    verdict = (
        f"**Verdict: {sig['verdict']}** ({summary['score_key']}, {sig['n']} seed(s)): mean improvement "
        f"{sig['mean_improvement_nats']:.5f} nats over baseline {sig['baseline_bpb']} bpb "
        f"(needs >= {sig['threshold_nats']}); t = {_fmt(sig['t'])}, df = {_fmt(sig['df'])}, "
        f"p = {_fmt(sig['p'])} (needs < {sig['p_threshold']})."
    )
    if sig["note"]:
        verdict += f" {sig['note'].capitalize()}."
    return "\n".join(lines) + "\n\n" + verdict + "\n"
