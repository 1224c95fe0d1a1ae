"""Window energy at the edges (issue 16): the pure core/measure/energy.py and the sampler's marks,
against the simulated GPU's analytic truth, on the virtual clock (deterministic)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mle_tui.core.clock import VirtualClock
from mle_tui.core.measure import energy as en
from mle_tui.core.measure.power_trace import PowerTrace
from mle_tui.core.measure.sampler import LEARN_TICKS, PowerSampler
from mle_tui.core.power.base import EnergyReading, PowerFields
from mle_tui.core.power.simulated import SimulatedPowerSource
from mle_tui.core.sim.diffusion import DiffusionCostModel, DiffusionSim


def _batch_errors(batch_s: float, seed: int, batches: int, marks: bool) -> list[float]:
    """Relative error of each batch's energy (as the sim runtime measures it) vs the truth."""
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 1, seed=seed)
    sampler = PowerSampler(src, [0], clock)
    sampler.start()
    clock.advance_to(random.Random(seed).uniform(0.3, 1.7))  # a different phase per seed
    steps = 25
    cost = DiffusionCostModel(step_base_s=batch_s / steps, per_mpix_s=0.0, warmup_factor=1.0)
    done = []
    sim = DiffusionSim(batch_size=4, num_inference_steps=steps, width=768, height=768, batches=batches,
                       warmup_batches=0, clock=clock, gpus=src.sim_gpus([0]), cost=cost,
                       on_batch_done=done.append, mark=sampler.mark_now if marks else None)
    sim.run()
    clock.advance_to(clock.now_s() + 0.3)  # the sim runtime's settle (MARK_SETTLE_S)
    out = []
    for b in done:
        assert b.end_s - b.start_s == pytest.approx(batch_s)
        truth = src.true_energy_j([0], b.start_s, b.end_s)
        out.append((sampler.energy_between(b.start_s, b.end_s) - truth) / truth)
    sampler.stop()
    return out


@pytest.mark.parametrize("batch_s,batches", [(2.0, 10), (5.0, 6), (30.0, 3)])
def test_batch_energy_within_half_percent_with_marks(batch_s: float, batches: int) -> None:
    errs = [e for seed in range(12) for e in _batch_errors(batch_s, seed, batches, marks=True)]
    assert max(abs(e) for e in errs) < 0.005


def test_batch_energy_without_marks_misses_the_goal() -> None:
    # The same batches, edges only from the 10 Hz/1 Hz readings: the test above could fail.
    errs = [e for seed in range(12) for e in _batch_errors(2.0, seed, 10, marks=False)]
    assert max(abs(e) for e in errs) > 0.005


def test_marks_locate_the_counter_ticks() -> None:
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 2, seed=3)
    s = PowerSampler(src, [0, 1], clock)
    s.start()
    marks = []
    for k in range(20):
        clock.advance_to(1.0 + k * 1.37)
        src.gpu(0).set_load(0.3 + 0.03 * k)
        marks.append(s.mark_now())
    clock.advance_to(40.0)
    s.stop()
    assert marks == sorted(marks) and marks[0] == pytest.approx(1.0)
    tr = s.trace()
    for g in (0, 1):
        a = en.anchors(tr, g)
        ticks = np.array(src.gpu(g).tick_times_s(0.0, 41.0))
        located = [t for t, ok in zip(a.tau_s, a.located) if ok]
        assert len(located) >= len(marks)
        for tau in located:
            assert np.min(np.abs(ticks - tau)) <= s.edge_probe_s / 2 + 1e-9
    # The counter is read at ~1 Hz plus marks and their probes, not at 10 Hz.
    assert len(tr.t_s) > 390
    # A mark stores itself and 2 readings per GPU (around its tick); the first also learns the
    # tick period (LEARN_TICKS ticks per GPU).
    assert len(tr.counter_t_s) <= 41 + (1 + 2 * 2) * len(marks) + 2 * 2 * LEARN_TICKS


def test_live_and_offline_agree() -> None:
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 2, seed=9)
    s = PowerSampler(src, [0, 1], clock)
    s.start()
    rng = random.Random(4)
    while clock.now_s() < 60.0:
        src.gpu(rng.randrange(2)).set_load(rng.random())
        if rng.random() < 0.3:
            s.mark_now()
        clock.advance_to(clock.now_s() + rng.uniform(0.05, 3.0))
    s.stop()
    tr = s.trace()
    for _ in range(30):
        t0 = rng.uniform(0, 55)
        t1 = t0 + rng.uniform(0.5, 5)
        live = s.window(t0, t1)
        assert live == en.window_energy_j(tr, t0, t1)
        truth = src.true_energy_j([0, 1], t0, t1)
        assert abs(live.energy_j - truth) <= 2 * 0.1 * 1400.0


def test_counter_reset_gives_nan_and_flag() -> None:
    tr = PowerTrace(gpu_indices=[0], t_s=[0.0, 1.0, 2.0, 3.0, 4.0], instant_w=[[100.0] * 5],
                    counter_t_s=[0.0, 1.0, 2.0, 3.0, 4.0], counter_j=[[1000.0, 1100.0, 5.0, 105.0, 205.0]])
    w = en.window_energy_j(tr, 0.5, 3.5)
    assert w.counter_reset and math.isnan(w.energy_j) and w.method == en.METHOD_RESET
    assert w.integral_j == pytest.approx(300.0)
    ok = en.window_energy_j(tr, 2.0, 4.0)  # after the reset
    assert not ok.counter_reset and ok.energy_j == pytest.approx(200.0)


def test_no_counter_gives_nan() -> None:
    tr = PowerTrace(gpu_indices=[0], t_s=[0.0, 1.0], instant_w=[[50.0, 50.0]])
    w = en.window_energy_j(tr, 0.0, 2.0)
    assert math.isnan(w.energy_j) and w.method == en.METHOD_NONE and w.integral_j == pytest.approx(100.0)


def test_window_between_readings_splits_by_power_shape() -> None:
    # One counter interval, power 100 W then 300 W: the delta splits 1:3.
    tr = PowerTrace(gpu_indices=[0], t_s=[0.0, 1.0], instant_w=[[100.0, 300.0]],
                    counter_t_s=[0.0, 2.0], counter_j=[[0.0, 400.0]])
    w = en.window_energy_j(tr, 0.5, 1.5)
    assert w.method == en.METHOD_SPLIT and w.energy_j == pytest.approx(50.0 + 150.0)


class _Fast:
    """A trivially cheap split source (for the full-resolution bound)."""

    kind = "simulated"

    def __init__(self, clock: VirtualClock, n: int) -> None:
        self.clock, self.n = clock, n

    def read_power(self, indices: list[int]) -> PowerFields:
        return PowerFields(t_s=self.clock.now_s(), instant_w=[300.0] * len(indices))

    def read_energy(self, indices: list[int]) -> EnergyReading:
        return EnergyReading(t_s=self.clock.now_s(), energy_j=[300.0 * self.clock.now_s()] * len(indices))

    def read(self, indices: list[int]):  # noqa: ANN201 - unused
        raise AssertionError("split reads expected")


def test_two_hours_at_10hz_on_8_gpus_are_kept_at_full_resolution() -> None:
    clock = VirtualClock()
    s = PowerSampler(_Fast(clock, 8), list(range(8)), clock)
    s.start()
    clock.advance_to(2 * 3600.0)
    s.stop()
    tr = s.trace()
    assert len(tr.t_s) == 72_001 and s.num_readings == len(tr.t_s)
    assert np.allclose(np.diff(tr.t_s), 0.1)
    assert 7_200 <= len(tr.counter_t_s) <= 7_205  # 1 Hz, plus start and the final reading
    assert len(tr.instant_w) == 8 and tr.average_w is None
    assert s.energy_between(100.0, 7000.0) == pytest.approx(8 * 300.0 * 6900.0, rel=1e-9)


# --- properties over generated traces ---------------------------------------------------------
@st.composite
def _traces(draw):  # noqa: ANN202
    """A GPU with piecewise-constant power sampled at every change, and a ticked counter read at
    random times (some in tight clusters, as after a mark)."""
    rng = random.Random(draw(st.integers(0, 10**6)))
    g = draw(st.integers(1, 3))
    breaks = np.cumsum([0.0] + [rng.uniform(0.01, 3.0) for _ in range(draw(st.integers(1, 40)))])
    end = float(breaks[-1]) + rng.uniform(0.1, 2.0)
    power = [[rng.uniform(20.0, 700.0) for _ in breaks] for _ in range(g)]
    extra = sorted(rng.uniform(0, end) for _ in range(draw(st.integers(0, 50))))
    t = np.unique(np.r_[breaks, extra])
    idx = np.searchsorted(breaks, t, "right") - 1
    inst = [[p[i] for i in idx] for p in power]

    def true_integral(k: int, x: float) -> float:
        i = int(np.searchsorted(breaks, x, "right")) - 1
        seg = np.diff(np.r_[breaks[: i + 1], x])
        return float(np.dot(power[k][: i + 1], seg))

    reads = sorted({round(rng.uniform(0, end + 1), 6) for _ in range(draw(st.integers(0, 30)))})
    for c in list(reads)[:5]:
        reads += [c + 0.004 * j for j in range(1, 30)]
    reads = sorted(set(reads))
    tick, phase = 0.1, rng.uniform(0, 0.1)
    counter = [[1e5 * (k + 1) + true_integral(k, phase + math.floor((r - phase) / tick) * tick) for r in reads]
               for k in range(g)]
    tr = PowerTrace(gpu_indices=list(range(g)), t_s=t.tolist(), instant_w=inst, counter_t_s=reads,
                    counter_j=counter)
    return tr, true_integral, end


@settings(max_examples=150, deadline=None)
@given(_traces(), st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3))
def test_adjacent_windows_add_up_and_integral_is_exact(data, cuts) -> None:  # noqa: ANN001
    tr, true_integral, end = data
    a, m, b = sorted(x * end for x in cuts)
    whole = en.window_energy_j(tr, a, b)
    left, right = en.window_energy_j(tr, a, m), en.window_energy_j(tr, m, b)
    scale = max(1.0, abs(whole.integral_j))
    assert left.integral_j + right.integral_j == pytest.approx(whole.integral_j, rel=1e-9, abs=1e-9 * scale)
    exact = sum(true_integral(k, b) - true_integral(k, a) for k in range(len(tr.gpu_indices)))
    assert whole.integral_j == pytest.approx(exact, rel=1e-9, abs=1e-9)
    if tr.counter_t_s:
        assert not whole.counter_reset
        esc = max(1.0, abs(whole.energy_j))
        assert left.energy_j + right.energy_j == pytest.approx(whole.energy_j, rel=1e-9, abs=1e-9 * esc)
        for k in range(len(tr.gpu_indices)):
            assert left.per_gpu_j[k] + right.per_gpu_j[k] == pytest.approx(whole.per_gpu_j[k], rel=1e-9,
                                                                            abs=1e-9 * esc)
    else:
        assert math.isnan(whole.energy_j)


def test_sim_runtime_brackets_diffusion_batches_with_marks(tmp_path) -> None:  # noqa: ANN001
    from mle_tui.core.profile import decode_profile
    from mle_tui.core.runtimes.base import RuntimeContext
    from mle_tui.core.runtimes.sim import SimRuntime

    profile = decode_profile("""
name = "d"
task = "text-to-image"
runtime = "sim"
[model]
id = "sim/sd"
[dataset]
name = "synthetic"
num_requests = 16
[sweep]
batch_size = [4]
num_inference_steps = [25]
resolution = "768x768"
[load]
batches = 6
warmup_batches = 1
[gpu]
simulated = true
""", "d.toml")
    results = {}
    for use_marks in (True, False):
        clock = VirtualClock()
        src = SimulatedPowerSource(clock, 1, seed=5)
        sampler = PowerSampler(src, [0], clock)
        marks: list[float] = []

        def mark() -> float:
            marks.append(sampler.mark_now())
            return marks[-1]

        extra = {"mark_energy": mark} if use_marks else {}
        ctx = RuntimeContext(profile=profile, config=profile.configs()[0], requests=[], clock=clock,
                             gpu_indices=[0], run_dir=tmp_path, log_path=tmp_path / f"log{use_marks}",
                             sim_gpus=src.sim_gpus([0]), energy_between=sampler.energy_between, **extra)
        sampler.start()
        cost = DiffusionCostModel(step_base_s=2.0 / 25, per_mpix_s=0.0, warmup_factor=1.0)
        res = SimRuntime(diffusion_cost=cost).run(ctx)
        sampler.stop()
        assert [b.index for b in res.batches] == list(range(7))
        if use_marks:
            assert marks == [t for b in res.batches for t in (b.start_s, b.end_s)]
        results[use_marks] = [abs(b.energy_j - src.true_energy_j([0], b.start_s, b.end_s))
                              / src.true_energy_j([0], b.start_s, b.end_s) for b in res.batches]
    assert max(results[True]) < 0.005
    assert max(results[False]) > max(results[True])
