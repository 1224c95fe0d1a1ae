"""The client side of one vLLM configuration: the load, the ``/metrics`` poller, the watchdog
hook, and what the runner gets from them (token timeline, bundling, server token count).

:func:`drive` runs against a server that is already up (the runtime's, or a benchmark's); the
server process itself is :mod:`.vllm`'s business.
"""

from __future__ import annotations

import asyncio
import collections
import math
import threading
import time
from collections.abc import Callable, Sequence

import httpx
import msgspec

from ..clock import Clock
from ..dataset_types import Request
from ..records import RequestRow
from .base import BatchSample, GpuLoad
from .loadgen import LoadProgress, LoadResult, LoadSettings, run_load
from .prom import PromPoller

#: Resolution of the client-side token timeline handed to the runner.
TOKEN_BIN_S = 0.01
WATCH_PERIOD_S = 0.2


class Bundling(msgspec.Struct, frozen=True):
    """Streamed chunks that carried more than one token (a busy server merges them)."""

    #: Ok requests with at least one chunk of more than one token.
    requests: int
    #: Output tokens that arrived in such chunks (not in a chunk of their own).
    tokens: int
    #: Ok requests whose every token chunk carried usage (exact counts); the others count one
    #: token per chunk and the rest of their final usage at their last chunk.
    exact_requests: int


def token_timeline(load: LoadResult) -> tuple[list[float], list[int]]:
    """Output tokens of the ok requests, and of those an early stop aborted (what each had
    received), binned to TOKEN_BIN_S (bins ceil'd, so a token is never booked before it
    arrived), each chunk's tokens at the time the chunk arrived."""
    bins: dict[int, int] = collections.Counter()
    streams = [(load.chunk_times_s.get(row.id), load.chunk_tokens.get(row.id)) for row in load.rows if row.ok]
    streams += [(t, load.aborted_chunk_tokens.get(rid)) for rid, t in load.aborted_chunk_times_s.items()]
    for times, counts in streams:
        if not times:
            continue
        for t, n in zip(times, counts or [1] * len(times)):
            if n:
                bins[math.ceil(t / TOKEN_BIN_S)] += n
    keys = sorted(k for k, n in bins.items() if n > 0)
    return [k * TOKEN_BIN_S for k in keys], [bins[k] for k in keys]


def bundling(load: LoadResult) -> Bundling:
    """How many ok requests had multi-token chunks, and how many tokens came that way."""
    reqs = toks = 0
    for row in load.rows:
        counts = load.chunk_tokens.get(row.id) if row.ok else None
        if not counts:
            continue
        big = [n for n in counts if n > 1]
        if big:
            reqs += 1
            toks += sum(big)
    return Bundling(requests=reqs, tokens=toks, exact_requests=load.exact_requests)


class Watch:
    """What :func:`drive` hands its watchdog every WATCH_PERIOD_S: the live load counters and
    the seconds since the last token-bearing chunk (or since the load started)."""

    def __init__(self, progress: LoadProgress, clock: Clock) -> None:
        self.progress = progress
        self._clock = clock
        self._t0 = clock.now_s()

    @property
    def outstanding(self) -> int:
        return self.progress.sent - self.progress.finished

    def token_silence_s(self) -> float:
        last = self.progress.last_chunk_s
        return self._clock.now_s() - (self._t0 if last is None else last)


async def drive(
    settings: LoadSettings, requests: Sequence[Request], clock: Clock, *, max_num_seqs: int,
    metrics_period_s: float = 0.5, on_batch: Callable[[BatchSample], None] | None = None,
    on_first_token: Callable[[int, float], None] = lambda rid, t: None,
    on_request: Callable[[RequestRow], None] = lambda row: None,
    sim_gpus: Sequence[GpuLoad] | None = None, watch: Callable[[Watch], None] = lambda w: None,
    after_load: Callable[[LoadResult], object] | None = None,
    stop: threading.Event | None = None,
) -> tuple[LoadResult, int | None, PromPoller]:
    """Send ``requests`` to the server at ``settings.base_url`` while polling its ``/metrics``.
    ``watch`` runs on the event loop every WATCH_PERIOD_S and may raise to abort (the load is
    cancelled); ``after_load(load)`` (sync or async) runs before the final counter read.
    Returns the load, the server's ``generation_tokens_total`` delta and the (closed) poller."""
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    poller = PromPoller(f"{settings.base_url}/metrics", clock, max_num_seqs=max_num_seqs,
                        period_s=metrics_period_s, listener=on_batch, sim_gpus=sim_gpus, headers=headers)
    progress = LoadProgress()
    async with httpx.AsyncClient(
        base_url=settings.base_url,
        timeout=httpx.Timeout(None, connect=settings.connect_timeout_s),
        limits=httpx.Limits(max_connections=settings.max_concurrency or None, max_keepalive_connections=None),
    ) as client:
        load_task: asyncio.Task | None = None
        try:
            gen0 = await asyncio.to_thread(generation_tokens, poller)
            poller.start()
            w = Watch(progress, clock)
            load_task = asyncio.create_task(run_load(
                requests, settings, clock, on_first_token=on_first_token, on_request=on_request,
                client=client, progress=progress, stop=stop))
            while not load_task.done():
                await asyncio.wait({load_task}, timeout=WATCH_PERIOD_S)
                watch(w)
            load = load_task.result()
            if after_load is not None:
                res = after_load(load)
                if asyncio.iscoroutine(res):
                    await res
            await asyncio.to_thread(poller.stop)
            server_tokens = await asyncio.to_thread(server_token_delta, poller, gen0, load.output_tokens)
            return load, server_tokens, poller
        finally:
            if load_task is not None:
                load_task.cancel()
                await asyncio.gather(load_task, return_exceptions=True)
            await asyncio.to_thread(poller.close)


def generation_tokens(poller: PromPoller) -> float | None:
    """``generation_tokens_total`` now (and emit the sample), or None if unreadable."""
    for _ in range(5):
        sample = poller.poll_once()
        if sample is not None:
            return sample.generation_tokens_total
        time.sleep(0.2)
    return None


def server_token_delta(poller: PromPoller, gen0: float | None, client_tokens: int) -> int | None:
    """Server-counted output tokens since ``gen0``. The counter is updated after the responses
    are sent, so read until it matches the client's count or holds still for 1 s (at most 5 s)."""
    if gen0 is None:
        return None
    deadline = time.monotonic() + 5.0
    last: float | None = None
    last_change = time.monotonic()
    while True:
        value = generation_tokens(poller)
        if value is not None:
            if value != last:
                last, last_change = value, time.monotonic()
            if int(round(value - gen0)) == client_tokens or time.monotonic() - last_change >= 1.0:
                break
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    return None if last is None else int(round(last - gen0))
