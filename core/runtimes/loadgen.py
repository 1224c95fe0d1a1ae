"""Streaming load generator for OpenAI-compatible servers (vLLM), with httpx and asyncio.

By default every request is submitted at t = 0 (the ML.ENERGY setting); optionally at a request
rate with gamma-distributed inter-arrival times (``burstiness`` = gamma shape, 1.0 = Poisson,
as ``vllm bench serve``) and under a client-side concurrency cap.

Each request streams (``stream: true``, ``stream_options = {include_usage, continuous_usage_stats}``)
and is timed on the run clock: send time, the time of every chunk with non-empty ``choices``
(token-bearing chunks, as ``vllm bench serve`` counts them), and input / output token counts from
``usage``. With continuous usage stats every chunk carries the cumulative ``completion_tokens``,
so a chunk's token count is the difference to the previous chunk's: a server that merges several
tokens into one chunk (a busy API server does) is counted right, at the time the tokens arrived.
A server that sends no per-chunk usage gets one token per chunk and the rest of the final usage
at the last chunk. Rows are built with :func:`~mle_tui.core.measure.latency.request_row` (vLLM
``bench serve`` definitions).

Cost on the event loop is kept near what ``vllm bench serve`` spends: every HTTP request is
built (body encoded, headers merged) before the first send, so submitting one costs only the
connection pool's work (128 requests: ~10 ms on a loaded 2-core box, against ~20-45 ms when
built at send time); the stream is read as it arrives (one clock reading per network read) and
decoded into small typed structs.

``max_tokens`` is the request's reference output length. With dummy weights (``ignore_eos``)
every response has exactly that length, which is the workload, not a cap: ``hit_cap`` stays
False. With real weights EOS ends a response and ``hit_cap`` marks those stopped by
``max_tokens`` (finish reason ``length``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import threading
from collections.abc import Callable, Sequence

import httpx
import msgspec
import numpy as np

from ..clock import Clock
from ..dataset_types import ImageRef, Request
from ..measure.latency import request_row
from ..records import RequestRow
from .sse_stream import SseStream, aborted_streams, chunk_token_counts

__all__ = ["LoadProgress", "LoadResult", "LoadSettings", "arrival_offsets_s", "build_payload", "chunk_token_counts",
           "run_load"]

STREAM_OPTIONS = {"include_usage": True, "continuous_usage_stats": True}


class LoadSettings(msgspec.Struct, kw_only=True):
    """How to send a workload to an OpenAI-compatible server."""

    base_url: str
    model: str
    api_key: str | None = None
    #: ``inf`` = all requests at t = 0.
    request_rate: float = math.inf
    #: Gamma shape of inter-arrival times (1.0 = Poisson).
    burstiness: float = 1.0
    #: Client-side concurrency cap; 0 = none.
    max_concurrency: int = 0
    #: Dummy weights: ``ignore_eos`` so every response has exactly ``max_tokens`` tokens.
    ignore_eos: bool = False
    #: ``max_tokens`` when a request has no reference output length.
    default_max_tokens: int = 256
    #: Send ``prompt_token_ids`` instead of text (server started with ``--skip-tokenizer-init``).
    use_token_ids: bool = False
    seed: int = 0
    connect_timeout_s: float = 30.0


class LoadResult(msgspec.Struct, kw_only=True):
    rows: list[RequestRow]
    #: Inter-token gaps of the ok requests, pooled (for the ITL statistics).
    itl_gaps_s: list[float]
    #: Per ok request: the run-clock times of its token-bearing chunks ...
    chunk_times_s: dict[int, list[float]] = {}
    #: ... and how many output tokens each carried (sums to the row's ``output_tokens``).
    chunk_tokens: dict[int, list[int]] = {}
    #: Ok requests whose every token-bearing chunk carried usage (exact per-chunk counts).
    exact_requests: int = 0
    #: An early stop's aborted requests (no row): the times of the token-bearing chunks each
    #: had received, and their tokens. Their tokens were generated in the window like any
    #: other; a window count without them is short by the batch's tokens in flight.
    aborted_chunk_times_s: dict[int, list[float]] = {}
    aborted_chunk_tokens: dict[int, list[int]] = {}
    #: Aborted requests whose every chunk carried usage (exact counts).
    aborted_exact: int = 0

    @property
    def output_tokens(self) -> int:
        return sum(r.output_tokens for r in self.rows if r.ok)


class LoadProgress:
    """Live counters of a running load (read by a watchdog; written on the event loop)."""

    __slots__ = ("sent", "finished", "chunks", "tokens", "last_chunk_s")

    def __init__(self) -> None:
        self.sent = 0
        self.finished = 0
        self.chunks = 0
        #: Output tokens received (each chunk's usage delta; one for a chunk without usage).
        self.tokens = 0
        self.last_chunk_s: float | None = None


def arrival_offsets_s(n: int, request_rate: float, burstiness: float, seed: int) -> list[float]:
    """Send offsets from t = 0 for ``n`` requests: all 0 for an infinite rate, else cumulative
    gamma(shape = burstiness, scale = 1 / (rate * burstiness)) gaps (mean gap = 1 / rate); the
    first request goes at t = 0."""
    if n <= 0:
        return []
    if math.isinf(request_rate):
        return [0.0] * n
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (request_rate * burstiness), size=n - 1)
    return [0.0, *np.cumsum(gaps).tolist()]


def build_payload(req: Request, s: LoadSettings) -> tuple[str, dict]:
    """The endpoint path and JSON body for one request."""
    max_tokens = req.output_tokens if req.output_tokens > 0 else s.default_max_tokens
    body: dict = {
        "model": s.model,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": dict(STREAM_OPTIONS),
        "temperature": 0.0,
    }
    if s.ignore_eos:
        body["ignore_eos"] = True
    if req.images:  # visual chat: text and images in one user message (OpenAI content parts)
        return "/v1/chat/completions", {**body, "messages": image_messages(req)}
    if s.use_token_ids:
        if req.prompt_token_ids is None:
            raise ValueError(f"request {req.id} has no prompt_token_ids (server has no tokenizer)")
        return "/v1/completions", {**body, "prompt": list(req.prompt_token_ids)}
    if req.messages is not None:
        return "/v1/chat/completions", {**body, "messages": req.messages}
    if req.prompt is not None:
        return "/v1/completions", {**body, "prompt": req.prompt}
    if req.prompt_token_ids is not None:
        return "/v1/completions", {**body, "prompt": list(req.prompt_token_ids)}
    raise ValueError(f"request {req.id} has no prompt")


def image_messages(req: Request) -> list[dict]:
    """The chat messages of a visual request: one user message, every image (a base64 JPEG data
    URL; each distinct image encoded once per process) then the text, as LLaVA's instruction
    data puts them ("<image>\n question")."""
    text = req.prompt if req.prompt is not None else "\n".join(
        str(m.get("content", "")) for m in req.messages or [])
    parts: list[dict] = [{"type": "image_url", "image_url": {"url": _data_url(ref)}} for ref in req.images or []]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


@functools.lru_cache(maxsize=1024)
def _data_url(ref: ImageRef) -> str:
    from ..image_sets import data_url

    return data_url(ref)


class _Prepared:
    """A request ready to send: the built HTTP request and its token cap."""

    __slots__ = ("req", "http", "max_tokens")

    def __init__(self, req: Request, http: httpx.Request, max_tokens: int) -> None:
        self.req, self.http, self.max_tokens = req, http, max_tokens


_encoder = msgspec.json.Encoder()


def prepare(client: httpx.AsyncClient, requests: Sequence[Request], s: LoadSettings) -> list[_Prepared]:
    """Every HTTP request built (JSON encoded, headers merged) before the first send."""
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    if s.api_key:
        headers["Authorization"] = f"Bearer {s.api_key}"
    out = []
    for req in requests:
        path, body = build_payload(req, s)
        http = client.build_request("POST", path, content=_encoder.encode(body), headers=headers)
        out.append(_Prepared(req, http, body["max_tokens"]))
    return out


async def _one(
    client: httpx.AsyncClient,
    p: _Prepared,
    s: LoadSettings,
    clock: Clock,
    progress: LoadProgress,
    on_first_token: Callable[[int, float], None],
    inflight: dict[int, SseStream],
) -> tuple[RequestRow, list[float], list[float], list[int], bool]:
    req = p.req
    st = inflight[req.id] = SseStream(req.id, on_first_token, progress)  # left there if cancelled
    send_s = clock.now_s()
    progress.sent += 1
    try:
        resp = await client.send(p.http, stream=True)
        try:
            if resp.status_code != 200:
                text = (await resp.aread()).decode("utf-8", "replace")
                st.error = f"HTTP {resp.status_code}: {' '.join(text.split())[:300]}"
            else:
                buf = b""
                async with contextlib.aclosing(resp.aiter_bytes()) as stream:
                    async for data in stream:
                        now = clock.now_s()  # every event in this read arrived by now
                        *lines, buf = (buf + data).split(b"\n")
                        if any(line.startswith(b"data:") and st.event(line[5:].strip(), now) for line in lines):
                            break
        finally:
            await resp.aclose()
    except (httpx.HTTPError, msgspec.DecodeError, OSError) as exc:
        st.error = f"{type(exc).__name__}: {exc}".strip().rstrip(":") or type(exc).__name__
    del inflight[req.id]
    error, usage = st.error, st.usage
    if error is None and usage is None:
        error = "stream ended without usage"
    output_tokens = int(usage.completion_tokens or 0) if usage is not None else len(st.times)
    input_tokens = int(usage.prompt_tokens or 0) if usage is not None else req.input_tokens
    hit_cap = (not s.ignore_eos) and error is None and (
        output_tokens >= p.max_tokens or st.finish == "length")
    row, gaps = request_row(
        id=req.id, send_s=send_s, chunk_times_s=st.times, input_tokens=input_tokens,
        output_tokens=output_tokens, hit_cap=hit_cap, ok=error is None, error=error,
    )
    if req.images:
        row = image_row(row, req, usage.prompt_tokens if usage is not None else None)
    return row, gaps, st.times, chunk_token_counts(st.deltas, output_tokens), st.exact


def image_row(row: RequestRow, req: Request, prompt_tokens: int | None) -> RequestRow:
    """``row`` with its images counted: image tokens = the server's prompt tokens minus the
    text-only prompt's tokens (``req.input_tokens``, :func:`..datasets_images.text_tokens`)."""
    from ..datasets_images import image_source

    image_tokens = max(0, int(prompt_tokens) - req.input_tokens) if prompt_tokens is not None else None
    return msgspec.structs.replace(row, images=len(req.images or []), image_tokens=image_tokens,
                                   image_source=image_source(req.images))


async def run_load(
    requests: Sequence[Request],
    settings: LoadSettings,
    clock: Clock,
    *,
    on_first_token: Callable[[int, float], None] = lambda rid, t: None,
    on_request: Callable[[RequestRow], None] = lambda row: None,
    client: httpx.AsyncClient | None = None,
    progress: LoadProgress | None = None,
    stop: threading.Event | None = None,
) -> LoadResult:
    """Send ``requests`` and wait for every response. Request failures become rows with
    ``ok=False`` and an ``error``; cancelling the task cancels every request in flight.
    ``on_first_token(id, t)`` fires at a request's first token-bearing chunk, ``on_request(row)``
    when it ends; ``progress`` (if given) is kept up to date for a watchdog. ``stop`` (an early
    stop): once set, the requests still outstanding are aborted (their streams closed, which
    aborts them in vLLM) and the load returns with the rows of those that finished."""
    own = client is None
    if client is None:
        client = httpx.AsyncClient(
            base_url=settings.base_url,
            timeout=httpx.Timeout(None, connect=settings.connect_timeout_s),
            limits=httpx.Limits(max_connections=settings.max_concurrency or None,
                                max_keepalive_connections=None),
        )
    progress = progress if progress is not None else LoadProgress()
    prepared = prepare(client, requests, settings)
    offsets = arrival_offsets_s(len(requests), settings.request_rate, settings.burstiness, settings.seed)
    sem = asyncio.Semaphore(settings.max_concurrency) if settings.max_concurrency > 0 else None
    rows: list[RequestRow] = []
    gaps: list[float] = []
    times: dict[int, list[float]] = {}
    tokens: dict[int, list[int]] = {}
    exact = [0]
    inflight: dict[int, SseStream] = {}
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def task(p: _Prepared, offset_s: float) -> None:
        delay = t0 + offset_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if sem is not None:
            async with sem:
                out = await _one(client, p, settings, clock, progress, on_first_token, inflight)
        else:
            out = await _one(client, p, settings, clock, progress, on_first_token, inflight)
        row, req_gaps, req_times, req_tokens, req_exact = out
        rows.append(row)
        progress.finished += 1
        if row.ok:
            gaps.extend(req_gaps)
            times[row.id] = req_times
            tokens[row.id] = req_tokens
            exact[0] += req_exact
        on_request(row)

    async def stopper(tasks: list[asyncio.Task]) -> None:
        while not all(t.done() for t in tasks):
            if stop is not None and stop.is_set():
                for t in tasks:
                    t.cancel()  # a cancelled child does not fail the TaskGroup
                return
            await asyncio.sleep(0.05)

    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(task(p, off)) for p, off in zip(prepared, offsets)]
            if stop is not None:
                tg.create_task(stopper(tasks))
    finally:
        if own:
            await client.aclose()
    rows.sort(key=lambda r: r.id)
    cut_times, cut_tokens, cut_exact = aborted_streams(inflight)
    return LoadResult(rows=rows, itl_gaps_s=gaps, chunk_times_s=times, chunk_tokens=tokens,
                      exact_requests=exact[0], aborted_chunk_times_s=cut_times,
                      aborted_chunk_tokens=cut_tokens, aborted_exact=cut_exact)
