"""The adaptive sweep in the app (issue 11): pruned rows, the ETA over what the search may
still measure, the live count and GPU time, replay from ``live.jsonl``, and the GPU-time
formatter of ``mle-tui report``."""

from __future__ import annotations

import io
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adaptive_scenarios import make  # noqa: E402

from mle_tui.core.adaptive.gputime import RunGpuTime, fmt_gpu_time, summary_line  # noqa: E402
from mle_tui.core.adaptive.search import NOT_MEASURED, AdaptiveSearch  # noqa: E402
from mle_tui.core.config import Config  # noqa: E402
from mle_tui.core.events import (ConfigFinished, ConfigStarted, GpuTimeUpdate, RunStarted,  # noqa: E402
                                 decode_event, encode_event)
from mle_tui.tui.headless import ProgressPrinter  # noqa: E402
from mle_tui.tui.live import DONE, PENDING, LiveState  # noqa: E402
from mle_tui.tui.live_adaptive import PRUNED, eta_text, position_text  # noqa: E402

KEYS = ["a", "b", "c", "d", "e", "f"]
RULE = "latency bound: B=64 700 W is over the target (0.03 s), so a B as large or larger ..."


def _gt(pruned: dict[str, str], measured: int = 1, strategy: str = "adaptive") -> GpuTimeUpdate:
    return GpuTimeUpdate(strategy=strategy, measured=measured, total=len(KEYS), spent_gpu_s=600.0,
                         grid_estimate_gpu_s=3000.0, line="x", pruned=pruned)


def _run_one(live: LiveState, wall: list[float], key: str, took_s: float) -> None:
    live.apply(ConfigStarted(key=key, index=KEYS.index(key), total=len(KEYS), config=Config(max_num_seqs=8),
                             label=key, num_requests=10))
    wall[0] += took_s
    live.apply(ConfigFinished(key=key, status="ok", reasons=[], energy_per_request_j=1.0, latency_value_s=0.01,
                              record_path=""))


def _started_after_a(t0_s: float) -> tuple[LiveState, list[float]]:
    """A run of KEYS on a fake wall clock whose first configuration "a" took 10 s."""
    wall = [t0_s]
    live = LiveState(now_s=lambda: wall[0])
    live.apply(RunStarted(run_id="r", run_dir="/tmp/r", configs=KEYS, skipped=[], power_source="simulated",
                          simulated=True))
    _run_one(live, wall, "a", 10.0)
    return live, wall


def test_eta_of_an_adaptive_run_leaves_out_the_pruned_configurations() -> None:
    live, wall = _started_after_a(1000.0)
    # before the search says anything: every pending configuration counts (as on the grid)
    assert live.eta_s() == pytest.approx(50.0) and eta_text(live) == "50s"
    assert position_text(live) == "1/6"
    live.apply(_gt({"d": RULE, "e": RULE, "f": "energy bound: ..."}))
    assert [live.rows[k].status for k in KEYS] == [DONE, PENDING, PENDING, PRUNED, PRUNED, PRUNED]
    assert live.rows["d"].reasons == [RULE]
    # 2 configurations left of 10 s each, not 5; said to be the search's estimate
    assert live.eta_s() == pytest.approx(20.0)
    assert eta_text(live) == "~20s (adaptive)"
    assert position_text(live) == ""  # the grid index says nothing about what is left
    assert live.gpu_time_text() == "adaptive: measured 1, pruned 3 of 6, 10 GPU-min, grid ≈ 50 (5.0x)"
    # a measurement broke the rule a bound rested on: "d" is back in the plan
    _run_one(live, wall, "b", 10.0)
    live.apply(_gt({"e": RULE, "f": "energy bound: ..."}, measured=2))
    assert live.rows["d"].status == PENDING and live.rows["d"].reasons == []
    assert live.eta_s() == pytest.approx(20.0)  # c and d
    # a configuration pruned while it runs (or measured anyway) keeps its own status
    live.apply(ConfigStarted(key="c", index=2, total=6, config=Config(max_num_seqs=8), label="c", num_requests=10))
    live.apply(_gt({"c": RULE, "d": RULE, "e": RULE, "f": RULE}, measured=2))
    assert live.rows["c"].status != PRUNED and live.counts()[PRUNED] == 3


def test_a_grid_run_is_unchanged() -> None:
    live, wall = _started_after_a(0.0)
    live.apply(_gt({}, strategy="grid"))
    assert live.eta_s() == pytest.approx(50.0) and eta_text(live) == "50s" and not live.adaptive
    assert live.gpu_time_text() == "grid: 1/6 configs, 10 GPU-min"


def test_eta_while_draining_counts_only_the_running_configuration() -> None:
    live, wall = _started_after_a(0.0)
    assert live.eta_s() == pytest.approx(50.0)  # 5 pending of 10 s each
    live.apply(ConfigStarted(key="b", index=1, total=6, config=Config(max_num_seqs=8), label="b", num_requests=10))
    live.draining = True  # the app's f: b finishes, nothing else starts
    assert live.eta_s() == pytest.approx(10.0)


def test_pruned_rows_replay_from_live_jsonl_on_attach(tmp_path: Path) -> None:
    live_jsonl = tmp_path / "live.jsonl"
    events = [RunStarted(run_id="r", run_dir=str(tmp_path), configs=KEYS, skipped=[], power_source="simulated",
                         simulated=True),
              ConfigFinished(key="a", status="ok", reasons=[], energy_per_request_j=1.0, latency_value_s=0.01,
                             record_path=""),
              _gt({"e": RULE, "f": RULE})]
    live_jsonl.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    from mle_tui.tui.attach import LiveTail

    live = LiveState()
    live.apply_all(LiveTail(live_jsonl).read())
    assert {k for k, r in live.rows.items() if r.status == PRUNED} == {"e", "f"}
    assert live.rows["e"].reasons == [RULE] and live.adaptive
    # the run resumed in the same directory: its search decides again (nothing pruned until it says)
    live.apply(decode_event(encode_event(RunStarted(run_id="r2", run_dir=str(tmp_path), configs=KEYS, skipped=["a"],
                                                    power_source="simulated", simulated=True))))
    assert PRUNED not in live.counts() and not live.adaptive


def test_headless_eta_leaves_out_the_pruned_configurations() -> None:
    clock = [0.0]
    p = ProgressPrinter(io.StringIO(), tty=False, clock=lambda: clock[0])
    p(RunStarted(run_id="r", run_dir="/tmp/r", configs=KEYS, skipped=[], power_source="simulated", simulated=True))
    p(ConfigStarted(key="a", index=0, total=6, config=Config(max_num_seqs=8), label="a", num_requests=10))
    clock[0] = 10.0
    p(ConfigFinished(key="a", status="ok", reasons=[], energy_per_request_j=1.0, latency_value_s=0.01,
                     record_path=""))
    assert p.eta_s() == pytest.approx(50.0) and p.eta_text() == "50s"
    p(_gt({"d": RULE, "e": RULE, "f": RULE}))
    assert p.eta_s() == pytest.approx(20.0) and p.eta_text() == "~20s (adaptive)"


def test_search_pruned_now_names_only_what_a_rule_excludes() -> None:
    sc = make(3, nonmonotone=False)
    sc.noise_e = sc.noise_l = 0.0
    search = AdaptiveSearch(sc.configs(), sc.target_s)
    rng = random.Random(0)
    while not search.pruned_now():  # measure until a rule excludes something
        cfg = search.next()
        assert cfg is not None
        search.observe(cfg, sc.measure(cfg.max_num_seqs, cfg.power_limit_w, rng))
    now, every = search.pruned_now(), search.pruned
    assert now and set(now) < set(every)  # the search is not done: some are still to measure
    assert all(every[k] == why for k, why in now.items())
    assert all(every[k] == NOT_MEASURED for k in set(every) - set(now))


def test_gpu_time_formatter_keeps_the_parts_of_a_short_run_readable() -> None:
    assert fmt_gpu_time(26 * 60.0) == "26 GPU-min"
    assert fmt_gpu_time(4.54 * 60.0) == "4.5 GPU-min"
    assert fmt_gpu_time(42.4) == "42 GPU-s"
    assert fmt_gpu_time(3.21) == "3.2 GPU-s"
    assert fmt_gpu_time(None) == "? GPU-s"
    short = RunGpuTime(spent_gpu_s=50.0, server_start_gpu_s=12.0, warmup_gpu_s=3.14, window_gpu_s=30.0,
                       rest_gpu_s=4.86, measured=4, total=4)
    assert summary_line(short) == ("measured 4 of 4 configurations, 50 GPU-s "
                                   "[starts 12, warm-up 3.1, windows 30, rest 4.9]")
    mid = RunGpuTime(spent_gpu_s=90.0, server_start_gpu_s=30.0, warmup_gpu_s=6.0, window_gpu_s=48.0,
                     rest_gpu_s=6.0, measured=3, total=9, pruned=5, grid_estimate_gpu_s=600.0, strategy="adaptive")
    assert summary_line(mid, "mns8") == ("recommendation (mns8) after 3 of 9 configurations, 5 pruned, 1.5 GPU-min, "
                                         "grid ≈ 10 (6.7x) [starts 0.5, warm-up 0.1, windows 0.8, rest 0.1]")
