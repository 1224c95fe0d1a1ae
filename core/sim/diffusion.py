"""A simulated diffusion batch runner: a test double and a demo, never a measurement.

Batch latency = ``warmup_factor`` (first batch only) × speed penalty ×
``steps × (step_base_s + per_mpix_s × (B × megapixels) ** batch_exponent)`` with CFG folded into
the constants; the sublinear batch term models the better GPU utilisation of larger batches.
Utilisation (drives the simulated GPU's power) = ``0.55 + 0.43 × min(1, work / 4 Mpix) ** 0.5``.
Between batches the host spends ``gap_s`` at idle load (text encoding, VAE hand-off). Each
batch's start and end call ``mark`` (the runtime context's ``mark_energy``) where given, after the
load change at that instant.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..clock import Clock, wait_until


@dataclass(frozen=True)
class DiffusionCostModel:
    """Roughly SD 2.1 at 768×768 on an H100-class GPU (≈ 1.6 s for 25 steps at B=1, ≈ 5.4 s at B=8)."""

    step_base_s: float = 0.012
    per_mpix_s: float = 0.069
    batch_exponent: float = 0.69
    warmup_factor: float = 1.6
    gap_s: float = 0.05
    tp_exponent: float = 0.7

    def utilisation(self, batch: int, megapixels: float) -> float:
        work = batch * megapixels
        return 0.55 + 0.43 * min(1.0, work / 4.0) ** 0.5

    def latency_s(self, batch: int, steps: int, megapixels: float, tp: int = 1) -> float:
        return steps * (self.step_base_s + self.per_mpix_s * (batch * megapixels) ** self.batch_exponent) / (
            max(1, tp) ** self.tp_exponent)


@dataclass
class SimBatch:
    index: int
    start_s: float
    end_s: float
    batch_size: int
    warmup: bool


class Cancelled(Exception):
    pass


class DiffusionSim:
    """Run ``warmup_batches + batches`` batches of ``batch_size`` images on ``clock``."""

    def __init__(
        self,
        *,
        batch_size: int,
        num_inference_steps: int,
        width: int,
        height: int,
        batches: int,
        warmup_batches: int,
        clock: Clock,
        gpus: Sequence[object] | None = None,
        tensor_parallel: int = 1,
        cost: DiffusionCostModel | None = None,
        cancel: threading.Event | None = None,
        sample_period_s: float = 0.1,
        on_batch_sample: Callable[[float, int, int], None] | None = None,
        on_batch_done: Callable[[SimBatch], None] | None = None,
        mark: Callable[[], float] | None = None,
    ) -> None:
        self.B = int(batch_size)
        self.steps = int(num_inference_steps)
        self.mpix = width * height / 1e6
        self.batches = int(batches)
        self.warmup_batches = int(warmup_batches)
        self.clock = clock
        self.gpus = list(gpus or [])
        self.tp = int(tensor_parallel)
        self.cost = cost or DiffusionCostModel()
        self.cancel = cancel
        self.period = sample_period_s
        self.on_batch_sample = on_batch_sample or (lambda t, r, w: None)
        self.on_batch_done = on_batch_done or (lambda b: None)
        self.mark = mark

    def _mark(self, t_s: float) -> float:
        """The energy mark's time at a batch edge (``t_s`` when nothing marks)."""
        if self.mark is None:
            return t_s
        m = self.mark()
        return m if math.isfinite(m) else t_s

    def _advance(self, t_s: float) -> None:
        if not wait_until(self.clock, t_s, self.cancel):
            raise Cancelled()

    def _set_load(self, u: float) -> None:
        for g in self.gpus:
            g.set_load(u)  # type: ignore[attr-defined]

    def _speed(self, u: float) -> float:
        return min((g.speed_factor(u) for g in self.gpus), default=1.0)  # type: ignore[attr-defined]

    def run(self) -> list[SimBatch]:
        out: list[SimBatch] = []
        t = self.clock.now_s()
        t0 = t
        next_sample = t0
        total = self.warmup_batches + self.batches

        cancel = self.cancel
        n_emitted = 0

        def samples(until: float, running: int, waiting: int) -> None:
            nonlocal next_sample, n_emitted
            while next_sample < until:
                n_emitted += 1
                if cancel is not None and n_emitted % 1024 == 0 and cancel.is_set():
                    self._set_load(0.0)
                    raise Cancelled()
                self.on_batch_sample(next_sample, running, waiting)
                next_sample = t0 + (round((next_sample - t0) / self.period) + 1) * self.period

        for i in range(total):
            if self.cancel is not None and self.cancel.is_set():
                self._set_load(0.0)
                raise Cancelled()
            warm = i < self.warmup_batches
            # Host-side gap at idle load.
            self._set_load(0.0)
            samples(t + self.cost.gap_s, 0, self.B * (total - i))
            t += self.cost.gap_s
            self._advance(t)
            u = self.cost.utilisation(self.B, self.mpix)
            self._set_load(u)
            start = self._mark(t)  # the synchronised start (the load is on from this instant)
            lat = self.cost.latency_s(self.B, self.steps, self.mpix, self.tp) / self._speed(u)
            if warm:
                lat *= self.cost.warmup_factor
            samples(t + lat, self.B, self.B * (total - i - 1))
            t += lat
            self._advance(t)
            self._set_load(0.0)  # synchronised: the GPU is idle from the batch's end
            end = self._mark(t)
            batch = SimBatch(index=i, start_s=start, end_s=end, batch_size=self.B, warmup=warm)
            out.append(batch)
            self.on_batch_done(batch)
        self._set_load(0.0)
        samples(t + 1e-9, 0, 0)
        return out
