"""Training wall clock that every rank agrees on, without a host sync every step.

The LR multiplier and the stopping step depend on elapsed training time.  If
each rank read its own clock, ranks could pick different learning rates or
stop at different steps.  Instead, every `sync_every` steps (and every step
once the cap is near) the ranks all-reduce (MAX) their elapsed time and a
termination flag; between those steps every rank extrapolates the same value
from the last agreed one.  Time spent outside training (compile warm-up,
validation, checkpoints) is excluded by pausing the clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from pipeline.runtime import Runtime


@dataclass
class ClockReading:
    elapsed_ms: float
    reached_cap: bool
    terminate: bool


class TrainClock:
    def __init__(self, rt: Runtime, cap_ms: float | None, sync_every: int = 10):
        self.rt = rt
        self.cap_ms = cap_ms
        self.sync_every = sync_every
        self.banked_ms = 0.0  # time of finished running periods
        self._t0: float | None = None
        self.agreed_ms = 0.0  # last value all ranks agreed on
        self.agreed_step = 0

    # -- running periods ---------------------------------------------------------
    def start(self) -> None:
        self.rt.synchronize()
        self._t0 = time.perf_counter()

    def pause(self) -> None:
        if self._t0 is not None:
            self.rt.synchronize()
            self.banked_ms += 1000.0 * (time.perf_counter() - self._t0)
            self._t0 = None

    def local_ms(self) -> float:
        running = 0.0 if self._t0 is None else 1000.0 * (time.perf_counter() - self._t0)
        return self.banked_ms + running

    # -- agreement ---------------------------------------------------------------
    def _estimate(self, step: int) -> float:
        if self.agreed_step == 0:
            return self.agreed_ms
        per_step = self.agreed_ms / self.agreed_step
        return self.agreed_ms + (step - self.agreed_step) * per_step

    def _near_cap(self, step: int) -> bool:
        if self.cap_ms is None or self.agreed_step == 0:
            return False
        per_step = self.agreed_ms / self.agreed_step
        return self._estimate(step) + 2 * self.sync_every * per_step >= self.cap_ms

    def read(self, step: int, terminate_requested: bool) -> ClockReading:
        """Elapsed training ms for `step` (identical on all ranks) and whether to stop.

        Must be called by every rank at every step (it is a collective on sync steps).
        """
        sync_now = step % self.sync_every == 0 or self._near_cap(step)
        if not self.rt.distributed:
            # One process: its own clock is the agreed one; sync the device only when it matters.
            if sync_now:
                self.rt.synchronize()
            elapsed, terminate = self.local_ms(), terminate_requested
            if sync_now:
                self.agreed_ms, self.agreed_step = elapsed, step
        elif sync_now:
            self.rt.synchronize()
            values = torch.tensor([self.local_ms(), float(terminate_requested)], dtype=torch.float64,
                                  device=self.rt.device)
            dist.all_reduce(values, op=dist.ReduceOp.MAX)
            elapsed, term = values.tolist()
            self.agreed_ms, self.agreed_step = elapsed, step
            terminate = term > 0
        else:
            elapsed = self._estimate(step)
            terminate = False
        reached = self.cap_ms is not None and elapsed >= self.cap_ms
        return ClockReading(elapsed, reached, terminate)

    def state_dict(self) -> dict:
        return {"banked_ms": self.local_ms(), "agreed_ms": self.agreed_ms, "agreed_step": self.agreed_step}

    def load_state_dict(self, state: dict) -> None:
        self.banked_ms = state["banked_ms"]
        self.agreed_ms = state["agreed_ms"]
        self.agreed_step = state["agreed_step"]
