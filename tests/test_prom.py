"""Parsing vLLM's /metrics text and the poller's batch samples."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from mle_tui.core.clock import WallClock
from mle_tui.core.runtimes.prom import SAMPLE_NAMES, PromPoller, filtered_url, parse_metrics

# Shape of vLLM 0.32 (CPU build) /metrics, trimmed; counters expose `_total` and `_created`.
VLLM_032 = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 7.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 120.0
# HELP vllm:num_requests_waiting_by_reason Number of requests waiting, by reason.
# TYPE vllm:num_requests_waiting_by_reason gauge
vllm:num_requests_waiting_by_reason{engine="0",model_name="m",reason="capacity"} 99.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 3.0
vllm:num_preemptions_created{engine="0",model_name="m"} 1.795787436873937e+09
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 4321.0
vllm:generation_tokens_created{engine="0",model_name="m"} 1.7957874368743474e+09
# HELP vllm:request_generation_tokens Number of generation tokens processed.
# TYPE vllm:request_generation_tokens histogram
vllm:request_generation_tokens_bucket{engine="0",le="1.0",model_name="m"} 0.0
vllm:request_generation_tokens_bucket{engine="0",le="+Inf",model_name="m"} 5.0
vllm:request_generation_tokens_count{engine="0",model_name="m"} 5.0
vllm:request_generation_tokens_sum{engine="0",model_name="m"} 999.0
# HELP vllm:inter_token_latency_seconds Histogram of inter-token latency in seconds.
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{engine="0",le="0.01",model_name="m"} 3000.0
vllm:inter_token_latency_seconds_bucket{engine="0",le="+Inf",model_name="m"} 4000.0
vllm:inter_token_latency_seconds_count{engine="0",model_name="m"} 4000.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="m"} 52.5
vllm:inter_token_latency_seconds_created{engine="0",model_name="m"} 1.7957874368743474e+09
"""


def test_parse_vllm_032_names() -> None:
    snap = parse_metrics(VLLM_032)
    assert snap.running == 7.0
    assert snap.waiting == 120.0  # not the by-reason series
    assert snap.kv_cache_usage == 0.25
    assert snap.preemptions_total == 3.0
    assert snap.generation_tokens_total == 4321.0  # not _created, not the histogram
    # the engine-stamped inter-token latencies: the histogram's sum and count, not its buckets
    assert snap.itl_sum_s == 52.5 and snap.itl_count == 4000.0


def test_parse_sums_engines_and_averages_kv() -> None:
    # A second engine: its samples sit inside the same families.
    lines = VLLM_032.splitlines()
    out = []
    for line in lines:
        out.append(line)
        if line.startswith('vllm:num_requests_running{engine="0"'):
            out.append('vllm:num_requests_running{engine="1",model_name="m"} 5.0')
        if line.startswith('vllm:kv_cache_usage_perc{engine="0"'):
            out.append('vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.75')
        if line.startswith('vllm:generation_tokens_total{engine="0"'):
            out.append('vllm:generation_tokens_total{engine="1",model_name="m"} 79.0')
        if line.startswith('vllm:inter_token_latency_seconds_sum{engine="0"'):
            out.append('vllm:inter_token_latency_seconds_sum{engine="1",model_name="m"} 7.5')
            out.append('vllm:inter_token_latency_seconds_count{engine="1",model_name="m"} 1000.0')
    snap = parse_metrics("\n".join(out) + "\n")
    assert snap.running == 12.0
    assert snap.kv_cache_usage == pytest.approx(0.5)
    assert snap.generation_tokens_total == 4400.0
    assert snap.itl_sum_s == 60.0 and snap.itl_count == 5000.0


def test_parse_untyped_total_and_old_kv_name() -> None:
    text = ("vllm:generation_tokens_total 10\n"
            "vllm:gpu_cache_usage_perc 0.5\n"
            "vllm:num_requests_running 2\n")
    snap = parse_metrics(text)
    assert snap.generation_tokens_total == 10.0
    assert snap.kv_cache_usage == 0.5
    assert snap.running == 2.0
    assert snap.waiting is None


def test_parse_missing_metrics_are_none() -> None:
    snap = parse_metrics("# nothing here\nprocess_cpu_seconds_total 1.0\n")
    assert snap.running is None and snap.generation_tokens_total is None
    assert snap.itl_sum_s is None and snap.itl_count is None


class _Gpu:
    def __init__(self) -> None:
        self.loads: list[float] = []

    def set_load(self, utilisation: float) -> None:
        self.loads.append(utilisation)

    def speed_factor(self, utilisation: float) -> float:
        return 1.0


def test_poller_emits_samples_and_drives_sim_gpu() -> None:
    values = iter([2.0, 4.0, 8.0] + [8.0] * 100)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/metrics" or request.headers.get("authorization") != "Bearer k":
            return httpx.Response(404)
        running = next(values)
        return httpx.Response(200, text=VLLM_032.replace("} 7.0", f"}} {running}"))

    gpu = _Gpu()
    got = []
    clock = WallClock()
    with PromPoller("http://x/metrics", clock, max_num_seqs=8, period_s=0.02, listener=got.append,
                    sim_gpus=[gpu], headers={"Authorization": "Bearer k"},
                    transport=httpx.MockTransport(handler)) as poller:
        poller.start()
        time.sleep(0.15)
        poller.stop()
        n = len(got)
        time.sleep(0.05)
        assert len(got) == n  # stopped means stopped
    assert n >= 4
    assert [s.running for s in got[:3]] == [2.0, 4.0, 8.0]
    assert gpu.loads[:3] == [0.25, 0.5, 1.0]
    assert all(b.t_s > a.t_s for a, b in zip(got, got[1:]))
    assert got[0].waiting == 120.0 and got[0].generation_tokens_total == 4321.0
    assert poller.samples == got
    assert not poller.filtered  # /metrics/ answered 404: the plain URL from then on


def test_poller_keeps_its_period_while_the_caller_is_busy() -> None:
    """The thread samples on its 0.05 s grid even while the calling thread holds the CPU."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=VLLM_032)

    with PromPoller("http://x/metrics", WallClock(), max_num_seqs=8, period_s=0.05,
                    transport=httpx.MockTransport(handler)) as poller:
        poller.start()
        t_end = time.monotonic() + 0.5
        x = 0
        while time.monotonic() < t_end:  # busy loop in this thread
            x += 1
        poller.stop()
    gaps = np.diff([s.t_s for s in poller.samples])
    assert len(poller.samples) >= 8
    assert gaps.max() < 0.2


def test_poller_counts_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500)

    with PromPoller("http://x/metrics", WallClock(), max_num_seqs=4,
                    transport=httpx.MockTransport(handler)) as poller:
        assert poller.poll_once() is None
        assert poller.errors == 1 and poller.samples == []


def test_poller_asks_only_for_the_series_it_uses() -> None:
    """The poll goes to /metrics/ with a name[] filter (vLLM's prometheus_client app); the
    bytes that came back are counted."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/metrics/":
            return httpx.Response(200, text=VLLM_032)
        return httpx.Response(200, text=VLLM_032 + "# padding\n" * 5000)

    with PromPoller("http://x/metrics", WallClock(), max_num_seqs=8,
                    transport=httpx.MockTransport(handler)) as poller:
        for _ in range(3):
            assert poller.poll_once() is not None
    assert poller.filtered and poller.scrapes == 3
    assert poller.bytes_total == 3 * len(VLLM_032.encode())
    req = seen[0]
    assert req.url.path == "/metrics/" and req.headers["accept-encoding"] == "identity"
    assert req.url.params.get_list("name[]") == list(SAMPLE_NAMES)
    assert filtered_url("http://h:1/metrics").startswith("http://h:1/metrics/?name%5B%5D=vllm%3A")


def test_poller_falls_back_when_the_filter_drops_what_it_needs() -> None:
    """A server whose filtered answer lacks the running gauge is polled unfiltered."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="" if request.url.path == "/metrics/" else VLLM_032)

    with PromPoller("http://x/metrics", WallClock(), max_num_seqs=8,
                    transport=httpx.MockTransport(handler)) as poller:
        s = poller.poll_once()
    assert s is not None and s.running == 7.0 and not poller.filtered
