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
from mle_tui.core.runtimes.loadgen import LoadSettings, arrival_offsets_s, build_payload, run_load
from mle_tui.core.procgroup import kill_group
from mle_tui.core.runtimes.vllm import free_port

FAKE = Path(__file__).parent / "fake_vllm_server.py"


@pytest.fixture
def fake_server():
    """Start the fake server (max_num_seqs 4); yields (base_url, api_key)."""
    port = free_port()
    env = {**os.environ, "FAKE_STARTUP_S": "0", "FAKE_STEP_S": "0.003", "FAKE_EOS_AFTER": "5"}
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
    # 4 slots, 20 requests: the late ones waited in the queue
    assert max(r.ttft_s for r in res.rows) > 3 * min(r.ttft_s for r in res.rows)
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
    assert body["ignore_eos"] and body["stream"] and body["stream_options"] == {"include_usage": True}
    path, body = build_payload(Request(id=0, messages=[{"role": "user", "content": "c"}]), s)
    assert path == "/v1/chat/completions" and body["max_tokens"] == 77
    ids = LoadSettings(base_url="u", model="m", use_token_ids=True)
    path, body = build_payload(Request(id=0, prompt="p", prompt_token_ids=[5, 6], output_tokens=2), ids)
    assert body["prompt"] == [5, 6] and "ignore_eos" not in body
    with pytest.raises(ValueError):
        build_payload(Request(id=0, prompt="p"), ids)
