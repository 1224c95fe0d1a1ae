"""The power sampler: 10 Hz on virtual and wall clocks, window energy, decimation, timeline."""

from __future__ import annotations

import math
import random
import threading

import numpy as np
import pytest

from mle_tui.core.clock import VirtualClock, WallClock
from mle_tui.core.power.base import PowerReading
from mle_tui.core.power.simulated import SimulatedPowerSource
from mle_tui.core.measure.sampler import PowerSampler


def _drive(clock: VirtualClock, src: SimulatedPowerSource, until_s: float, seed: int = 0) -> None:
    rng = random.Random(seed)
    while clock.now_s() < until_s:
        for i in range(len(src.gpus())):
            src.gpu(i).set_load(rng.random())
        clock.advance_to(min(until_s, clock.now_s() + rng.uniform(0.05, 4.0)))


def test_samples_at_10hz_on_virtual_clock() -> None:
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 1)
    seen: list[PowerReading] = []
    s = PowerSampler(src, [0], clock, listener=seen.append)
    s.start()
    clock.advance_to(10.0)
    s.stop()
    t = np.array(s.timeline().t_s)
    assert len(t) == 101
    assert np.allclose(np.diff(t), 0.1)
    assert len(seen) >= 101


def test_energy_between_matches_truth() -> None:
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 2, seed=4)
    s = PowerSampler(src, [0, 1], clock)
    s.start()
    _drive(clock, src, 300.0)
    s.stop()
    rng = random.Random(2)
    for _ in range(100):
        t0 = rng.uniform(0, 250)
        t1 = t0 + rng.uniform(20, 50)
        truth = src.true_energy_j([0, 1], t0, t1)
        # Interpolated counter: off by at most ~a tick plus a sample period at each end.
        assert abs(s.energy_between(t0, t1) - truth) <= 2 * 2 * 0.2 * 700.0
        assert abs(s.integral_between(t0, t1) - truth) / truth < 0.03


def test_counter_and_integral_agree_at_steady_load() -> None:
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 1, seed=8)
    src.gpu(0).set_load(0.9)
    s = PowerSampler(src, [0], clock)
    s.start()
    clock.advance_to(60.0)
    s.stop()
    truth = src.true_energy_j([0], 10.0, 50.0)
    assert s.energy_between(10.0, 50.0) == pytest.approx(truth, rel=0.005)
    assert s.integral_between(10.0, 50.0) == pytest.approx(truth, rel=0.01)


def test_energy_between_reads_now_when_window_ends_after_last_reading() -> None:
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 1, seed=1)
    src.gpu(0).set_load(1.0)
    s = PowerSampler(src, [0], clock)
    s.start()
    clock.advance_to(30.0)
    s.stop()
    clock.advance_to(60.0)  # no periodic sampling any more
    n = len(s)
    e = s.energy_between(0.0, 60.0)
    assert len(s) == n + 1
    assert e == pytest.approx(src.true_energy_j([0], 0.0, 60.0), rel=0.005)


def test_decimation_bounds_memory_and_keeps_counters_exact() -> None:
    # Beyond max_samples power samples are merged; counter readings are never merged, so window
    # energies move only by how the merged power shape splits a counter interval at the edges.
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 1, seed=6)
    full = PowerSampler(src, [0], clock, max_samples=10**9)
    small = PowerSampler(src, [0], clock, max_samples=500)
    full.start()
    small.start()
    _drive(clock, src, 600.0, seed=3)
    full.stop()
    small.stop()
    assert len(full) == 6001
    assert len(small) <= 500
    assert small.num_readings == full.num_readings
    assert small.trace().counter_t_s == full.trace().counter_t_s
    kept_t = small.timeline(10**9).t_s
    rng = random.Random(0)
    for _ in range(50):
        a, b = sorted(rng.sample(kept_t, 2))
        assert small.energy_between(a, b) == pytest.approx(full.energy_between(a, b), abs=2 * 0.1 * 700.0)
        # Merged samples preserve the zero-order-hold integral between kept samples.
        assert small.integral_between(a, b) == pytest.approx(full.integral_between(a, b), rel=1e-9)
    # The newest samples are still at full resolution.
    assert np.allclose(np.diff(kept_t[-50:]), 0.1)
    # Old data coarsens evenly: the spacing of kept samples varies by at most a small factor.
    spacing = np.diff(kept_t)
    assert spacing.max() <= 4 * np.median(spacing[: len(spacing) // 2])


def test_timeline_decimates_and_sums_gpus() -> None:
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 2, seed=2)
    s = PowerSampler(src, [0, 1], clock)
    s.start()
    _drive(clock, src, 100.0)
    s.stop()
    raw = s.timeline(10**6)
    assert raw.decimation == 1 and len(raw.t_s) == 1001
    assert raw.t_s[0] == 0.0  # times as read on the run clock
    assert raw.energy_j[0] == 0.0
    assert set(raw.per_gpu_w) == {"0", "1"}
    assert np.allclose(np.add(raw.per_gpu_w["0"], raw.per_gpu_w["1"]), raw.total_w)
    assert raw.average_w is not None and raw.memory_w is not None
    tl = s.timeline(120)
    assert len(tl.t_s) <= 120 and tl.decimation >= 9
    assert np.allclose(np.add(tl.per_gpu_w["0"], tl.per_gpu_w["1"]), tl.total_w)
    # Time-weighted means: the step integral of the decimated timeline matches the raw one.
    def step_integral(t: list[float], p: list[float], end: float) -> float:
        edges = np.append(t, end)
        return float(np.sum(np.diff(edges) * np.asarray(p)))
    end = raw.t_s[-1] + 0.1
    assert step_integral(tl.t_s, tl.total_w, end) == pytest.approx(step_integral(raw.t_s, raw.total_w, end), rel=1e-9)
    assert tl.energy_j[-1] == pytest.approx(s.energy_between(0.0, tl.t_s[-1]))


class _FlakySource:
    kind = "simulated"

    def __init__(self, inner: SimulatedPowerSource) -> None:
        self.inner = inner
        self.calls = 0

    def read(self, indices: list[int]) -> PowerReading:
        self.calls += 1
        if self.calls % 3 == 0:
            raise RuntimeError("NVML_ERROR_UNKNOWN")
        return self.inner.read(indices)

    def gpus(self):
        return self.inner.gpus()

    def tdp_w(self, index: int) -> float:
        return self.inner.tdp_w(index)

    def close(self) -> None:
        pass


def test_read_errors_and_listener_errors_do_not_stop_sampling() -> None:
    clock = VirtualClock()
    src = _FlakySource(SimulatedPowerSource(clock, 1))

    def bad_listener(r: PowerReading) -> None:
        raise ValueError("ui gone")

    s = PowerSampler(src, [0], clock, listener=bad_listener)
    s.start()
    clock.advance_to(3.0)
    s.stop()
    assert s.errors > 10
    assert 15 <= len(s) <= 25


def test_wall_clock_thread_samples_and_stops_promptly() -> None:
    clock = WallClock()
    src = SimulatedPowerSource(clock, 1)
    got = threading.Event()
    count = [0]

    def listener(r: PowerReading) -> None:
        count[0] += 1
        if count[0] >= 4:
            got.set()

    s = PowerSampler(src, [0], clock, period_s=0.02, listener=listener)
    s.start()
    assert got.wait(5.0)
    thread = s._thread
    s.stop()
    assert thread is not None and not thread.is_alive()
    t = s.timeline().t_s
    assert all(b > a for a, b in zip(t, t[1:]))

    # A long period must not delay stop(): the thread waits on the stop event.
    slow = PowerSampler(src, [0], clock, period_s=3600.0)
    slow.start()
    th = slow._thread
    slow.stop()
    assert th is not None and not th.is_alive()


def test_counter_read_at_1hz_and_listener_gets_latest_counter() -> None:
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 1, seed=3)
    seen: list[PowerReading] = []
    s = PowerSampler(src, [0], clock, listener=seen.append)
    s.start()
    clock.advance_to(10.0)
    s.stop()
    tr = s.trace()
    assert len(tr.t_s) == 101
    assert np.allclose(tr.counter_t_s, np.arange(11.0))  # start, 1 Hz, final (same instant as 10 s)
    r = next(x for x in seen if x.t_s == pytest.approx(2.5))
    assert r.energy_t_s == pytest.approx(2.0) and r.energy_j == [tr.counter_j[0][2]]
    with pytest.raises(ValueError):
        PowerSampler(src, [0], clock, counter_period_s=2.0)


def test_sources_without_split_reads_still_work() -> None:
    clock = VirtualClock()
    inner = SimulatedPowerSource(clock, 1, seed=1)
    s = PowerSampler(_FlakySource(inner), [0], clock)
    assert not s._split
    inner.gpu(0).set_load(0.8)
    s.start()
    clock.advance_to(5.0)
    t_mark = s.mark_now()
    clock.advance_to(20.0)
    s.stop()
    assert t_mark == 5.0
    assert s.energy_between(1.0, 19.0) == pytest.approx(inner.true_energy_j([0], 1.0, 19.0), rel=0.01)


def test_wall_clock_mark_probes_until_the_counter_ticks() -> None:
    clock = WallClock()
    src = SimulatedPowerSource(clock, 1, seed=2)
    src.gpu(0).set_load(0.7)
    s = PowerSampler(src, [0], clock, period_s=0.05, edge_probe_max_s=5.0)
    s.start()
    before = s.num_counter_reads
    t = s.mark_now()
    e = s.energy_between(t - 0.01, t)  # waits for the mark's tick search (it started before t)
    assert s._probe is None and math.isfinite(e)
    tr = s.trace()
    after = [c for c, tt in zip(tr.counter_j[0], tr.counter_t_s) if tt > t]
    assert s.num_counter_reads >= before + 2 and after and after[-1] > tr.counter_j[0][tr.counter_t_s.index(t)]
    s.stop()


def test_tick_tracker_learns_the_period_and_forgets_a_wrong_one() -> None:
    from mle_tui.core.measure.tick_tracker import TickTracker

    rng = random.Random(1)
    phase, period = 0.0371, 0.1
    tr = TickTracker()
    assert tr.window_after(1.0) is None
    for k in (3, 4, 5, 6, 26, 46, 346):  # learning burst, then marks 2 s and 30 s apart
        tr.located(phase + k * period + rng.uniform(-0.0025, 0.0025), 0.0025)
    assert tr.period_s == pytest.approx(period, abs=1e-4)
    w = tr.window_after(40.0)
    assert w is not None
    pred, half = w
    true_next = phase + math.ceil((40.0 - phase) / period) * period
    assert abs(pred - true_next) <= half < period / 3
    tr.located(true_next + 0.04, 0.0025)  # not periodic as learned
    assert tr.period_s is None and tr.window_after(41.0) is None


def test_marks_after_the_first_probe_a_few_reads_only() -> None:
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 1, seed=8)
    s = PowerSampler(src, [0], clock)
    s.start()
    reads = []
    for k in range(12):
        clock.advance_to(1.0 + k * 2.03)
        n = s.num_counter_reads
        s.mark_now()
        clock.advance_to(clock.now_s() + 0.5)  # no periodic counter read in between (< 1 s)
        reads.append(s.num_counter_reads - n)
    s.stop()
    assert reads[0] >= 20  # the first mark learns the tick period (8 ticks densely)
    assert max(reads[3:]) <= 6  # then: the mark plus ~4 probes around the predicted tick
