"""ML.ENERGY eq. 1 and eq. 2, cost, carbon, TDP estimate; eq. 2 on the simulated GPU."""

from __future__ import annotations

import pytest

from mle_tui.core.measure import accounting as acc
from mle_tui.core.clock import VirtualClock
from mle_tui.core.power.simulated import SimulatedPowerSource
from mle_tui.core.measure.sampler import PowerSampler
from mle_tui.core.measure.steady import detect_offline


def test_eq2_hand_computed() -> None:
    # 500 W for 30 s = 15,000 J over 6,000 tokens = 2.5 J/token; mean response 200 tokens.
    assert acc.energy_per_request_llm(15_000.0, 6_000, 200.0) == 500.0
    assert acc.energy_per_token_j(15_000.0, 6_000) == 2.5
    assert acc.energy_per_request_llm(1234.5, 3, 1.5) == 1234.5 / 3 * 1.5
    with pytest.raises(ValueError):
        acc.energy_per_request_llm(10.0, 0, 5.0)


def test_eq1_hand_computed() -> None:
    assert acc.energy_per_request_diffusion(4_000.0, 8) == 500.0
    assert acc.energy_per_request_diffusion(999.0, 3) == 333.0
    with pytest.raises(ValueError):
        acc.energy_per_request_diffusion(1.0, 0)


def test_power_cost_carbon_tdp() -> None:
    assert acc.avg_power_w(15_000.0, 30.0) == 500.0
    # 3,600 J/request x 1,000 = 1 kWh.
    assert acc.cost_per_1k_usd(3_600.0, 0.12) == pytest.approx(0.12)
    assert acc.carbon_per_1k_g(3_600.0, 400.0) == pytest.approx(400.0)
    assert acc.tdp_estimate_j(700.0, 2, 30.0) == 42_000.0
    assert acc.tdp_overestimation(42_000.0, 10_500.0) == 4.0
    assert acc.tdp_overestimation(1.0, 0.0) is None


def test_eq2_on_simulated_gpu_within_half_percent_of_truth() -> None:
    """A synthetic LLM run on the simulated GPU: ramp-up, 40 s saturated at B = 8, drain.
    Per-request energy from the sampler's counters vs from the analytic truth."""
    clock = VirtualClock()
    src = SimulatedPowerSource(clock, 2, seed=3)
    sampler = PowerSampler(src, [0, 1], clock)
    sampler.start()
    ts, run, wait = [], [], []
    t = 0.0
    while t < 60.0:
        if t < 5.0:
            r, w = min(6, int(8 * t / 5.0)), 100
        elif t < 45.0:
            r, w = 8, max(1, int(100 * (45.0 - t) / 40.0))
        else:
            r, w = min(6, int(8 * (60.0 - t) / 15.0)), 0
        for i in range(2):
            src.gpu(i).set_load(r / 8)
        ts.append(t)
        run.append(r)
        wait.append(w)
        t = round(t + 0.5, 6)
        clock.advance_to(t)
    sampler.stop()
    win = detect_offline("saturation", 8, ts, run, wait, [], [])
    assert win is not None and win.end_s is not None
    assert win.start_s == 5.0 and win.end_s == 44.5
    tokens = int(8 * 50 * (win.end_s - win.start_s))  # 50 tokens/s per sequence
    e_meas = acc.energy_per_request_llm(sampler.energy_between(win.start_s, win.end_s), tokens, 256.0)
    e_true = acc.energy_per_request_llm(src.true_energy_j([0, 1], win.start_s, win.end_s), tokens, 256.0)
    assert e_meas == pytest.approx(e_true, rel=0.005)
