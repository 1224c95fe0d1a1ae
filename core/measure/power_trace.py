"""What the power sampler saw during one configuration, at full resolution (a msgspec Struct
that the trace stores and the pure energy functions read)."""

from __future__ import annotations

import msgspec


class PowerTrace(msgspec.Struct, kw_only=True):
    """Power fields and energy-counter readings of a configuration's GPUs, on the run clock.

    Power fields (instant, 1-s average, HBM) are read periodically (``period_s``); the
    cumulative energy counter is read less often and at events (``counter_t_s``), so the two
    have their own time axes. Lists are per GPU, in ``gpu_indices`` order."""

    gpu_indices: list[int]
    period_s: float = 0.1
    #: Times of the power-field samples, s (ascending).
    t_s: list[float] = []
    #: Instant power per GPU, W: ``instant_w[g][i]`` at ``t_s[i]``.
    instant_w: list[list[float]] = []
    #: 1-s average power per GPU, W, where the source reports it.
    average_w: list[list[float]] | None = None
    #: HBM power per GPU, W, where the source reports it.
    memory_w: list[list[float]] | None = None
    #: Times of the energy-counter readings, s (ascending).
    counter_t_s: list[float] = []
    #: Cumulative energy counter per GPU, J, as read (not rebased): ``counter_j[g][k]``.
    counter_j: list[list[float]] = []
