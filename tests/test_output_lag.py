"""The output-lag gate: a record is invalid when the client's last token came well after the GPU
went idle (vLLM's API server streaming behind its engine), not when the two end together."""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np
import pytest

from mle_tui.core.events import LogLine
from mle_tui.core.measure.analysis import analyse
from mle_tui.core.measure.output_lag import LAG_FLOOR_S, MAX_CLIENT_PACE, lag_gate, output_lag, pace_gate
from mle_tui.core.measure.power_trace import PowerTrace
from mle_tui.core.measure.trace import decode_trace
from mle_tui.core.runner import SweepRunner
from mle_tui.core.runtimes.sim import SimRuntime
from mle_tui.core.store import RunStore
from test_runner_sim import llm_profile


def _power(segments: list[tuple[float, float, float]], gpus: int = 1, noise_w: float = 5.0) -> PowerTrace:
    """10 Hz instant power over (start, end, watts) segments, split evenly over ``gpus``."""
    rng = np.random.default_rng(0)
    t = np.arange(0.0, segments[-1][1], 0.1)
    w = np.zeros_like(t)
    for a, b, watts in segments:
        w[(t >= a) & (t < b)] = watts
    w = w + rng.normal(0.0, noise_w, t.size)
    return PowerTrace(gpu_indices=list(range(gpus)), t_s=t.tolist(), instant_w=[(w / gpus).tolist()] * gpus)


def test_a_gpu_idle_while_tokens_still_arrive_is_a_lag_of_that_length() -> None:
    # the GPU works 2-60 s, then idles; the client's last token comes at 75 s (B = 512 on an H200)
    pt = _power([(0, 2, 124), (2, 60, 600), (60, 80, 124)])
    lag = output_lag(pt, first_send_s=2.0, last_end_s=75.0, tdp_w=700.0)
    assert lag is not None
    assert lag.gpu_end_s == pytest.approx(60.0, abs=0.15) and lag.lag_s == pytest.approx(15.0, abs=0.15)
    assert lag.busy_s == pytest.approx(58.0, abs=0.15) and lag.fraction == pytest.approx(15 / 58, rel=0.02)
    assert 100 < lag.idle_w < 140 and 590 < lag.load_w < 610
    g = lag_gate(lag)
    assert g.name == "output_lag" and not g.ok and g.severity == "error"
    assert f"{lag.lag_s:.1f} s after the GPU went idle ({lag.fraction:.1%} of its 58 s of work" in g.message
    assert "server.stream_interval" in g.message


def test_a_run_that_keeps_pace_passes_even_with_a_low_power_tail() -> None:
    # the last requests decode alone at 250 W for 3 s (a 250-W cap's ramp-down) and end with it
    pt = _power([(0, 1, 80), (1, 40, 600), (40, 43, 250), (43, 45, 124)])
    lag = output_lag(pt, first_send_s=1.0, last_end_s=43.0, tdp_w=700.0)
    assert lag is not None and abs(lag.lag_s) < 0.2
    assert lag_gate(lag).ok
    # on two GPUs (TP = 2) the summed power tells the same
    lag2 = output_lag(_power([(0, 1, 250), (1, 40, 1200), (40, 45, 250)], gpus=2), 1.0, 40.0, 1400.0)
    assert lag2 is not None and lag_gate(lag2).ok


def test_the_allowance_is_a_share_of_the_work_with_a_floor() -> None:
    short = output_lag(_power([(0, 2, 124), (2, 30, 600), (30, 33, 124)]), 2.0, 30.0 + 0.9, 700.0)
    assert short is not None and short.allowed_s == LAG_FLOOR_S and lag_gate(short).ok
    long = output_lag(_power([(0, 2, 124), (2, 302, 600), (302, 306, 124)]), 2.0, 302.0 + 2.5, 700.0)
    assert long is not None and long.allowed_s == pytest.approx(3.0, abs=0.01) and lag_gate(long).ok
    late = output_lag(_power([(0, 2, 124), (2, 302, 600), (302, 310, 124)]), 2.0, 302.0 + 3.5, 700.0)
    assert late is not None and not lag_gate(late).ok


def test_nothing_is_said_without_power_an_idle_level_or_a_load_above_it() -> None:
    lagging = _power([(0, 2, 124), (2, 60, 600), (60, 80, 124)])
    assert output_lag(lagging, 2.0, 75.0, 700.0) is not None
    assert output_lag(None, 0.0, 10.0, 700.0) is None
    assert output_lag(lagging, 2.0, 75.0, None) is None  # no TDP: what idle is cannot be told
    assert output_lag(_power([(0, 5, 124)]), 0.0, 4.0, 700.0) is None  # too few samples
    assert output_lag(_power([(0, 60, 130)]), 1.0, 50.0, 700.0) is None  # no load to tell from idle
    assert output_lag(_power([(0, 60, 600)]), None, 50.0, 700.0) is None
    # no idle sample at all: the lowest samples are a ramp-down's load, not idle -- nothing said
    ramp = _power([(0, 40, 600), (40, 42, 340)])
    assert output_lag(ramp, 0.0, 42.0, 700.0) is None


def test_a_simulated_run_keeps_pace_and_a_lagging_copy_of_its_trace_is_invalid(tmp_path: Path) -> None:
    out = tmp_path / "run"
    SweepRunner(llm_profile("16", num=160), out, runtime=SimRuntime()).run()
    rec = RunStore(out).load_records()[0]
    assert rec.status == "ok"  # the simulated load fills its trace: no idle seen, nothing said
    assert all(g.ok for g in rec.steady_state.gates)
    # the same trace with the GPU idle (75 W) over the last 30 % of the load: the client's tokens
    # kept coming after the GPU had stopped -- invalid, and the reason says so
    trace = decode_trace((out / rec.analysis.trace).read_bytes())
    ends = [r.end_s for r in trace.requests if r.ok]
    s0, e0 = min(r.send_s for r in trace.requests), max(ends)
    cut = e0 - 0.3 * (e0 - s0)
    pw = trace.power
    inst = [[75.0 if t > cut else w for t, w in zip(pw.t_s, row)] for row in pw.instant_w]
    lagging = msgspec.structs.replace(trace, power=msgspec.structs.replace(pw, instant_w=inst))
    bad = analyse(lagging)
    assert bad.status == "invalid"
    assert any("after the GPU went idle" in r for r in bad.reasons)
    g = {x.name: x for x in bad.steady_state.gates}["output_lag"]
    assert g.value == pytest.approx(e0 - cut, abs=0.25)


def test_the_engine_stamped_gap_and_the_clients_pace_against_it_are_recorded(tmp_path: Path) -> None:
    """Against the fake vLLM server (an engine step every 10 ms, its inter-token histogram stamped
    by the engine loop as vLLM's is): the window's engine gap is at least the step, and the client
    receives tokens at about the engine's pace (Little's law over the running batch)."""
    from mle_tui.core.runtimes.base import Request
    from mle_tui.core.runtimes.vllm import VllmRuntime
    from test_vllm_runtime import FAKE, _profile

    prof = _profile({"FAKE_STARTUP_S": "0.1", "FAKE_STEP_S": "0.01"},
                    extra="[steady_state]\nmin_window_s = 0.3\n[gpu]\nsimulated = true")
    reqs = [Request(id=i, prompt=f"p{i}", input_tokens=2, output_tokens=30) for i in range(40)]
    out = tmp_path / "run"
    summary = SweepRunner(prof, out, runtime=VllmRuntime(launcher=FAKE, metrics_period_s=0.05), requests=reqs,
                          allow_simulated=True).run()
    assert summary.failed == 0
    ss = RunStore(out).load_records()[0].steady_state
    assert ss.engine_itl_s is not None and ss.engine_itl_s >= 0.01
    assert ss.client_pace_ratio is not None and 0.5 < ss.client_pace_ratio < 2.0, ss
    print(f"engine gap {ss.engine_itl_s * 1e3:.2f} ms, client pace {ss.client_pace_ratio:.3f}")
    # a trace without the histogram (vLLM traces before schema 5, other runtimes) records neither
    trace = decode_trace((out / RunStore(out).load_records()[0].analysis.trace).read_bytes())
    old = msgspec.structs.replace(trace, batch=msgspec.structs.replace(trace.batch, itl_sum_s=None, itl_count=None))
    again = analyse(old).steady_state
    assert again.engine_itl_s is None and again.client_pace_ratio is None


def _lagging_fake(tmp_path: Path, requests: int, tokens: int, server: str = "", **runtime: object):
    """A sweep of one configuration (B = 8, simulated GPU) against the fake vLLM server whose one
    API writer costs 3 ms a chunk while its engine makes 8 tokens every 5 ms; its run directory,
    and the log lines the operator saw."""
    from mle_tui.core.runtimes.base import Request
    from mle_tui.core.runtimes.vllm import VllmRuntime
    from test_vllm_runtime import FAKE, _profile

    env = {"FAKE_STARTUP_S": "0.1", "FAKE_STEP_S": "0.005", "FAKE_API_TOKEN_S": "0.003"}
    prof = _profile(env, server=server, extra="[steady_state]\nmin_window_s = 0.3\n[gpu]\nsimulated = true")
    prof = msgspec.structs.replace(prof, sweep=msgspec.structs.replace(prof.sweep, max_num_seqs=8))
    reqs = [Request(id=i, prompt=f"p{i}", input_tokens=2, output_tokens=tokens) for i in range(requests)]
    out = tmp_path / "run"
    lines: list[str] = []
    SweepRunner(prof, out, runtime=VllmRuntime(launcher=FAKE, metrics_period_s=0.05, **runtime), requests=reqs,
                allow_simulated=True, listener=lambda e: lines.append(e.line) if isinstance(e, LogLine) else None).run()
    return out, lines


def test_a_server_streaming_behind_its_engine_fails_the_gate_and_shows_in_the_pace(tmp_path: Path) -> None:
    """The whole path against the fake vLLM server whose one API writer streams at 3 ms a token
    while its engine makes 8 tokens every 5 ms (as vLLM's API server fell behind on the H200):
    the engine finishes, the simulated GPU it drives goes idle, the client keeps receiving for
    seconds -- the record is invalid by output_lag, and the client's pace against the
    engine-stamped gap shows the same lag."""
    # the live pace over 1-s spans (the engine is saturated for ~2 s here; a real run's span is 10 s)
    out, lines = _lagging_fake(tmp_path, 120, 30, pace_span_s=1.0)
    rec = RunStore(out).load_records()[0]
    gate = {g.name: g for g in rec.steady_state.gates}["output_lag"]
    # 3,600 tokens: the engine needs >= 2.25 s, the API writer >= 10.8 s
    assert rec.status == "invalid" and not gate.ok and gate.value > 5.0
    assert any("after the GPU went idle" in r for r in rec.reasons)
    assert rec.steady_state.client_pace_ratio is not None and rec.steady_state.client_pace_ratio > 2.0
    print(f"lag {gate.value:.1f} s, client pace {rec.steady_state.client_pace_ratio:.2f}")
    # and the operator was told while it ran, once (the live view's log)
    told = [line for line in lines if "slower than vLLM's engine made them" in line]
    assert len(told) == 1 and "server.stream_interval" in told[0], lines[-5:]
    # had the run stopped early (the output_lag gate cannot tell then), client_pace says it
    from mle_tui.core.records import EarlyStop

    trace = decode_trace((out / rec.analysis.trace).read_bytes())
    ss = rec.steady_state
    es = EarlyStop(t_s=ss.end_s, window_start_s=ss.start_s, blocks=5, block_s=(ss.end_s - ss.start_s) / 5,
                   ci_rel=0.01, ci_target=0.02, energy_per_token_j=1.0)
    again = analyse(msgspec.structs.replace(trace, early_stop=es))
    gates = {g.name: g for g in again.steady_state.gates}
    assert "output_lag" not in gates and not gates["client_pace"].ok and again.status == "invalid"


def test_a_stream_interval_lets_the_same_server_keep_pace(tmp_path: Path) -> None:
    """The lagging fake of the test above (its API writer: 3 ms a chunk) with server.stream_interval
    = 16: a chunk carries up to 16 tokens (the first goes alone), the writer keeps up with the
    engine, the client's last token comes with the GPU's work -- as --stream-interval 8 did for
    B = 256 and 512 on the H200 -- and the client still counts every token."""
    # 24,000 tokens: >= 15 s of engine work, so the 10 Hz power trace holds the output_lag gate's 100 samples
    out, _ = _lagging_fake(tmp_path, 600, 40, server="stream_interval = 16")
    store = RunStore(out)
    rec = store.load_records()[0]
    assert "--stream-interval 16" in store.log_path(rec.config_key).read_text().splitlines()[0]
    gate = {g.name: g for g in rec.steady_state.gates}["output_lag"]
    assert gate.ok, gate.message
    assert sum(r.output_tokens for r in rec.requests) == 600 * 40 == rec.server_output_tokens
    # chunks of up to 16 tokens, the first alone: 4 chunks a request, not 40
    trace = decode_trace((out / rec.analysis.trace).read_bytes())
    print(f"lag {gate.value:.2f} s, client pace {rec.steady_state.client_pace_ratio}, "
          f"{len(trace.token_times_s or [])} token-bearing chunks")
    assert trace.token_times_s is not None and len(trace.token_times_s) <= 600 * 4


def test_the_pace_gate_reads_the_h200_runs_as_they_were() -> None:
    """client_pace (early-stopped windows): the H200 runs of 2026-11-30 that kept pace read
    0.994-1.001, the lagging ones 1.034 (1.6 s behind) to 1.357 (38 s behind)."""
    for kept in (0.9941, 0.9977, 1.0007):
        assert pace_gate(kept).ok
    for lagged in (1.0336, 1.0711, 1.3569):
        g = pace_gate(lagged)
        assert not g.ok and g.name == "client_pace" and g.threshold == MAX_CLIENT_PACE
        assert f"{lagged:.3f}x slower" in g.message and "server.stream_interval" in g.message
        assert g.severity == "error"
    # calibrated on text prompts: for visual chat (image prefills count as running) it only warns
    assert pace_gate(1.0711, "visual-chat").severity == "warning" and not pace_gate(1.0711, "visual-chat").ok


def test_the_live_pace_warns_once_when_the_client_falls_behind_and_not_before() -> None:
    """LivePace over synthetic samples: a full batch of 64 with an 8-ms engine gap makes 8,000
    tokens/s; a client receiving them all reads pace 1.0 (no warning), one receiving 6,000/s
    reads 1.33 and is told once; a ramp (batch below 85 % of B) and a histogram-less server say
    nothing."""
    from mle_tui.core.runtimes.base import BatchSample
    from mle_tui.core.runtimes.live_pace import LivePace

    def feed(p: LivePace, client_tok_s: float, running: float = 64, seconds: float = 30, itl: bool = True) -> list:
        out = []
        for k in range(int(seconds * 10)):  # samples and client counts every 0.1 s
            t = k * 0.1
            p.on_batch(BatchSample(t_s=t, running=running, waiting=0, itl_sum_s=(t * 8000 * 0.008) if itl else None,
                                   itl_count=(t * 8000) if itl else None))
            if (w := p.tick(t, int(client_tok_s * t))) is not None:
                out.append((t, w))
        return out

    kept = LivePace(64)
    assert feed(kept, 8000) == [] and kept.pace == pytest.approx(1.0, abs=0.01)
    behind = LivePace(64)
    told = feed(behind, 6000)
    assert len(told) == 1 and 10.0 <= told[0][0] <= 10.5 and behind.pace == pytest.approx(4 / 3, rel=0.01)
    assert "1.33x slower" in told[0][1] and "server.stream_interval" in told[0][1]
    assert feed(LivePace(64), 6000, running=40) == []  # not a full batch: ramp-up or -down
    assert feed(LivePace(64), 6000, itl=False) == []  # no engine histogram: nothing to compare with
