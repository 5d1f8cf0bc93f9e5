"""Learning-rate multiplier and Muon momentum as pure functions of the step.

No lr warm-up (SPEC §3): the multiplier is 1 until the warm-down, then falls
linearly to 0.  With a wall-clock cap the warm-down is measured in time, not
steps: ``warmdown_iters`` times the mean step time so far, ending at the cap,
so a run that is slower than expected still decays fully before it is stopped.

The frontier schedule (PR #1787, ``train.warmdown_frac`` > 0): with f the
training fraction (elapsed / cap, or step / iterations without a cap), the
multiplier is 1 until f reaches 1 - warmdown_frac, then
max((1 - f) / warmdown_frac, min_lr).  ``min_lr`` floors the step schedule too.
"""

from __future__ import annotations

from pipeline.config import TrainConfig


def lr_multiplier(step: int, elapsed_ms: float, cfg: TrainConfig) -> float:
    """Factor applied to every group's base lr before optimizer step ``step``.

    ``elapsed_ms`` is training wall time so far (evaluation excluded); it is
    only read when ``cfg.max_wallclock_seconds > 0``.
    """
    if cfg.warmdown_frac > 0:
        frac = training_frac(step, elapsed_ms, cfg)
        if frac >= 1.0 - cfg.warmdown_frac:
            return max((1.0 - frac) / cfg.warmdown_frac, cfg.min_lr)
        return 1.0
    return max(_iters_multiplier(step, elapsed_ms, cfg), cfg.min_lr)


def training_frac(step: int, elapsed_ms: float, cfg: TrainConfig) -> float:
    """How far training is: elapsed / cap with a wall-clock cap, else step / iterations."""
    if cfg.max_wallclock_seconds > 0:
        return elapsed_ms / max(1000.0 * cfg.max_wallclock_seconds, 1e-9)
    return step / max(cfg.iterations, 1)


def _iters_multiplier(step: int, elapsed_ms: float, cfg: TrainConfig) -> float:
    if cfg.warmdown_iters <= 0:
        return 1.0
    if cfg.max_wallclock_seconds > 0:
        warmdown_ms = cfg.warmdown_iters * (elapsed_ms / max(step, 1))
        remaining_ms = max(1000.0 * cfg.max_wallclock_seconds - elapsed_ms, 0.0)
        if remaining_ms <= warmdown_ms:
            return remaining_ms / max(warmdown_ms, 1e-9)
        return 1.0
    warmdown_start = max(cfg.iterations - cfg.warmdown_iters, 0)
    if step < warmdown_start:
        return 1.0
    return max((cfg.iterations - step) / cfg.warmdown_iters, 0.0)


def muon_momentum(step: int, cfg: TrainConfig) -> float:
    """Linear from ``muon_momentum_warmup_start`` to ``muon_momentum`` over
    ``muon_momentum_warmup_steps`` steps, then constant: low momentum early,
    while gradients change fast."""
    if cfg.muon_momentum_warmup_steps <= 0:
        return cfg.muon_momentum
    frac = min(step / cfg.muon_momentum_warmup_steps, 1.0)
    return (1.0 - frac) * cfg.muon_momentum_warmup_start + frac * cfg.muon_momentum
