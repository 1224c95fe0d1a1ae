"""The adaptive sweep (issue 11): the early-stop rule, the search and its pruning, the GPU-time
accounting, and ``mle-tui run --adaptive`` end to end on the simulator."""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import msgspec
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adaptive_scenarios import make, run_adaptive, run_grid  # noqa: E402

from mle_tui.core.adaptive.gputime import account, summary_line  # noqa: E402
from mle_tui.core.adaptive.search import AdaptiveSearch, Obs  # noqa: E402
from mle_tui.core.adaptive.spec import AdaptiveSpec  # noqa: E402
from mle_tui.core.adaptive.stopping import EarlyStopMonitor, batch_means_ci  # noqa: E402
from mle_tui.core.config import Config  # noqa: E402
from mle_tui.core.profile import decode_profile  # noqa: E402
from mle_tui.core.records import GpuTimeSplit, Hardware, LatencyStats, RecordHead  # noqa: E402

# Two-sided 95 % t quantiles (independent of the module's table), df 1..40.
T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646, 8: 2.3060, 9: 2.2622,
        10: 2.2281, 11: 2.2010, 12: 2.1788, 13: 2.1604, 14: 2.1448, 15: 2.1314, 16: 2.1199, 17: 2.1098,
        18: 2.1009, 19: 2.0930, 20: 2.0860, 21: 2.0796, 22: 2.0739, 23: 2.0687, 24: 2.0639, 25: 2.0595,
        26: 2.0555, 27: 2.0518, 28: 2.0484, 29: 2.0452, 30: 2.0423, 31: 2.0395, 32: 2.0369, 33: 2.0345,
        34: 2.0322, 35: 2.0301, 36: 2.0281, 37: 2.0262, 38: 2.0244, 39: 2.0227, 40: 2.0211}


# -- the stopping rule -----------------------------------------------------------------------

def _feed(monitor: EarlyStopMonitor, *, w0: float, until_s: float, tok_per_s: float, period_s: float = 0.1,
          running: float = 64.0) -> None:
    t = 0.0
    while t <= until_s and monitor.decided is None:
        monitor.on_batch(t, running, tok_per_s * t, w0 if t >= w0 else None, True)
        t = round(t + period_s, 10)


def _predicted_blocks(delta: float, spec: AdaptiveSpec, min_window_s: float) -> int:
    """Blocks alternate mean x (1 + delta), (1 - delta): the sample sd after n blocks is known in
    closed form, so the block at which the 95 % half-width first reaches ci_rel is too."""
    for n in range(2, 41):
        s2 = delta ** 2 * (n - (n % 2) / n) / (n - 1)  # exact sample variance of the +/- pattern
        half = T975[n - 1] * math.sqrt(s2 / n)
        if n >= spec.min_blocks and n * spec.block_s >= min_window_s and half <= spec.ci_rel:
            return n
    raise AssertionError("no stop within 40 blocks")


@pytest.mark.parametrize("delta", [0.02, 0.035, 0.05])
def test_stop_rule_on_known_variance_trace(delta: float) -> None:
    spec = AdaptiveSpec(ci_rel=0.02, block_s=2.0, min_blocks=5)
    w0, tok, base_w = 3.0, 1000.0, 500.0

    def energy_between(a: float, b: float) -> float:
        # power alternates block by block around 500 W (+/- delta), tokens flow evenly
        def cum(t: float) -> float:
            if t <= w0:
                return base_w * t
            k, r = divmod(t - w0, spec.block_s)
            full = sum(base_w * (1 + delta * (1 if i % 2 == 0 else -1)) * spec.block_s for i in range(int(k)))
            return base_w * w0 + full + base_w * (1 + delta * (1 if int(k) % 2 == 0 else -1)) * r
        return cum(b) - cum(a)

    stops = []
    mon = EarlyStopMonitor(spec, max_num_seqs=64, min_window_s=20.0, min_batch_fraction=0.85,
                           max_energy_per_token_j=100.0, energy_between=energy_between, on_stop=stops.append)
    _feed(mon, w0=w0, until_s=200.0, tok_per_s=tok)
    n = _predicted_blocks(delta, spec, 20.0)
    assert mon.decided is not None and stops == [mon.decided]
    assert abs(mon.decided.blocks - n) <= 1
    assert abs(mon.decided.t_s - (w0 + n * spec.block_s)) <= spec.block_s + 1e-9
    assert mon.decided.ci_rel <= 0.02 and mon.decided.energy_per_token_j == pytest.approx(base_w / tok, rel=0.01)


def test_stop_rule_respects_gates() -> None:
    spec = AdaptiveSpec()
    flat = lambda a, b: 400.0 * (b - a)  # noqa: E731 - zero variance: only the gates hold it back
    mon = EarlyStopMonitor(spec, max_num_seqs=64, min_window_s=30.0, min_batch_fraction=0.85,
                           max_energy_per_token_j=100.0, energy_between=flat, on_stop=lambda es: None)
    _feed(mon, w0=1.0, until_s=100.0, tok_per_s=800.0)
    assert mon.decided is not None and mon.decided.blocks == 15  # 30 s of 2-s blocks, not min_blocks
    low = EarlyStopMonitor(spec, max_num_seqs=64, min_window_s=20.0, min_batch_fraction=0.85,
                           max_energy_per_token_j=100.0, energy_between=flat, on_stop=lambda es: None)
    _feed(low, w0=1.0, until_s=100.0, tok_per_s=800.0, running=40.0)  # batch under 0.85 x 64
    assert low.decided is None
    assert batch_means_ci([1.0])[1] == math.inf and batch_means_ci([1.0, 1.0])[1] == 0.0


# -- the search ------------------------------------------------------------------------------

def _grid_best(table: dict, target: float) -> tuple[int, int]:
    return min((e, lat, c) for c, (lat, e) in table.items() if lat <= target)[2]


def test_search_falls_back_to_the_grid_where_latency_is_not_monotone() -> None:
    bs, pls = [16, 32, 64, 128, 256], [300, 400, 500, 600, 700]
    table = {}
    for b in bs:
        for p in pls:
            lat = (0.005 + 0.00005 * b) * (700 / p) ** 0.3
            table[(b, p)] = (lat, 1000.0 / b * (1 + ((p - 450) / 400) ** 2))
    # B = 64 is slow at every limit (a scheduler pathology): over the target where B = 128 is not
    for p in pls:
        lat, e = table[(64, p)]
        table[(64, p)] = (lat * 1.6, e)
    target = 0.0125
    search = AdaptiveSearch([Config(max_num_seqs=b, power_limit_w=p) for b in bs for p in pls], target)
    while (cfg := search.next()) is not None:
        lat, e = table[(cfg.max_num_seqs, cfg.power_limit_w)]
        search.observe(cfg, Obs(ok=True, energy_j=e, latency_s=lat))
    assert any("latency not monotone in B" in n for n in search.notes)
    best = search.best()
    assert best is not None and best[1] == Config(max_num_seqs=128, power_limit_w=_grid_best(table, target)[1]).key()
    assert _grid_best(table, target)[0] == 128
    assert search.measured() < len(bs) * len(pls)


def test_search_monotone_scenario_needs_few_configurations_and_names_every_pruning_rule() -> None:
    sc = make(3, nonmonotone=False)
    sc.noise_e = sc.noise_l = 0.0
    rec, _, n, search = run_adaptive(sc, random.Random(0))
    assert rec == sc.truth_best()
    assert n <= len(sc.bs) * len(sc.pls) // 2
    pruned = search.pruned
    assert len(pruned) + n == len(sc.bs) * len(sc.pls)
    assert all(why.startswith(("latency bound", "energy bound", "unstable")) for why in pruned.values())


def test_pruning_never_drops_the_true_optimum() -> None:
    checked = 0
    for seed in range(60):
        sc = make(seed, nonmonotone=False)
        sc.noise_e = sc.noise_l = 0.0
        truth = sc.truth_best()
        rec, _, _, search = run_adaptive(sc, random.Random(seed))
        if truth is None:
            continue
        key = Config(max_num_seqs=truth[0], power_limit_w=truth[1]).key()
        assert key not in search.pruned, (seed, search.pruned.get(key))
        assert rec == truth, seed
        checked += 1
    assert checked >= 50


def test_the_neighbour_check_waits_until_the_bisections_row_is_searched() -> None:
    """The bisection ends on a B that meets the target (its server is up): that row's power
    limits come next, on the same server, and the check of the B past the first one over the
    target comes last, not in between (on the H200, 2026-11-30: B = 128's server started twice)."""
    bs, pls = [16, 32, 64, 128, 256, 512], [300, 400, 500, 600, 700]
    lat = {(b, p): 0.01 * b / 128 * (700 / p) ** 0.5 for b in bs for p in pls}
    energy = {(b, p): 100.0 / b ** 0.5 * (1 + ((p - 500) / 400) ** 2) for b in bs for p in pls}
    search = AdaptiveSearch([Config(max_num_seqs=b, power_limit_w=p) for b in bs for p in pls], 0.011)
    order = []
    while (cfg := search.next()) is not None:
        order.append((cfg.max_num_seqs, cfg.power_limit_w))
        key = order[-1]
        search.observe(cfg, Obs(ok=True, energy_j=energy[key], latency_s=lat[key]))
    assert order[:3] == [(64, 700), (256, 700), (128, 700)]  # bisection at the highest limit
    assert order[3][0] == 128  # then B = 128's other limits, its server kept
    assert order[-1] == (512, 700)  # the neighbour check: over the target, as B = 256
    runs = [b for k, (b, _) in enumerate(order) if k == 0 or order[k - 1][0] != b]
    assert runs.count(128) == 1  # B = 128's server started once
    grid = min((e, k) for k, e in energy.items() if lat[k] <= 0.011)[1]
    assert grid == (128, 600) and search.best()[1] == Config(max_num_seqs=128, power_limit_w=600).key()


def test_a_broken_latency_row_keeps_its_own_bounds_only() -> None:
    """A row whose latency does not fall with the power limit stops bounding through itself;
    another row's latency bound across limits still holds (the check compared a power-limit
    index with the broken rows' B indices)."""
    bs, pls = [16, 32, 64], [300, 400, 500]
    cfg = {(b, p): Config(max_num_seqs=b, power_limit_w=p) for b in bs for p in pls}
    search = AdaptiveSearch(list(cfg.values()), 0.010)
    search.observe(cfg[(64, 300)], Obs(ok=True, energy_j=5.0, latency_s=0.005))
    search.observe(cfg[(64, 400)], Obs(ok=True, energy_j=5.0, latency_s=0.008))  # slower at a higher limit
    assert any("latency not falling with the power limit at B=64" in n for n in search.notes)
    search.observe(cfg[(16, 500)], Obs(ok=True, energy_j=9.0, latency_s=0.020))  # over the target
    pruned = search.pruned_now()
    assert pruned[cfg[(16, 400)].key()].startswith("latency bound: B=16 500 W is over the target")
    assert pruned[cfg[(16, 300)].key()].startswith("latency bound: B=16 500 W")


def test_a_record_that_lagged_the_gpu_bounds_latency_but_not_energy() -> None:
    """Invalid by the output-lag gate alone, a record's latency is what the client saw: it prunes
    a B as large or larger at a limit as low or lower like an ok one; its energy is never the
    best and bounds nothing. Any other failed gate takes its latency too."""
    from record_factory import llm_record

    from mle_tui.core.adaptive.plan import obs_of
    from mle_tui.core.records import Gate, SteadyState

    bs, pls = [128, 256, 512], [400, 550, 700]
    cfg = {(b, p): Config(max_num_seqs=b, power_limit_w=p) for b in bs for p in pls}

    def record(*failed: str):  # noqa: ANN202
        gates = [Gate(name=n, ok=False, value=1.0, threshold=0.5, message=f"{n} failed") for n in failed]
        ss = SteadyState(rule="saturation", start_s=0.0, end_s=60.0, energy_j=1.0, tokens=1, mean_batch=512.0,
                         gates=gates)
        return msgspec.structs.replace(llm_record(512, 550, tpot_s=0.0385, energy_j=7.1), status="invalid",
                                       steady_state=ss, reasons=[g.message for g in gates])

    lagged = obs_of(record("output_lag"))
    assert not lagged.ok and lagged.latency_valid and lagged.latency_known
    assert not obs_of(record("output_lag", "window_length")).latency_valid
    assert not obs_of(record("token_count")).latency_valid
    search = AdaptiveSearch(list(cfg.values()), 0.020)
    search.observe(cfg[(512, 550)], lagged)
    pruned = search.pruned_now()
    assert pruned[cfg[(512, 400)].key()].startswith("latency bound: B=512 550 W is over the target")
    assert cfg[(512, 700)].key() not in pruned and search.best() is None
    plain = AdaptiveSearch(list(cfg.values()), 0.020)
    plain.observe(cfg[(512, 550)], msgspec.structs.replace(lagged, latency_valid=False))
    assert cfg[(512, 400)].key() not in plain.pruned_now()


def test_an_unstable_batch_drops_every_larger_batch() -> None:
    cfgs = [Config(max_num_seqs=b, power_limit_w=p) for b in (32, 64, 128) for p in (400, 700)]
    search = AdaptiveSearch(cfgs, 1.0)
    search.observe(cfgs[2], Obs(ok=False, failed=True))  # B = 64, 400 W: the batch never held
    assert "unstable at a smaller B" in search.pruned[Config(max_num_seqs=128, power_limit_w=700).key()]
    assert "unstable" not in search.pruned.get(Config(max_num_seqs=32, power_limit_w=400).key(), "")
    assert search.next() is not None and search.next().max_num_seqs < 128  # the search goes on below it


def test_bench_model_gives_the_claimed_order_of_savings() -> None:
    # a handful of scenarios (the benchmark runs hundreds): fewer GPU-seconds than the grid
    for seed in range(5):
        sc = make(seed)
        _, g_t, _ = run_grid(sc, random.Random(seed))
        _, a_t, _, _ = run_adaptive(sc, random.Random(seed))
        assert a_t < g_t


# -- GPU-time accounting ---------------------------------------------------------------------

def _head(b: int, p: int, *, start: float, warm: float, window: float, rest: float, early: bool = False,
          tpot: float = 0.01, n: int = 100) -> RecordHead:
    from mle_tui.core.records import EarlyStop

    total = start + warm + window + rest
    cfg = Config(max_num_seqs=b, power_limit_w=p)
    r = RecordHead(run_id="r", config_key=cfg.key(), config=cfg, status="ok", task="chat", runtime="sim",
                   model="m", weights="dummy", hardware=Hardware(power_source="simulated", gpu_names=["g"],
                                                                 gpu_indices=[0], tdp_w=700.0),
                   started_unix_s=0.0, duration_s=total, num_requests=n, mean_output_tokens=100.0,
                   gpu_time=GpuTimeSplit(total_gpu_s=total, server_start_gpu_s=start, warmup_gpu_s=warm,
                                         window_gpu_s=window, rest_gpu_s=rest))
    r.latency.tpot = LatencyStats(mean_s=tpot, count=n)
    if early:
        r.early_stop = EarlyStop(t_s=start + warm + window, window_start_s=start + warm, blocks=10, block_s=2.0,
                                 ci_rel=0.018, ci_target=0.02, energy_per_token_j=0.1)
    return r


def test_grid_estimate_carries_the_power_limits_slowdown_to_rows_never_measured_there() -> None:
    """What an adaptive run measures (one B row over the limits, one limit over B) and a TPOT
    separable in B and the limit: the model recovers every other configuration's TPOT, where
    the nearest measured configuration's TPOT (the estimate before 2026-11-30) was 2.5x short
    for B = 512 at 250 W on the H200."""
    from mle_tui.core.adaptive.grid_estimate import TpotModel

    bs, pls = [16, 32, 64, 128, 256, 512], list(range(250, 701, 50))

    def tpot(b: int, p: int) -> float:
        return 0.004 * (b / 16) ** 0.4 * (700 / p) ** 0.8

    cross = [(128, p) for p in pls] + [(b, 700) for b in bs]
    model = TpotModel([(b, p, tpot(b, p)) for b, p in set(cross)])
    for b in bs:
        for p in pls:
            assert model.tpot_s(b, p) == pytest.approx(tpot(b, p), rel=1e-6), (b, p)
    # beyond what was measured: extended from the nearest two, never falling with B or rising
    # with the limit (noise that says otherwise is held flat)
    corner = TpotModel([(64, 700, 0.010), (128, 700, 0.009), (64, 400, 0.020), (128, 400, 0.018)])
    assert corner.tpot_s(512, 700) == pytest.approx(corner.tpot_s(128, 700))
    assert corner.tpot_s(128, 250) > corner.tpot_s(128, 400) > corner.tpot_s(128, 700)
    assert corner.tpot_s(128, None) == pytest.approx(corner.tpot_s(128, 700))  # default limit: the top
    assert TpotModel([(64, 700, 0.01)]).tpot_s(256, 300) == pytest.approx(0.01)  # one point: flat


def test_gpu_time_estimate_of_the_grid_uses_the_tpot_model() -> None:
    cfgs = [Config(max_num_seqs=b, power_limit_w=p) for b in (8, 16) for p in (400, 700)]
    # measured: B = 8 at both limits (twice as slow at 400 W), B = 16 at 700 W only
    part = [_head(8, 700, start=60, warm=0, window=100, rest=0, tpot=0.01),
            _head(8, 400, start=0.5, warm=0, window=200, rest=0, tpot=0.02),
            _head(16, 700, start=60, warm=0, window=60, rest=0, tpot=0.012)]
    ga = account(part, cfgs, n_requests=lambda c: 100, strategy="adaptive")
    runs = {"mns8-tp1-pl700": 100.0, "mns8-tp1-pl400": 200.5, "mns16-tp1-pl700": 60.0}  # a kept server: its 0.5 s is run
    waves = {k: 100 / b * 100 * t for k, b, t in (("mns8-tp1-pl700", 8, 0.01), ("mns8-tp1-pl400", 8, 0.02),
                                                 ("mns16-tp1-pl700", 16, 0.012))}
    overrun = sorted(runs[k] / waves[k] for k in runs)[1]
    b16_400 = 100 / 16 * 100 * (0.012 * 2) * overrun  # B = 16's TPOT, doubled as B = 8's was at 400 W
    assert ga.grid_estimate_gpu_s == pytest.approx(2 * 60 + sum(runs.values()) + b16_400)


def test_gpu_time_accounting_sums_phases_and_estimates_the_grid() -> None:
    cfgs = [Config(max_num_seqs=b, power_limit_w=p) for b in (8, 16) for p in (400, 700)]
    full = [_head(8, 400, start=60, warm=5, window=100, rest=10), _head(8, 700, start=0.5, warm=5, window=80, rest=10),
            _head(16, 400, start=60, warm=5, window=50, rest=10), _head(16, 700, start=0.5, warm=5, window=40, rest=10)]
    gt = account(full, cfgs, n_requests=lambda c: 100)
    assert gt.spent_gpu_s == pytest.approx(sum(r.duration_s for r in full))
    assert (gt.server_start_gpu_s, gt.window_gpu_s) == (pytest.approx(121.0), pytest.approx(270.0))
    assert gt.server_starts == 2 and gt.measured == 4 and gt.total == 4
    # the grid that ran in full is its own estimate (two server starts of 60 s, runs as measured)
    assert gt.grid_estimate_gpu_s == pytest.approx(gt.spent_gpu_s)
    # adaptive: two configurations, one stopped early; the rest from the wave model, calibrated
    part = [full[0], _head(8, 700, start=0.5, warm=5, window=20, rest=2, early=True)]
    ga = account(part, cfgs, n_requests=lambda c: 100, strategy="adaptive")
    overrun = (115.0) / (100 / 8 * 100 * 0.01)  # measured run / wave model of the full config
    wave = {8: 100 / 8 * 100 * 0.01, 16: 100 / 16 * 100 * 0.01}
    expect = 2 * 60 + 115.0 + (wave[8] + 2 * wave[16]) * overrun
    assert ga.grid_estimate_gpu_s == pytest.approx(expect)
    assert ga.early_stopped == 1 and ga.spent_gpu_s == pytest.approx(175.0 + 27.5)
    line = summary_line(ga, "mns8-tp1-pl400")
    assert "after 2 of 4 configurations" in line and "grid ≈" in line and "1 stopped early" in line


# -- end to end --------------------------------------------------------------------------------

PROFILE = """
name = "adaptive-e2e"
task = "chat"
runtime = "sim"
[model]
id = "sim/llama"
weights = "dummy"
[dataset]
name = "synthetic"
num_requests = 128
seed = 1
min_prompt_tokens = 32
max_prompt_tokens = 256
min_output_tokens = 64
max_output_tokens = 256
requests_per_seq = 24
[sweep]
max_num_seqs = "8..64 x2"
power_limit_w = [300, 500, 700]
[target]
metric = "tpot"
value = "20ms"
[steady_state]
[gpu]
simulated = true
"""


def test_early_stopped_record_is_comparable_and_reanalyses_identically(tmp_path: Path) -> None:
    from mle_tui.core.measure.analysis import analyse
    from mle_tui.core.measure.trace import decode_trace
    from mle_tui.core.runner import SweepRunner
    from mle_tui.core.store import RunStore

    prof = decode_profile(PROFILE.replace('"8..64 x2"', "32").replace("[300, 500, 700]", "[500]"), "t.toml")
    SweepRunner(prof, tmp_path / "grid", strategy="grid").run()
    SweepRunner(prof, tmp_path / "ad", strategy="adaptive").run()
    g = RunStore(tmp_path / "grid").load_records()[0]
    a = RunStore(tmp_path / "ad").load_records()[0]
    assert g.early_stop is None and a.early_stop is not None
    assert a.status == "ok" and g.status == "ok"
    assert a.steady_state.end_s == pytest.approx(a.early_stop.t_s)
    assert a.early_stop.ci_rel <= 0.02 and a.duration_s < g.duration_s
    assert a.energy_per_token_j == pytest.approx(g.energy_per_token_j, rel=0.03)
    # eq. 2's mean output is the workload's (the requests that finished first are the short ones)
    assert a.mean_output_tokens == pytest.approx(g.mean_output_tokens)
    assert a.early_stop.workload_mean_output_tokens == pytest.approx(g.mean_output_tokens)
    assert a.energy_per_request_j == pytest.approx(g.energy_per_request_j, rel=0.03)
    assert len(a.requests) < a.num_requests and not any("requests finished" in x for x in a.reasons)
    trace = decode_trace((tmp_path / "ad" / a.analysis.trace).read_bytes())
    assert any(m.label.startswith("early-stop") for m in trace.marks)
    again = analyse(trace, source="live", trace_file=a.analysis.trace)
    assert msgspec.json.encode(again) == msgspec.json.encode(a)
    assert a.gpu_time is not None and a.gpu_time.total_gpu_s == pytest.approx(a.duration_s)
    # the client timeline holds the aborted requests' tokens: it counts the window, checked
    # against the server's counter
    assert trace.aborted_tokens_in_timeline and a.steady_state.token_source == "client timeline"
    assert any(x.name == "token_count" for x in a.steady_state.gates)
    # a vLLM trace from before 2026-11-30 lacks them: the server's counter counts the window
    # and there is nothing exact to check it against
    old = msgspec.structs.replace(trace, aborted_tokens_in_timeline=False)
    legacy = analyse(old, source="live", trace_file=a.analysis.trace)
    assert legacy.steady_state.token_source.startswith("server counter (the client timeline lacks")
    assert legacy.steady_state.tokens == round(legacy.steady_state.server_tokens)
    assert not any(x.name == "token_count" for x in legacy.steady_state.gates) and legacy.status == "ok"
    # ... and without a server counter such a window cannot be counted: invalid, said why
    blind = msgspec.structs.replace(old, batch=msgspec.structs.replace(old.batch, generation_tokens_total=None))
    rec = analyse(blind, source="live", trace_file=a.analysis.trace)
    assert rec.status == "invalid" and any("aborted at the early stop" in x for x in rec.reasons)


def test_mle_tui_run_adaptive_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mle_tui.core.store import RunStore
    from mle_tui.tui.cli import main

    prof = tmp_path / "p.toml"
    prof.write_text(PROFILE)
    out = tmp_path / "run"
    assert main(["run", str(prof), "--adaptive", "--headless", "--out", str(out)]) == 0
    err = capsys.readouterr()
    log = json.loads((out / "adaptive.json").read_text())
    assert log["finished"] and log["strategy"] == "adaptive"
    heads = RunStore(out).load_heads()
    assert len(heads) == len(log["order"]) < 12
    assert set(log["pruned"]) | {h.config_key for h in heads} == {c.key() for c in decode_profile(PROFILE, "p").configs()}
    assert any(h.early_stop is not None for h in heads)
    assert "adaptive: recommendation" in err.err and "grid ≈" in err.err
    assert f", {len(log['pruned'])} pruned, " in err.err and "ETA ~" in err.err and "(adaptive)" in err.err
    # live.jsonl (what attach replays) marks every configuration the search pruned, with its rule
    from mle_tui.tui.attach import LiveTail
    from mle_tui.tui.live import LiveState
    from mle_tui.tui.live_adaptive import PRUNED

    live = LiveState()
    live.apply_all(LiveTail(out / "live.jsonl").read())
    assert {k: r.reasons[0] for k, r in live.rows.items() if r.status == PRUNED} == log["pruned"]
    # the report's account of the grid is the one the app showed live (same N per configuration)
    from mle_tui.core.adaptive.account import sweep_account

    acc = sweep_account(out, heads, RunStore(out).read_manifest())
    assert acc.gpu_time.grid_estimate_gpu_s == pytest.approx(live.gpu_time.grid_estimate_gpu_s)
    assert acc.gpu_time.pruned == len(log["pruned"])
    assert live.eta_s() == 0.0 and live.gpu_time_text().startswith(
        f"adaptive: measured {len(heads)}, pruned {len(log['pruned'])} of 12, ")
    # the report says how the sweep ran, and what was pruned by which rule
    assert main(["report", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Sweep (adaptive): recommendation" in text and "Pruned by the adaptive search" in text
    # and the app's results screen shows the account of an adaptive run
    from mle_tui.tui.screen_results import adaptive_line

    assert adaptive_line(out, heads, RunStore(out).read_manifest()).startswith("adaptive: recommendation (")


# -- vLLM runtime (the fake server of tests/fake_vllm_server.py) --------------------------------



def test_vllm_early_stop_aborts_the_rest_and_returns_what_finished(tmp_path: Path) -> None:
    from mle_tui.core.runtimes.vllm import VllmRuntime
    from test_vllm_runtime import FAKE, _ctx, _profile

    logs: list[str] = []
    done: list[int] = []
    ctx = _ctx(tmp_path, _profile({"FAKE_STARTUP_S": "0.2", "FAKE_STEP_S": "0.01"}), n=40, on_log=logs.append)

    def on_request(row) -> None:  # noqa: ANN001
        done.append(row.id)
        if len(done) == 8:
            ctx.stop_early.set()

    ctx.on_request = on_request
    rt = VllmRuntime(launcher=FAKE, metrics_period_s=0.05)
    res = rt.run(ctx)
    assert 8 <= len(res.requests) < 40 and all(r.ok for r in res.requests)
    assert any("stopped early" in line and "requests aborted" in line and "tokens so far kept" in line
               for line in logs)
    # the aborted requests' tokens so far are in the timeline (the server counted at least those)
    finished = sum(r.output_tokens for r in res.requests)
    assert res.aborted_tokens_in_timeline and res.token_counts_exact
    assert finished < sum(res.token_counts) <= res.server_output_tokens
    assert rt._server is None and rt.process_groups.pgids() == []


def test_vllm_server_shared_across_max_num_seqs_is_checked_against_a_relaunch(tmp_path: Path) -> None:
    from mle_tui.core.dataset_types import Request
    from mle_tui.core.runner import SweepRunner
    from mle_tui.core.runtimes import vllm as vllm_mod
    from mle_tui.core.runtimes.vllm import VllmRuntime
    from mle_tui.core.store import RunStore
    from test_vllm_runtime import FAKE

    prof = decode_profile("""
name = "reuse-b"
task = "chat"
runtime = "vllm"
[model]
id = "fake"
weights = "dummy"
[dataset]
name = "synthetic"
[sweep]
max_num_seqs = [4, 8]
power_limit_w = [300]
[steady_state]
min_window_s = 0.1
[server]
reuse_across_max_num_seqs = true
env = { FAKE_STARTUP_S = "0.2", FAKE_STEP_S = "0.005" }
[gpu]
simulated = true
""", "reuse.toml")
    reqs = [Request(id=i, prompt=f"p{i}", input_tokens=2, output_tokens=20) for i in range(40)]
    cmds: list[list[str]] = []
    orig_cmd = vllm_mod.server_command
    vllm_mod.server_command = lambda *a, **k: cmds.append(orig_cmd(*a, **k)) or cmds[-1]  # type: ignore[assignment]
    try:
        SweepRunner(prof, tmp_path / "run", runtime=VllmRuntime(launcher=FAKE, metrics_period_s=0.05),
                    requests=reqs, allow_simulated=True).run()
    finally:
        vllm_mod.server_command = orig_cmd  # type: ignore[assignment]
    # one shared server (B = 8) for both configurations, then one relaunched for the check
    assert [c[c.index("--max-num-seqs") + 1] for c in cmds] == ["8", "4"]
    heads = {h.config_key: h for h in RunStore(tmp_path / "run").load_heads()}
    assert heads["mns4-tp1-pl300"].server_mode == "started server with max_num_seqs 8, client concurrency capped at 4"
    assert heads["mns8-tp1-pl300"].server_mode.startswith("reused server with max_num_seqs 8")
    check = json.loads((tmp_path / "run" / "verify.json").read_text())
    assert check["config_key"] == "mns4-tp1-pl300" and check["relaunched_status"] in ("ok", "invalid")
    again = RunStore(tmp_path / "run" / "verify").load_heads()
    assert [h.config_key for h in again] == ["mns4-tp1-pl300"] and again[0].server_mode == ""


def test_live_state_shows_the_gpu_time_line() -> None:
    from mle_tui.core.events import GpuTimeUpdate, decode_event, encode_event
    from mle_tui.tui.live import LiveState

    live = LiveState()
    assert live.gpu_time_text() == ""
    ev = GpuTimeUpdate(strategy="adaptive", measured=14, total=60, spent_gpu_s=26 * 60.0,
                       grid_estimate_gpu_s=95 * 60.0, recommended="mns128-tp1-pl400", line="x")
    live.apply(decode_event(encode_event(ev)))  # through live.jsonl, as attach reads it
    assert live.gpu_time_text() == "adaptive: measured 14, pruned 0 of 60, 26 GPU-min, grid ≈ 95 (3.7x)"


def test_a_resumed_adaptive_run_reports_its_search_before_its_first_configuration(tmp_path: Path) -> None:
    """The app marks pruned rows and its adaptive ETA from the search's update: a resumed run
    sends one before it starts a configuration, not only after the first one ends."""
    from mle_tui.core.events import ConfigFinished, ConfigStarted, GpuTimeUpdate
    from mle_tui.core.runner import SweepRunner

    prof = decode_profile(PROFILE.replace("[300, 500, 700]", "[500]"), "t.toml")
    holder: list[SweepRunner] = []

    def stop_after_first(e: object) -> None:
        if isinstance(e, ConfigFinished):
            holder[0].request_stop()

    holder.append(SweepRunner(prof, tmp_path / "ad", strategy="adaptive", listener=stop_after_first))
    holder[0].run()
    seen: list[str] = []
    SweepRunner(prof, tmp_path / "ad", strategy="adaptive",
                listener=lambda e: seen.append(type(e).__name__) if isinstance(
                    e, (GpuTimeUpdate, ConfigStarted)) else None).run()
    assert "ConfigStarted" in seen
    assert seen.index("GpuTimeUpdate") < seen.index("ConfigStarted")


def test_client_capped_reuse_that_cannot_hold_the_batch_says_why(tmp_path: Path) -> None:
    """On an H200 a B = 64 run under a B = 512 server sat at a batch of 55-64 (each freed slot
    waits for the client's next request) and found no window: the record says so, with the
    batch it held and the setting to change; a run on its own server, or a good window, does not."""
    from mle_tui.core.measure.analysis import analyse
    from mle_tui.core.measure.trace import decode_trace
    from mle_tui.core.runner import SweepRunner
    from mle_tui.core.store import RunStore

    prof = decode_profile(PROFILE.replace('"8..64 x2"', "32").replace("[300, 500, 700]", "[500]"), "t.toml")
    SweepRunner(prof, tmp_path / "run", strategy="grid").run()
    rec = RunStore(tmp_path / "run").load_records()[0]
    trace = decode_trace((tmp_path / "run" / rec.analysis.trace).read_bytes())
    shared = msgspec.structs.replace(trace, server_mode="started server with max_num_seqs 512, client "
                                                        "concurrency capped at 32")
    assert not any("client-capped" in r for r in analyse(shared).reasons)  # a good window: nothing to say
    run = [r if r < 31 else (31.0 if i % 2 else 27.0) for i, r in enumerate(trace.batch.running)]
    # client-capped: the server's queue is empty, so every dip below B - 1 ends the saturated run
    dipping = msgspec.structs.replace(shared, batch=msgspec.structs.replace(
        trace.batch, running=run, waiting=[0.0] * len(run)))
    bad = analyse(dipping)
    hint = [r for r in bad.reasons if "client-capped reuse" in r]
    assert bad.status == "invalid" and len(hint) == 1 and "server.reuse_across_max_num_seqs = false" in hint[0]
    own = msgspec.structs.replace(dipping, server_mode="")
    assert not any("client-capped" in r for r in analyse(own).reasons)
