"""Pareto frontier vs brute force, and the recommendation's edge cases."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mle_tui.core.config import Config
from mle_tui.core.pareto import Point, frontier, recommend
from mle_tui.core.records import Hardware, Latency, LatencyStats, Record


def brute_force(points: list[Point]) -> set[Point]:
    def dominates(q: Point, p: Point) -> bool:
        return (q.latency_s <= p.latency_s and q.energy_j <= p.energy_j
                and (q.latency_s < p.latency_s or q.energy_j < p.energy_j))
    return {p for p in points if not any(dominates(q, p) for q in points)}


small = st.integers(0, 6).map(float)  # few distinct values: plenty of ties


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(small | st.floats(0, 10), small | st.floats(0, 10)), max_size=30))
def test_frontier_equals_brute_force(coords) -> None:
    pts = [Point(key=f"c{i}", latency_s=lat, energy_j=e) for i, (lat, e) in enumerate(coords)]
    front = frontier(pts)
    assert set(front) == brute_force(pts)
    assert len(front) == len(set(front))
    assert front == sorted(front, key=lambda p: (p.latency_s, p.energy_j, p.key))
    # Along the frontier, latency rises and energy never rises.
    assert all(a.energy_j >= b.energy_j for a, b in zip(front, front[1:]))
    # Deterministic: input order does not matter.
    assert frontier(list(reversed(pts))) == front


def test_frontier_keeps_equal_points_and_drops_nonfinite() -> None:
    a = Point(key="a", latency_s=1.0, energy_j=1.0)
    b = Point(key="b", latency_s=1.0, energy_j=1.0)
    c = Point(key="c", latency_s=1.0, energy_j=2.0)
    n = Point(key="n", latency_s=float("nan"), energy_j=0.0)
    assert frontier([c, b, n, a]) == [a, b]


def rec(key: str, lat: float | None, energy: float | None, status: str = "ok", metric: str = "tpot",
        e2e: float | None = None) -> Record:
    return Record(
        run_id="r", config_key=key, config=Config(max_num_seqs=8), status=status, task="chat", runtime="sim",
        model="m", weights="dummy", simulated=True,
        hardware=Hardware(power_source="simulated", gpu_names=["sim"], gpu_indices=[0], tdp_w=700.0),
        started_unix_s=0.0, duration_s=1.0, latency_metric=metric, latency_value_s=lat,
        energy_per_request_j=energy, latency=Latency(e2e=LatencyStats(mean_s=e2e, count=1)),
    )


RECS = [
    rec("fast", 0.040, 100.0),
    rec("mid", 0.080, 60.0),
    rec("slow", 0.150, 45.0),
    rec("waste", 0.090, 70.0),  # dominated by mid
    rec("broken", 0.010, 1.0, status="failed"),
    rec("unstable", 0.020, 2.0, status="invalid"),
]


def test_recommend_under_target() -> None:
    r = recommend(RECS, 0.100)
    assert r.metric == "tpot"
    assert r.frontier == ["fast", "mid", "slow"]
    assert r.fastest == "fast"
    assert r.recommended == "mid"
    assert r.savings_vs_fastest == pytest.approx(0.4)
    assert "mid" in r.message and "40.0%" in r.message and "fast" in r.message


def test_recommendation_at_the_target_names_the_cheapest_with_margin() -> None:
    # mid (80 ms) lies within 5 % of an 82 ms target: the cheapest with 5 % to spare (<= 77.9 ms) is fast
    r = recommend(RECS, 0.082)
    assert (r.recommended, r.with_margin) == ("mid", "fast")
    assert recommend(RECS, 0.100).with_margin is None  # 80 ms has 20 % to spare
    assert recommend(RECS, 0.0845).with_margin is None  # 80 ms: 5.3 % to spare (the bound is inclusive of 5 %)
    assert recommend(RECS, None).with_margin is None
    # nothing else has the margin: None, the report says so
    assert recommend([rec("only", 0.099, 5.0), rec("slower", 0.2, 1.0)], 0.100).with_margin is None


def test_recommend_no_target_is_lowest_energy() -> None:
    r = recommend(RECS, None)
    assert r.recommended == "slow" and r.savings_vs_fastest == pytest.approx(0.55)


def test_recommend_nothing_meets_target() -> None:
    r = recommend(RECS, 0.030)
    assert r.recommended is None and r.savings_vs_fastest is None
    assert r.fastest == "fast" and r.frontier == ["fast", "mid", "slow"]
    assert "nothing meets" in r.message and "40.0 ms" in r.message


def test_recommend_nothing_valid() -> None:
    r = recommend([RECS[4], RECS[5], rec("nolat", None, 5.0)], 0.1)
    assert r.recommended is None and r.fastest is None and r.frontier == [] and r.savings_vs_fastest is None
    assert "no valid configuration" in r.message
    assert recommend([], 0.1).recommended is None


def test_recommend_ties_are_deterministic() -> None:
    recs = [rec("b", 0.05, 50.0), rec("a", 0.05, 50.0), rec("c", 0.04, 50.0), rec("z", 0.01, 80.0),
            rec("y", 0.01, 80.0)]
    for order in (recs, list(reversed(recs))):
        r = recommend(order, 0.06)
        assert r.recommended == "c"  # equal energy: lower latency wins
        assert r.fastest == "y"  # equal latency and energy: key order
        assert r.savings_vs_fastest == pytest.approx(1 - 50 / 80)
    same = recommend([rec("b", 0.05, 50.0), rec("a", 0.05, 50.0)], 0.06)
    assert same.recommended == "a" and same.fastest == "a" and same.savings_vs_fastest == 0.0


def test_recommend_other_metric_from_latency_block() -> None:
    recs = [rec("p", 0.05, 50.0, e2e=9.0), rec("q", 0.09, 40.0, e2e=3.0)]
    r = recommend(recs, 5.0, metric="e2e")
    assert r.metric == "e2e" and r.recommended == "q" and r.fastest == "q"
