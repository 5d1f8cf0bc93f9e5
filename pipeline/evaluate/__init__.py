"""Evaluation (SPEC §5): byte accounting for bits per byte, window plans, standard and sliding-window scoring."""

from pipeline.evaluate.bytes import ByteLuts, build_byte_luts, stream_bytes, token_bytes
from pipeline.evaluate.scoring import (
    EvalSums,
    all_reduce_sums,
    evaluate_sliding_window,
    evaluate_standard,
    per_token_losses,
    score_windows,
)
from pipeline.evaluate.windows import WindowPlan, plan_sliding, plan_standard

__all__ = [
    "ByteLuts",
    "EvalSums",
    "WindowPlan",
    "all_reduce_sums",
    "build_byte_luts",
    "evaluate_sliding_window",
    "evaluate_standard",
    "per_token_losses",
    "plan_sliding",
    "plan_standard",
    "score_windows",
    "stream_bytes",
    "token_bytes",
]
