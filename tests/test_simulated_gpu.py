"""The simulated GPU: counter ticks, jitter, boxcar average, power limit, analytic truth."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mle_tui.core.clock import VirtualClock
from mle_tui.core.power.simulated import SimulatedGPU, SimulatedPowerSource


def _random_load(clock: VirtualClock, gpu: SimulatedGPU, seed: int, until_s: float) -> None:
    """Drive ``gpu`` with a random piecewise-constant load until ``until_s``."""
    rng = random.Random(seed)
    while clock.now_s() < until_s:
        gpu.set_load(rng.random())
        clock.advance_to(min(until_s, clock.now_s() + rng.uniform(0.005, 3.0)))


def test_counter_delta_matches_truth_within_one_tick() -> None:
    clock = VirtualClock()
    gpu = SimulatedGPU(clock, seed=3)
    rng = random.Random(7)
    reads: list[tuple[float, float]] = []
    load_rng = random.Random(11)
    while clock.now_s() < 120.0:
        gpu.set_load(load_rng.random())
        clock.advance_to(clock.now_s() + load_rng.uniform(0.01, 2.0))
        t, counter, *_ = gpu.read()
        reads.append((t, counter))
    p_max = gpu.tdp_w
    worst = 0.0
    for _ in range(300):
        (t0, c0), (t1, c1) = sorted(rng.sample(reads, 2))
        err = abs((c1 - c0) - gpu.true_energy_j(t0, t1))
        worst = max(worst, err)
        # Each end is off by at most one tick of energy (plus the 1 mJ floor).
        assert err <= 2 * gpu.tick_s * p_max + 2e-3
    assert worst > 0  # the counter really is quantised


def test_counter_within_half_percent_over_20s_windows_at_load() -> None:
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 2, seed=5)
    for i in range(2):
        src.gpu(i).set_load(0.6 + 0.2 * i)
    rng = random.Random(1)
    for _ in range(50):
        t0 = rng.uniform(0, 100)
        clock.advance_to(max(clock.now_s(), t0))
        t0 = clock.now_s()
        r0 = src.read([0, 1])
        clock.advance_to(t0 + rng.uniform(20, 60))
        r1 = src.read([0, 1])
        measured = sum(r1.energy_j) - sum(r0.energy_j)
        truth = src.true_energy_j([0, 1], r0.t_s, r1.t_s)
        assert abs(measured - truth) / truth < 0.005


def test_counter_advances_only_in_ticks() -> None:
    clock = VirtualClock()
    gpu = SimulatedGPU(clock, seed=1, tick_s=0.1)
    gpu.set_load(1.0)
    values = []
    for k in range(1, 2001):
        clock.advance_to(k * 0.001)
        values.append(gpu.read()[1])
    changes = np.flatnonzero(np.diff(values) != 0)
    assert 18 <= len(changes) <= 20  # 2 s at 100 ms ticks
    gaps = np.diff(changes) * 0.001
    assert np.allclose(gaps, 0.1, atol=0.0015)
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_instant_power_jitter_is_about_two_percent_and_unbiased() -> None:
    clock = VirtualClock()
    gpu = SimulatedGPU(clock, seed=2)
    gpu.set_load(1.0)
    true_p = gpu.true_power_w()
    samples = []
    for k in range(1, 3001):
        clock.advance_to(k * 0.1)
        samples.append(gpu.read()[2])
    s = np.array(samples)
    assert abs(s.mean() - true_p) / true_p < 0.002
    assert 0.015 < s.std() / true_p < 0.025


def test_average_is_one_second_boxcar() -> None:
    clock = VirtualClock()
    gpu = SimulatedGPU(clock, seed=0, idle_w=100.0, tdp_w=700.0)
    clock.advance_to(10.0)
    gpu.set_load(1.0)
    p_busy = gpu.true_power_w()
    clock.advance_to(10.25)
    avg = gpu.read()[3]
    assert avg == pytest.approx(0.75 * 100.0 + 0.25 * p_busy)
    clock.advance_to(11.5)
    assert gpu.read()[3] == pytest.approx(p_busy)


def test_power_limit_clamps_power_and_slows_work() -> None:
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 1, tdp_w=700.0, min_limit_w=200.0)
    gpu = src.gpu(0)
    assert src.limit_range_w(0) == (200.0, 700.0)
    assert src.get_limit_w(0) == 700.0
    gpu.set_load(1.0)
    assert gpu.true_power_w() == pytest.approx(0.95 * 700.0)
    assert gpu.speed_factor(1.0) == 1.0
    clock.advance_to(1.0)
    src.set_limit_w(0, 300.0)
    assert gpu.true_power_w() == 300.0
    assert gpu.speed_factor(1.0) == pytest.approx((300.0 / (0.95 * 700.0)) ** 0.6)
    assert gpu.speed_factor(0.0) == 1.0  # idle demand is under the limit
    clock.advance_to(3.0)
    assert gpu.true_energy_j(0.0, 3.0) == pytest.approx(0.95 * 700.0 + 2 * 300.0)
    with pytest.raises(ValueError):
        src.set_limit_w(0, 100.0)
    with pytest.raises(ValueError):
        src.set_limit_w(0, 800.0)
    info = src.gpus()[0]
    assert (info.power_limit_w, info.min_power_limit_w, info.max_power_limit_w) == (300.0, 200.0, 700.0)


def test_deterministic_under_seed() -> None:
    def trace(seed: int) -> list[tuple]:
        clock = VirtualClock()
        src = SimulatedPowerSource(clock, 2, seed=seed)
        _random_load(clock, src.gpu(0), 4, 5.0)
        out = []
        for k in range(50):
            clock.advance_to(5.0 + k * 0.1)
            r = src.read([0, 1])
            out.append((r.t_s, tuple(r.energy_j), tuple(r.instant_w)))
        return out

    assert trace(9) == trace(9)
    assert trace(9) != trace(10)


def test_memory_power_model_rises_with_load() -> None:
    clock = VirtualClock()
    gpu = SimulatedGPU(clock, idle_w=78.0, tdp_w=700.0)
    idle_mem = gpu.read()[4]
    gpu.set_load(1.0)
    clock.advance_to(2.0)
    busy_mem = gpu.read()[4]
    assert 35 < idle_mem < 50 and 80 < busy_mem < 100


def test_use_clock_continues_history() -> None:
    c1 = VirtualClock()
    src = SimulatedPowerSource(c1, 1, seed=0)
    src.gpu(0).set_load(1.0)
    c1.advance_to(50.0)
    before = src.read([0]).energy_j[0]
    c2 = VirtualClock()  # a fresh configuration clock starting at 0
    src.use_clock(c2)
    assert src.read([0]).energy_j[0] == pytest.approx(before, abs=1e-3)
    c2.advance_to(10.0)
    assert src.true_energy_j([0], 0.0, 10.0) == pytest.approx(10.0 * src.gpu(0).true_power_w())


def test_split_reads_agree_with_read_and_ticks_are_where_the_counter_moves() -> None:
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 2, seed=4)
    src.gpu(1).set_load(0.5)
    clock.advance_to(3.21)
    full = src.read([0, 1])
    p, e = src.read_power([0, 1]), src.read_energy([0, 1])
    assert (p.t_s, p.instant_w, p.average_w, p.memory_w) == (full.t_s, full.instant_w, full.average_w, full.memory_w)
    assert (e.t_s, e.energy_j) == (full.t_s, full.energy_j)
    gpu = src.gpu(1)
    ticks = gpu.tick_times_s(3.3, 4.3)
    assert len(ticks) == 10 and np.allclose(np.diff(ticks), 0.1)
    for tick in ticks:
        clock.advance_to(tick - 1e-6)
        c0 = gpu.read_counter()[1]
        clock.advance_to(tick + 1e-6)
        assert gpu.read_counter()[1] > c0


def test_counter_never_goes_backwards_when_load_is_set_at_creation() -> None:
    clock = VirtualClock()
    gpu = SimulatedGPU(clock, seed=2)
    before = gpu.read_counter()[1]
    gpu.set_load(1.0)  # same instant as the creation: replaces the first segment's power
    assert gpu.read_counter()[1] == before
    clock.advance_to(0.5)
    assert gpu.read_counter()[1] > before


def test_injected_counter_read_cost_burns_cpu() -> None:
    import time

    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 2, energy_read_cpu_s=0.002)
    c0 = time.thread_time()
    src.read_energy([0, 1])
    assert time.thread_time() - c0 >= 0.004
    c0 = time.thread_time()
    for _ in range(20):
        src.read_power([0, 1])
    assert time.thread_time() - c0 < 0.004 * 20
