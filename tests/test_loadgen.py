"""The streaming load generator against a fake OpenAI server (a subprocess) and mock transports."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from mle_tui.core.clock import WallClock
from mle_tui.core.dataset_types import Request
from mle_tui.core.runtimes.loadgen import (
    LoadProgress, LoadSettings, arrival_offsets_s, build_payload, chunk_token_counts, run_load)
from mle_tui.core.runtimes.vllm_client import bundling, token_timeline
from mle_tui.core.procgroup import kill_group
from mle_tui.core.runtimes.vllm import free_port

FAKE = Path(__file__).parent / "fake_vllm_server.py"


@pytest.fixture
def fake_server(request):
    """Start the fake server (max_num_seqs 4); yields (base_url, api_key). Indirect parameter:
    extra environment for the fake."""
    port = free_port()
    env = {**os.environ, "FAKE_STARTUP_S": "0", "FAKE_STEP_S": "0.003", "FAKE_EOS_AFTER": "5",
           **getattr(request, "param", {})}
    proc = subprocess.Popen([sys.executable, str(FAKE), "--model", "m", "--port", str(port),
                             "--api-key", "k", "--max-num-seqs", "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "fake server did not start"
        time.sleep(0.05)
    yield url, "k"
    kill_group(proc.pid, proc, 2.0)


def _reqs(n: int, out: int = 12) -> list[Request]:
    return [Request(id=i, prompt=f"prompt {i}", input_tokens=3, output_tokens=out + i % 3) for i in range(n)]


async def test_all_at_once_rows_and_callbacks(fake_server) -> None:
    url, key = fake_server
    clock = WallClock()
    firsts: dict[int, float] = {}
    done = []
    s = LoadSettings(base_url=url, model="m", api_key=key, ignore_eos=True)
    res = await run_load(_reqs(20), s, clock, on_first_token=lambda i, t: firsts.setdefault(i, t),
                         on_request=done.append)
    assert [r.id for r in res.rows] == list(range(20))
    assert len(done) == 20 and set(firsts) == set(range(20))
    for r in res.rows:
        assert r.ok and r.error is None
        assert r.output_tokens == 12 + r.id % 3  # ignore_eos: exactly max_tokens
        assert not r.hit_cap  # dummy weights: the length is the reference, not a cap
        assert 0 < r.ttft_s <= r.e2e_s
        assert r.first_token_s == pytest.approx(firsts[r.id])
        assert r.itl_count == r.output_tokens - 1
        assert r.tpot_s == pytest.approx((r.e2e_s - r.ttft_s) / (r.output_tokens - 1))
    # all sent at t = 0: the send times are within a short spread
    sends = [r.send_s for r in res.rows]
    assert max(sends) - min(sends) < 0.5
    # 4 slots, 20 requests: the last ones got their first token after others had ended
    # (waves of >= 12 engine steps; a ratio of TTFTs was timing luck on a loaded box)
    assert max(r.first_token_s for r in res.rows) > min(r.end_s for r in res.rows)
    assert len(res.itl_gaps_s) == sum(r.itl_count for r in res.rows)
    assert res.output_tokens == sum(12 + i % 3 for i in range(20))


async def test_real_weights_eos_and_cap(fake_server) -> None:
    url, key = fake_server
    reqs = [Request(id=0, prompt="a", output_tokens=3), Request(id=1, prompt="b", output_tokens=50)]
    s = LoadSettings(base_url=url, model="m", api_key=key, ignore_eos=False)
    res = await run_load(reqs, s, WallClock())
    capped, eos = res.rows
    assert capped.output_tokens == 3 and capped.hit_cap  # the cap stopped it
    assert eos.output_tokens == 5 and not eos.hit_cap  # EOS (after 5 tokens) ended it


async def test_chat_messages_and_token_ids(fake_server) -> None:
    url, key = fake_server
    reqs = [Request(id=0, messages=[{"role": "user", "content": "hi"}], output_tokens=4),
            Request(id=1, prompt_token_ids=[11, 12, 13], input_tokens=3, output_tokens=4)]
    res = await run_load(reqs, LoadSettings(base_url=url, model="m", api_key=key, ignore_eos=True), WallClock())
    assert all(r.ok and r.output_tokens == 4 for r in res.rows)
    assert res.rows[1].input_tokens == 3


async def test_errors_become_failed_rows(fake_server) -> None:
    url, _ = fake_server
    res = await run_load(_reqs(2), LoadSettings(base_url=url, model="m", api_key="wrong"), WallClock())
    assert all(not r.ok and r.error.startswith("HTTP 401") for r in res.rows)
    assert res.output_tokens == 0 and res.itl_gaps_s == []
    port = free_port()  # nothing listens there
    res = await run_load(_reqs(1), LoadSettings(base_url=f"http://127.0.0.1:{port}", model="m"), WallClock())
    assert not res.rows[0].ok and "Connect" in res.rows[0].error


async def test_concurrency_cap_limits_in_flight() -> None:
    in_flight = [0]
    peak = [0]

    async def stream():
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.02)
        yield b'data: {"choices":[{"text":"x"}]}\n\n'
        in_flight[0] -= 1  # before the last yield: the client stops reading at [DONE]
        yield b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1}}\n\ndata: [DONE]\n\n'

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stream())

    s = LoadSettings(base_url="http://x", model="m", max_concurrency=3)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://x") as client:
        res = await run_load(_reqs(12), s, WallClock(), client=client)
    assert all(r.ok and r.output_tokens == 1 for r in res.rows)
    assert peak[0] == 3


async def test_stream_without_usage_is_an_error() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'data: {"choices":[{"text":"x"}]}\n\ndata: [DONE]\n\n')

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://x") as client:
        res = await run_load(_reqs(1), LoadSettings(base_url="http://x", model="m"), WallClock(), client=client)
    assert not res.rows[0].ok and res.rows[0].error == "stream ended without usage"


def test_arrivals_all_at_once_and_gamma() -> None:
    assert arrival_offsets_s(5, math.inf, 1.0, 0) == [0.0] * 5
    offs = arrival_offsets_s(20001, 10.0, 1.0, 1)
    gaps = np.diff(offs)
    assert offs[0] == 0.0 and np.all(gaps >= 0)
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)  # Poisson: CV 1
    bursty = np.diff(arrival_offsets_s(20001, 10.0, 0.25, 1))
    assert bursty.mean() == pytest.approx(0.1, rel=0.06)
    assert bursty.std() / bursty.mean() == pytest.approx(2.0, rel=0.08)  # CV = 1/sqrt(shape)
    assert arrival_offsets_s(10, 5.0, 1.0, 7) == arrival_offsets_s(10, 5.0, 1.0, 7)


async def test_request_rate_spreads_sends() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b'data: {"choices":[{"text":"x"}]}\n\n'
                                           b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\n')

    s = LoadSettings(base_url="http://x", model="m", request_rate=50.0, seed=3)
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://x") as client:
        res = await run_load(_reqs(10), s, WallClock(), client=client)
    offs = arrival_offsets_s(10, 50.0, 1.0, 3)
    sends = [r.send_s - res.rows[0].send_s for r in res.rows]
    for got, want in zip(sends, offs):
        assert got == pytest.approx(want, abs=0.03)


def test_payloads() -> None:
    s = LoadSettings(base_url="u", model="m", ignore_eos=True, default_max_tokens=77)
    path, body = build_payload(Request(id=0, prompt="p", output_tokens=9), s)
    assert path == "/v1/completions" and body["prompt"] == "p" and body["max_tokens"] == 9
    assert body["ignore_eos"] and body["stream"] and body["stream_options"] == {
        "include_usage": True, "continuous_usage_stats": True}
    path, body = build_payload(Request(id=0, messages=[{"role": "user", "content": "c"}]), s)
    assert path == "/v1/chat/completions" and body["max_tokens"] == 77
    ids = LoadSettings(base_url="u", model="m", use_token_ids=True)
    path, body = build_payload(Request(id=0, prompt="p", prompt_token_ids=[5, 6], output_tokens=2), ids)
    assert body["prompt"] == [5, 6] and "ignore_eos" not in body
    with pytest.raises(ValueError):
        build_payload(Request(id=0, prompt="p"), ids)


async def test_per_chunk_usage_counts_each_chunk(fake_server) -> None:
    """One token per chunk: exact counts of 1, nothing bundled, the timeline sums to the usage."""
    url, key = fake_server
    progress = LoadProgress()
    res = await run_load(_reqs(6), LoadSettings(base_url=url, model="m", api_key=key, ignore_eos=True),
                         WallClock(), progress=progress)
    assert res.exact_requests == 6
    for r in res.rows:
        assert res.chunk_tokens[r.id] == [1] * r.output_tokens
        assert len(res.chunk_times_s[r.id]) == r.output_tokens
    assert bundling(res).requests == 0 and bundling(res).tokens == 0
    assert progress.sent == progress.finished == 6 and progress.chunks == res.output_tokens
    times, counts = token_timeline(res)
    assert sum(counts) == res.output_tokens and times == sorted(times)


@pytest.mark.parametrize("fake_server", [{"FAKE_BUNDLE": "4", "FAKE_STEP_S": "0.01"}], indirect=True)
async def test_merged_tokens_are_counted_per_chunk_when_they_arrive(fake_server) -> None:
    """A server that sends four tokens a chunk: each chunk's count comes from its cumulative
    usage, the tokens are booked when their chunk arrived (not all at the request's end), and
    the bundled requests and tokens are counted."""
    url, key = fake_server
    res = await run_load(_reqs(5, out=13), LoadSettings(base_url=url, model="m", api_key=key, ignore_eos=True),
                         WallClock())
    assert res.exact_requests == 5
    for r in res.rows:
        n = r.output_tokens  # 13, 14, 15 tokens: chunks of 4 and the rest with finish_reason
        want = [4] * (n // 4) + ([n % 4] if n % 4 else [])
        assert res.chunk_tokens[r.id] == want, (n, res.chunk_tokens[r.id])
        assert r.itl_count == len(want) - 1
        assert r.tpot_s == pytest.approx((r.e2e_s - r.ttft_s) / (n - 1))
    b = bundling(res)
    assert b.requests == 5
    assert b.tokens == sum(n for r in res.rows for n in res.chunk_tokens[r.id] if n > 1)
    times, counts = token_timeline(res)
    assert sum(counts) == res.output_tokens
    # every request's chunks, with their counts, are in the timeline (bins of 0.01 s)
    assert len(times) >= max(len(v) for v in res.chunk_times_s.values())


def test_timeline_books_each_chunks_tokens_when_it_arrived() -> None:
    """Three chunks of four tokens at 1, 2, 3 s: 4 tokens at each (the old timeline booked one
    per chunk and the other nine at 3 s), bins rounded up to 0.01 s."""
    from mle_tui.core.records import RequestRow
    from mle_tui.core.runtimes.loadgen import LoadResult

    row = RequestRow(id=7, send_s=0.5, first_token_s=1.0, end_s=3.0, input_tokens=1, output_tokens=12,
                     hit_cap=False, ok=True, error=None)
    bad = RequestRow(id=8, send_s=0.5, first_token_s=None, end_s=None, input_tokens=1, output_tokens=0,
                     hit_cap=False, ok=False, error="x")
    load = LoadResult(rows=[row, bad], itl_gaps_s=[], chunk_times_s={7: [1.0, 2.0, 3.0]},
                      chunk_tokens={7: [4, 4, 4]}, exact_requests=1)
    times, counts = token_timeline(load)
    assert counts == [4, 4, 4] and times == pytest.approx([1.0, 2.0, 3.0])
    assert bundling(load).requests == 1 and bundling(load).tokens == 12


def test_chunk_counts_without_per_chunk_usage() -> None:
    """A server that sends usage only at the end: one token per chunk, the rest at the last
    chunk; an excess (a role chunk counted as a token) is taken from the last chunks."""
    assert chunk_token_counts([None, None], 5) == [1, 4]
    assert chunk_token_counts([None, None, None], 2) == [1, 1, 0]
    assert chunk_token_counts([0, 1, 3], 4) == [0, 1, 3]  # chat role chunk: 0 tokens
    assert chunk_token_counts([2, 2], 6) == [2, 4]
    assert chunk_token_counts([], 0) == []


async def test_stream_read_as_it_arrives_and_usage_only_at_the_end() -> None:
    """Two SSE events in one network read share its arrival time; a usage-only final chunk
    gives the counts (fallback)."""
    async def stream():
        yield b'data: {"choices":[{"text":"a"}]}\n\ndata: {"choices":[{"text":"bc"}]}\n\n'
        await asyncio.sleep(0.05)
        yield b'data: {"choices":[{"text":"d","finish_reason":"length"}]}\n\n'
        yield b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":5}}\n\ndata: [DONE]\n\n'

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=stream())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://x") as client:
        res = await run_load(_reqs(1), LoadSettings(base_url="http://x", model="m"), WallClock(), client=client)
    row = res.rows[0]
    t = res.chunk_times_s[0]
    assert row.ok and row.output_tokens == 5 and len(t) == 3
    assert t[0] == t[1] and t[2] - t[1] >= 0.04
    assert res.chunk_tokens[0] == [1, 1, 3] and res.exact_requests == 0
    assert bundling(res).requests == 1 and bundling(res).tokens == 3


async def test_a_request_in_one_chunk_has_tpot_zero() -> None:
    """All tokens in one chunk: TTFT == E2E and TPOT 0, as ``vllm bench serve`` computes it
    ((latency - ttft) / (output_len - 1), kept in the mean)."""
    body = (b'data: {"choices":[{"text":"abc","finish_reason":"length"}],'
            b'"usage":{"prompt_tokens":2,"completion_tokens":3}}\n\n'
            b'data: {"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3}}\n\ndata: [DONE]\n\n')

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://x") as client:
        res = await run_load(_reqs(1), LoadSettings(base_url="http://x", model="m"), WallClock(), client=client)
    r = res.rows[0]
    assert r.ok and r.output_tokens == 3 and r.ttft_s == r.e2e_s and r.tpot_s == 0.0 and r.itl_count == 0
    assert res.chunk_tokens[0] == [3] and bundling(res).requests == 1


async def test_early_stop_keeps_the_aborted_streams_tokens(fake_server) -> None:
    """An early stop aborts the requests in flight; the tokens they had received stay in the
    timeline (the window's client count would otherwise be short by the batch in flight, as
    on the H200 on 2026-11-30: 0.7-7 % under the server's counter)."""
    import threading

    url, key = fake_server
    stop = threading.Event()
    progress = LoadProgress()

    async def stopper() -> None:
        while progress.chunks < 60:
            await asyncio.sleep(0.005)
        stop.set()

    s = LoadSettings(base_url=url, model="m", api_key=key, ignore_eos=True)
    task = asyncio.create_task(stopper())
    res = await run_load(_reqs(12, out=400), s, WallClock(), progress=progress, stop=stop)
    await task
    assert stop.is_set() and len(res.rows) < 12  # 4 slots of 400-token requests: none had finished
    aborted = res.aborted_chunk_times_s
    assert 0 < len(aborted) <= 4 and not set(aborted) & {r.id for r in res.rows}
    assert res.aborted_exact == len(aborted)  # the fake sends usage with every chunk
    for rid, times in aborted.items():
        n = sum(res.aborted_chunk_tokens[rid])
        assert times == sorted(times) and 0 < n < 400 + rid % 3 and len(times) == n
    times, counts = token_timeline(res)
    assert sum(counts) == res.output_tokens + sum(sum(c) for c in res.aborted_chunk_tokens.values())
    assert sum(counts) >= 60
