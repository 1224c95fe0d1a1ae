"""Clocks: virtual timers fire in order; wait_until advances or sleeps and honours cancel."""

from __future__ import annotations

import threading
import time

from mle_tui.core.clock import VirtualClock, WallClock, wait_until


def test_virtual_timers_fire_at_their_due_times() -> None:
    clock = VirtualClock()
    seen: list[float] = []
    clock.every(0.1, seen.append)
    assert wait_until(clock, 0.35)
    assert clock.now_s() == 0.35
    assert [round(t, 9) for t in seen] == [0.0, 0.1, 0.2, 0.3]


def test_wait_until_on_the_wall_clock_sleeps_and_can_be_cancelled() -> None:
    clock = WallClock()
    t0 = time.monotonic()
    assert wait_until(clock, clock.now_s() + 0.05)
    assert time.monotonic() - t0 >= 0.045
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    t0 = time.monotonic()
    assert not wait_until(clock, clock.now_s() + 10.0, cancel)
    assert time.monotonic() - t0 < 5.0
    assert wait_until(clock, clock.now_s() - 1.0)  # the past: returns at once
