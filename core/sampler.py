"""The 10 Hz power sampler and the energy of arbitrary windows. CONTRACT STUB."""

from __future__ import annotations

from collections.abc import Callable

from .clock import Clock
from .power.base import PowerReading, PowerSource
from .records import PowerTimeline


class PowerSampler:
    """Reads ``source`` every ``period_s`` (a thread on the wall clock, ``clock.every`` on a
    virtual clock), keeps every reading of the configuration (bounded: older samples are
    decimated beyond ``max_samples``), and calls ``listener`` with each reading."""

    def __init__(self, source: PowerSource, indices: list[int], clock: Clock, period_s: float = 0.1,
                 listener: Callable[[PowerReading], None] | None = None, max_samples: int = 200_000) -> None:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def read_now(self) -> PowerReading:
        """Read immediately (also appended to the timeline)."""
        raise NotImplementedError

    def energy_between(self, t0_s: float, t1_s: float) -> float:
        """Energy over [t0, t1] from the cumulative counters, summed over GPUs, linearly
        interpolated between the nearest readings, J."""
        raise NotImplementedError

    def integral_between(self, t0_s: float, t1_s: float) -> float:
        """Integral of instant power (zero-order hold) over [t0, t1], summed over GPUs, J."""
        raise NotImplementedError

    def timeline(self, max_points: int = 6000) -> PowerTimeline:
        """The configuration's power timeline for the record, decimated to <= max_points."""
        raise NotImplementedError
