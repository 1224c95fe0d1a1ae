"""Analysis: ``Trace x method settings -> Record``, pure (no clock, threads or I/O).

The runner calls :func:`analyse` on the trace it has just frozen; ``mle-tui reanalyse`` calls it
on a trace read back from disk. One code path: the same trace and settings give the same
record, to the last bit.

LLM (ML.ENERGY eq. 2): the steady window (saturation or request-count rule), its energy from
the counters (:func:`.energy.window_energy_j`), its output tokens from the server's counter
interpolated at the window edges where the runtime reports one (else the client's timeline),
cross-checked against the client count, the gates (among them: the client's output kept pace
with the GPU, :mod:`.output_lag`), latency statistics, throughput and the
derived figures. Diffusion (eq. 1): each measured batch's energy over its CUDA-synchronised
bracket, per image.
"""

from __future__ import annotations

import bisect
import math

import msgspec
import numpy as np

from ..image_tokens import prompt_token_shares
from ..profile_method import SteadySpec
from ..records import (FORMULAS, Accounting, AnalysisInfo, Gate, Record, RequestRow, SteadyState,
                       Throughput)
from . import accounting as acc
from . import gpus as gpu_figures
from .energy import window_energy_j
from .gputime import gpu_time_split
from .latency import stats as latency_stats
from .latency import summarise
from .neighbours import neighbour_warning
from .output_lag import OutputLag, counter_between, engine_pace, lag_gate, output_lag, pace_gate
from .phases import apply_phases
from .steady import Window, detect_offline, evaluate_gates, saturation_detector
from .timelines import batch_timeline, power_timeline
from .trace import CLIENT_CAPPED, GPU_TIME_SINCE, Trace, unpack_us

#: Bumped whenever a change to this module can move a figure of a record.
ANALYSIS_VERSION = "7"  # 6: client_pace gates early-stopped windows; 7: window_length allows 5 ms of poll jitter
#: Share of failed requests above which a configuration is invalid.
MAX_FAILED_REQUEST_FRACTION = 0.01


def settings_dict(steady: SteadySpec) -> dict[str, str | float | int | bool]:
    return msgspec.structs.asdict(steady)


def analyse(trace: Trace, steady: SteadySpec | None = None, *, source: str = "live",
            trace_file: str | None = None) -> Record:
    """The record of ``trace`` under ``steady`` (default: the settings it ran with)."""
    steady = steady if steady is not None else trace.steady
    rec = Record(
        run_id=trace.run_id, config_key=trace.config_key, config=trace.config, status="ok",
        simulated=trace.simulated, task=trace.task, runtime=trace.runtime, model=trace.model,
        weights=trace.weights, hardware=trace.hardware, started_unix_s=trace.started_unix_s,
        duration_s=trace.end_s, num_requests=trace.num_requests, latency_metric=trace.latency_metric,
        analysis=AnalysisInfo(version=ANALYSIS_VERSION, source=source,  # type: ignore[arg-type]
                              settings=settings_dict(steady), trace=trace_file),
    )
    rec.power_timeline = power_timeline(trace.power)
    b = trace.batch
    rec.batch_timeline = batch_timeline(
        b.t_s, {"running": b.running, "waiting": b.waiting, "kv": b.kv_cache_usage,
                "pre": b.preemptions_total, "gen": b.generation_tokens_total}, trace.batch_source)
    rec.log_tail = list(trace.log_tail)[-50:]
    rec.neighbours = list(trace.neighbours)
    rec.early_stop, rec.server_mode = trace.early_stop, trace.server_mode
    rec.requests = list(trace.requests)
    rec.prompt_tokens = prompt_token_shares(rec.requests)
    rec.batches = list(trace.batches)
    rec.server_output_tokens = trace.server_output_tokens
    if trace.failure is not None:
        rec.status = trace.failure_kind or "failed"
        rec.reasons = [trace.failure]
        rec.gpu_time = gpu_time_split(rec) if trace.schema_version >= GPU_TIME_SINCE else None
        return rec
    if trace.power is not None and trace.power.t_s:
        whole = window_energy_j(trace.power, 0.0, trace.end_s)
        rec.total_energy_j = whole.energy_j if math.isfinite(whole.energy_j) else None
    if trace.is_llm:
        _account_llm(rec, trace, steady)
    else:
        _account_diffusion(rec, trace, steady)
    apply_phases(rec, trace)
    rec.reasons += [f"warning: {w}" for w in trace.warnings]
    rec.reasons += [neighbour_warning(rec.run_id, n) for n in trace.neighbours]
    rec.accounting = _accounting(trace, rec.energy_per_request_j)
    rec.gpu_time = gpu_time_split(rec) if trace.schema_version >= GPU_TIME_SINCE else None
    return rec


def _finish_status(rec: Record, gates: list[Gate], extra_reasons: list[str], warnings: list[str] = ()) -> None:
    reasons = list(extra_reasons)
    invalid = bool(extra_reasons)
    for g in gates:
        if not g.ok:
            if g.severity == "error":
                invalid = True
                reasons.append(g.message)
            else:
                reasons.append(f"warning: {g.message}")
    reasons += [f"warning: {w}" for w in warnings]
    rec.reasons = reasons
    rec.status = "invalid" if invalid else "ok"


def window_of(trace: Trace, steady: SteadySpec) -> tuple[Window | None, float | None]:
    """The steady window by the settings' rule, and (saturation rule) the dropped share."""
    B = trace.config.batch
    b = trace.batch
    if steady.rule == "saturation":
        det = saturation_detector(B, b.t_s, b.running, b.waiting, tolerance=steady.saturation_tolerance,
                                  generated_tokens=b.generation_tokens_total,  # type: ignore[arg-type]
                                  max_dip_s=steady.max_dip_s, max_refill_s=steady.max_refill_s)
        return det.window, det.dropped_fraction()
    first, fin = trace.first_token_s, trace.finish_s
    if not first:
        first = [r.first_token_s for r in trace.requests if r.ok and r.first_token_s is not None]
    if not fin:
        fin = [r.end_s for r in trace.requests if r.ok and r.end_s is not None]
    return detect_offline(steady.rule, B, [], [], [], first, fin, num_requests=trace.num_requests), None


def server_tokens_between(trace: Trace, t0_s: float, t1_s: float) -> float | None:
    """Output tokens by the server's own counter over [t0, t1], linearly interpolated between
    the batch samples around each edge; None without a counter covering the window."""
    return counter_between(trace.batch.t_s, trace.batch.generation_tokens_total, t0_s, t1_s)


def client_tokens_between(trace: Trace, ok_rows: list[RequestRow], t0_s: float, t1_s: float) -> int:
    """Output tokens in [t0, t1] by the client: the runtime's token timeline, else each
    request's tokens spread evenly."""
    if trace.token_times_s is not None:
        return tokens_exact(trace.token_times_s, trace.token_counts, t0_s, t1_s)
    return tokens_uniform(ok_rows, t0_s, t1_s)


def tokens_exact(times: list[float], counts: list[int] | None, t0: float, t1: float) -> int:
    """Tokens of a timeline (ascending times; counts None = one each) in [t0, t1]."""
    lo = bisect.bisect_left(times, t0)
    hi = bisect.bisect_right(times, t1)
    return hi - lo if counts is None else int(sum(counts[lo:hi]))


def tokens_uniform(rows: list[RequestRow], t0: float, t1: float) -> int:
    """Output tokens in [t0, t1], each request's tokens evenly spaced from first token to end."""
    total = 0
    for r in rows:
        if not r.ok or r.first_token_s is None or r.end_s is None or r.output_tokens <= 0:
            continue
        n, a, b = r.output_tokens, r.first_token_s, r.end_s
        if n == 1 or b <= a:
            total += n if t0 <= a <= t1 else 0
            continue
        d = (b - a) / (n - 1)
        k0 = max(0, math.ceil((t0 - a) / d - 1e-9))
        k1 = min(n - 1, math.floor((t1 - a) / d + 1e-9))
        if k1 >= k0:
            total += k1 - k0 + 1
    return total


def _account_llm(rec: Record, trace: Trace, ss: SteadySpec) -> None:
    B = trace.config.batch
    rows = rec.requests
    ok_rows = [r for r in rows if r.ok]
    extra: list[str] = []
    warnings: list[str] = []
    failed_n = len(rows) - len(ok_rows)
    if failed_n and failed_n > MAX_FAILED_REQUEST_FRACTION * max(1, len(rows)):
        extra.append(f"{failed_n} of {len(rows)} requests failed")
    if len(rows) < rec.num_requests and trace.early_stop is None:  # stopped early: aborted on purpose
        extra.append(f"only {len(rows)} of {rec.num_requests} requests finished")
    rec.latency = summarise(rows, unpack_us(trace.itl_gaps_us))
    stats = getattr(rec.latency, rec.latency_metric, None)
    rec.latency_value_s = stats.mean_s if stats is not None else None
    mean_out = float(np.mean([r.output_tokens for r in ok_rows])) if ok_rows else None
    if trace.early_stop is not None and trace.early_stop.workload_mean_output_tokens:
        mean_out = trace.early_stop.workload_mean_output_tokens  # the finished ones are the short ones
    rec.mean_output_tokens = mean_out
    window, dropped = window_of(trace, ss)
    if window is not None and trace.early_stop is not None:  # the window ends where the run stopped
        es = trace.early_stop.t_s
        window = Window(start_s=window.start_s, end_s=es if window.end_s is None else min(window.end_s, es))
    rule: str = ss.rule
    if window is None or window.end_s is None or not window.end_s > window.start_s:
        what = ("the running batch never stayed at max_num_seqs" if ss.rule == "saturation"
                else "too few requests for the request-count rule (need N >> max_num_seqs)")
        extra.append(f"no steady window ({what}); figures are over the whole run")
        rule = "whole-run"
        first = [r.first_token_s for r in ok_rows if r.first_token_s is not None]
        fin = [r.end_s for r in ok_rows if r.end_s is not None]
        t0 = min(first) if first else 0.0
        t1 = max(fin) if fin else rec.duration_s
        window = Window(start_s=t0, end_s=max(t1, t0))
        dropped = None
    t0, t1 = window.start_s, float(window.end_s)  # type: ignore[arg-type]
    dur = t1 - t0
    if dropped:
        warnings.append(f"a stall split the saturated span; {dropped:.0%} of it lies outside the window")
    client = client_tokens_between(trace, ok_rows, t0, t1)
    server = server_tokens_between(trace, t0, t1)
    exact = trace.token_counts_exact and trace.token_times_s is not None
    # an early-stopped trace whose client timeline lacks the aborted requests' tokens (vLLM
    # traces before 2026-11-30) undercounts the window by the tokens in flight at the stop
    short = trace.early_stop is not None and not trace.aborted_tokens_in_timeline
    if short and server is None:
        extra.append("the client timeline lacks the tokens of the requests aborted at the early stop, "
                     "and the server reported no token counter to count the window by")
    if server is not None and (short or ss.token_count == "server" or (ss.token_count == "auto" and not exact)):
        tokens_f, source = server, ("server counter (the client timeline lacks the requests aborted at the "
                                    "early stop)" if short else "server counter")
    elif trace.token_times_s is not None:
        tokens_f = float(client)
        source = "client timeline" if trace.token_counts_exact else "client chunks"
    else:
        tokens_f, source = float(client), "uniform"
    tokens = int(round(tokens_f))
    power = trace.power
    we = window_energy_j(power, t0, t1) if power is not None and power.t_s else None
    energy = we.energy_j if we is not None else math.nan
    bt = np.asarray(trace.batch.t_s, dtype=np.float64)
    inside = (bt >= t0) & (bt <= t1)
    mean_batch = float(np.mean(np.asarray(trace.batch.running, dtype=np.float64)[inside])) if inside.any() else math.nan
    finished = sum(1 for t in trace.finish_s if t0 <= t <= t1) if trace.finish_s else \
        sum(1 for r in ok_rows if r.end_s is not None and t0 <= r.end_s <= t1)
    ept = acc.energy_per_token_j(energy, tokens) if tokens > 0 and math.isfinite(energy) else None
    cap_fraction = (sum(1 for r in ok_rows if r.hit_cap) / len(ok_rows)) if ok_rows else None
    gates = evaluate_gates(
        window_s=dur, mean_batch=mean_batch, max_num_seqs=B,
        energy_per_token_j=ept if ept is not None else float("nan"), cap_fraction=cap_fraction,
        min_window_s=ss.min_window_s, min_batch_fraction=ss.min_batch_fraction,
        max_energy_per_token_j=ss.max_energy_per_token_j, max_cap_fraction=ss.max_cap_fraction,
    )
    if server is not None and exact and not short:
        gates.append(token_gate(client, server, ss.max_token_mismatch))
    lag = _output_lag(trace, rows, ok_rows)
    gates += [lag_gate(lag)] if lag is not None else []
    rec.per_gpu, rec.idle_gpus, gpu_gate, idle_note = gpu_figures.figures(
        trace, ss, [(t0, t1)], [we] if we is not None else None)
    gates += [gpu_gate] if gpu_gate is not None else []
    warnings += [idle_note] if idle_note else []
    itl, pace = engine_pace(trace.batch.t_s, trace.batch.itl_sum_s, trace.batch.itl_count, t0, t1, mean_batch, tokens)
    if trace.early_stop is not None and pace is not None:  # output_lag cannot tell there
        gates.append(pace_gate(pace, trace.task))
    rec.steady_state = SteadyState(
        rule=rule, start_s=t0, end_s=t1, energy_j=energy if math.isfinite(energy) else 0.0, tokens=tokens,
        mean_batch=mean_batch if math.isfinite(mean_batch) else 0.0, requests_finished=finished, gates=gates,
        token_source=source, server_tokens=server, client_tokens=client, dropped_fraction=dropped,
        engine_itl_s=itl, client_pace_ratio=pace)
    if we is not None and we.counter_reset:
        extra.append("the GPU energy counter went backwards (reset) during the configuration")
    elif not math.isfinite(energy) or energy <= 0:
        extra.append("the power source reported no energy for the steady window")
    hint = reuse_hint(trace, B, gates, extra)
    warnings += [hint] if hint else []
    _finish_status(rec, gates, extra, warnings)
    if ept is not None and energy > 0 and mean_out is not None:
        rec.energy_per_token_j = ept
        rec.energy_per_request_j = acc.energy_per_request_llm(energy, tokens, mean_out)
    if dur > 0 and math.isfinite(energy) and energy > 0:
        rec.avg_power_w = acc.avg_power_w(energy, dur)
        rec.tdp_estimate_j = acc.tdp_estimate_j(rec.hardware.tdp_w, trace.config.num_gpus, dur)
        rec.tdp_overestimation = acc.tdp_overestimation(rec.tdp_estimate_j, energy)
    if dur > 0:
        rec.throughput = Throughput(requests_per_s=finished / dur, output_tokens_per_s=tokens / dur)
    if we is not None and math.isfinite(we.integral_j):
        rec.energy_integral_j = we.integral_j


def _output_lag(trace: Trace, rows: list[RequestRow], ok_rows: list[RequestRow]) -> OutputLag | None:
    """How long the client's tokens kept coming after the GPU went idle; None for an early stop
    (it aborts with work still queued, so its end shows nothing) or where it cannot be told."""
    power = trace.power
    if trace.early_stop is not None or power is None or not trace.hardware.tdp_w:
        return None
    return output_lag(power, min((r.send_s for r in rows), default=None),
                      max((r.end_s for r in ok_rows if r.end_s is not None), default=None),
                      trace.hardware.tdp_w * len(power.gpu_indices))


def reuse_hint(trace: Trace, B: int, gates: list[Gate], extra: list[str]) -> str | None:
    """Why a client-capped run on a shared server (``server.reuse_across_max_num_seqs``) found no
    usable window: each freed slot waits for the client's next request, so a fast server's batch
    sits below B where a server started with B would keep it full from its queue."""
    if CLIENT_CAPPED not in trace.server_mode:
        return None
    if not extra and all(g.ok for g in gates if g.name in ("window_length", "mean_batch")):
        return None
    run = np.asarray(trace.batch.running, dtype=np.float64)
    busy = run[run > 0]
    if not busy.size:
        return None
    return (f"client-capped reuse held the running batch at {float(np.mean(busy)):.1f} of {B} on average (each "
            "freed slot waits for the client's next request); measure this B on its own server "
            "(server.reuse_across_max_num_seqs = false)")


def token_gate(client: int, server: float, max_mismatch: float) -> Gate:
    """Client-counted window tokens vs the server's counter over the same window."""
    rel = abs(client - server) / server if server > 0 else math.inf
    ok = rel <= max_mismatch
    return Gate(name="token_count", ok=ok, value=rel if math.isfinite(rel) else None, threshold=max_mismatch,
                message=(f"window tokens {client} by the client vs {server:.0f} by the server's counter: "
                         f"{rel:.1%} apart ({'<=' if ok else '>'} {max_mismatch:.0%})"))


def _account_diffusion(rec: Record, trace: Trace, ss: SteadySpec) -> None:
    power = trace.power
    windows = []  # of the measured batches, in order
    if power is not None and power.t_s:
        # Every batch's energy from the trace over its synchronised bracket (what the runtime
        # logged live came from the same counters, but reanalysis must not depend on it).
        all_w = [window_energy_j(power, b.start_s, b.end_s) for b in rec.batches]
        rec.batches = [msgspec.structs.replace(b, energy_j=w.energy_j) for b, w in zip(rec.batches, all_w)]
        windows = [w for b, w in zip(rec.batches, all_w) if not b.warmup]
    measured = [b for b in rec.batches if not b.warmup]
    rec.latency.batch_latency = latency_stats([b.latency_s for b in measured], FORMULAS["batch_latency"])
    rec.latency.e2e = latency_stats([r.e2e_s for r in rec.requests if r.ok and r.e2e_s is not None],
                                    FORMULAS["batch_latency"])
    stats = getattr(rec.latency, rec.latency_metric, None)
    rec.latency_value_s = stats.mean_s if stats is not None else None
    if not measured:
        _finish_status(rec, [], ["no measured batch"])
        return
    energy = math.fsum(b.energy_j for b in measured)
    images = sum(b.batch_size for b in measured)
    busy_s = math.fsum(b.latency_s for b in measured)
    ok_energy = math.isfinite(energy) and energy > 0 and all(math.isfinite(b.energy_j) for b in measured)
    gate = Gate(name="energy_per_image", ok=ok_energy, value=energy / images if ok_energy else None,
                threshold=0.0, message=("batch energy measured" if ok_energy else
                                        "the power source reported no energy for the batches"))
    rec.steady_state = SteadyState(rule="whole-run", start_s=measured[0].start_s, end_s=measured[-1].end_s,
                                   energy_j=energy if ok_energy else 0.0, tokens=0,
                                   mean_batch=float(images / len(measured)), requests_finished=images,
                                   gates=[gate])
    extra = []
    if any(w.counter_reset for w in windows):
        extra.append("the GPU energy counter went backwards (reset) during the configuration")
    rec.per_gpu, rec.idle_gpus, gpu_gate, idle_note = gpu_figures.figures(
        trace, ss, [(b.start_s, b.end_s) for b in measured], windows or None)
    gates = [gate] + ([gpu_gate] if gpu_gate is not None else [])
    rec.steady_state.gates = gates
    _finish_status(rec, gates, extra, [idle_note] if idle_note else [])
    if ok_energy:
        per_image = math.fsum(acc.energy_per_request_diffusion(b.energy_j, b.batch_size) * b.batch_size
                              for b in measured) / images
        rec.energy_per_request_j = per_image
        rec.energy_per_image_j = per_image
        if busy_s > 0:
            rec.avg_power_w = acc.avg_power_w(energy, busy_s)
            rec.tdp_estimate_j = acc.tdp_estimate_j(rec.hardware.tdp_w, trace.config.num_gpus, busy_s)
            rec.tdp_overestimation = acc.tdp_overestimation(rec.tdp_estimate_j, energy)
    if busy_s > 0:
        rec.throughput = Throughput(requests_per_s=images / busy_s, images_per_s=images / busy_s)
    if windows:
        rec.energy_integral_j = math.fsum(w.integral_j for w in windows)


def _accounting(trace: Trace, e_req: float | None) -> Accounting:
    c = trace.cost
    a = Accounting(price_usd_per_kwh=c.electricity_usd_per_kwh, carbon_g_per_kwh=c.carbon_g_per_kwh)
    if e_req is not None:
        a.cost_per_1k_requests_usd = acc.cost_per_1k_usd(e_req, c.electricity_usd_per_kwh)
        a.carbon_per_1k_requests_g = acc.carbon_per_1k_g(e_req, c.carbon_g_per_kwh)
    return a
