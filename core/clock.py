"""Clocks: the wall clock for real runs and a virtual clock for fast, deterministic tests.

Everything that waits or timestamps inside a configuration goes through a :class:`Clock`, so the
simulated backend can run an hour-long sweep in milliseconds.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    #: True for :class:`VirtualClock` (time advances only through ``sleep``/``advance_to``).
    virtual: bool

    def now_s(self) -> float: ...

    def sleep(self, dt_s: float, cancel: threading.Event | None = None) -> bool:
        """Wait ``dt_s``. Returns False if ``cancel`` was set while waiting."""
        ...


class WallClock:
    """Monotonic wall clock; ``scale`` > 1 runs a simulation faster than real time."""

    virtual = False

    def __init__(self, scale: float = 1.0) -> None:
        self._t0 = time.monotonic()
        self._scale = scale

    def now_s(self) -> float:
        return (time.monotonic() - self._t0) * self._scale

    def sleep(self, dt_s: float, cancel: threading.Event | None = None) -> bool:
        real = max(0.0, dt_s) / self._scale
        if cancel is None:
            time.sleep(real)
            return True
        return not cancel.wait(real)


class VirtualClock:
    """A discrete-event clock. Periodic callbacks registered with :meth:`every` fire, in time
    order, whenever time is advanced past their due time (so a 10 Hz sampler samples exactly
    every 0.1 virtual seconds)."""

    virtual = True

    def __init__(self, start_s: float = 0.0) -> None:
        self._t = start_s
        self._timers: list[tuple[float, int, float, Callable[[float], None]]] = []
        self._seq = itertools.count()
        self._cancelled: set[int] = set()
        self._lock = threading.RLock()

    def now_s(self) -> float:
        return self._t

    def every(self, period_s: float, fn: Callable[[float], None], first_s: float | None = None) -> int:
        """Call ``fn(t)`` every ``period_s`` of virtual time. Returns a handle for :meth:`cancel`."""
        with self._lock:
            seq = next(self._seq)
            due = self._t if first_s is None else first_s
            heapq.heappush(self._timers, (due, seq, period_s, fn))
            return seq

    def cancel(self, handle: int) -> None:
        with self._lock:
            self._cancelled.add(handle)

    def advance_to(self, t_s: float) -> None:
        with self._lock:
            while self._timers and self._timers[0][0] <= t_s:
                due, seq, period, fn = heapq.heappop(self._timers)
                if seq in self._cancelled:
                    self._cancelled.discard(seq)
                    continue
                self._t = max(self._t, due)
                fn(due)
                heapq.heappush(self._timers, (due + period, seq, period, fn))
            self._t = max(self._t, t_s)

    def sleep(self, dt_s: float, cancel: threading.Event | None = None) -> bool:
        if cancel is not None and cancel.is_set():
            return False
        self.advance_to(self._t + max(0.0, dt_s))
        return True


def wait_until(clock: Clock, t_s: float, cancel: threading.Event | None = None) -> bool:
    """Advance a virtual clock to ``t_s``, or sleep on a wall clock until then. Returns False
    if ``cancel`` was set while sleeping."""
    advance_to = getattr(clock, "advance_to", None)
    if clock.virtual and advance_to is not None:
        advance_to(t_s)
        return True
    dt = t_s - clock.now_s()
    return dt <= 0 or clock.sleep(dt, cancel)
