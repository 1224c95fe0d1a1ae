"""Streaming load generator for OpenAI-compatible servers (vLLM), with httpx and asyncio.

By default every request is submitted at t = 0 (the ML.ENERGY setting); optionally at a request
rate with gamma-distributed inter-arrival times (``burstiness`` = gamma shape, 1.0 = Poisson,
as ``vllm bench serve``) and under a client-side concurrency cap.

Each request streams (``stream: true`` with ``stream_options.include_usage``) and is timed on the
run clock: send time, the time of every chunk with non-empty ``choices`` (token-bearing chunks,
as ``vllm bench serve`` counts them), and input / output token counts from ``usage``. Rows are
built with :func:`~mle_tui.core.measure.latency.request_row` (vLLM ``bench serve`` definitions).

``max_tokens`` is the request's reference output length. With dummy weights (``ignore_eos``)
every response has exactly that length, which is the workload, not a cap: ``hit_cap`` stays
False. With real weights EOS ends a response and ``hit_cap`` marks those stopped by
``max_tokens`` (finish reason ``length``).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

import httpx
import msgspec
import numpy as np

from ..clock import Clock
from ..dataset_types import Request
from ..measure.latency import request_row
from ..records import RequestRow


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

    @property
    def output_tokens(self) -> int:
        return sum(r.output_tokens for r in self.rows if r.ok)


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
        "stream_options": {"include_usage": True},
        "temperature": 0.0,
    }
    if s.ignore_eos:
        body["ignore_eos"] = True
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


_chunk_decoder = msgspec.json.Decoder()


async def _one(
    client: httpx.AsyncClient,
    req: Request,
    s: LoadSettings,
    clock: Clock,
    on_first_token: Callable[[int, float], None],
    on_chunk: Callable[[int, float], None] | None = None,
    on_send: Callable[[int], None] | None = None,
) -> tuple[RequestRow, list[float]]:
    path, body = build_payload(req, s)
    max_tokens = body["max_tokens"]
    headers = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
    chunk_times: list[float] = []
    usage: dict = {}
    finish_reason: str | None = None
    error: str | None = None
    send_s = clock.now_s()
    if on_send is not None:
        on_send(req.id)
    try:
        async with client.stream("POST", path, json=body, headers=headers) as resp:
            if resp.status_code != 200:
                text = (await resp.aread()).decode("utf-8", "replace")
                error = f"HTTP {resp.status_code}: {' '.join(text.split())[:300]}"
            else:
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    now = clock.now_s()
                    chunk = _chunk_decoder.decode(data)
                    if "error" in chunk and not chunk.get("choices"):
                        err = chunk["error"]
                        error = str(err.get("message", err) if isinstance(err, dict) else err)
                        break
                    choices = chunk.get("choices")
                    if choices:
                        if not chunk_times:
                            on_first_token(req.id, now)
                        chunk_times.append(now)
                        if on_chunk is not None:
                            on_chunk(req.id, now)
                        finish_reason = choices[0].get("finish_reason") or finish_reason
                    if chunk.get("usage"):
                        usage = chunk["usage"]
    except (httpx.HTTPError, msgspec.DecodeError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}".strip().rstrip(":") or type(exc).__name__
    if error is None and not usage:
        error = "stream ended without usage"
    output_tokens = int(usage.get("completion_tokens") or 0) if usage else len(chunk_times)
    input_tokens = int(usage.get("prompt_tokens") or 0) if usage else req.input_tokens
    hit_cap = (not s.ignore_eos) and error is None and (
        output_tokens >= max_tokens or finish_reason == "length")
    return request_row(
        id=req.id, send_s=send_s, chunk_times_s=chunk_times, input_tokens=input_tokens,
        output_tokens=output_tokens, hit_cap=hit_cap, ok=error is None, error=error,
    )


async def run_load(
    requests: Sequence[Request],
    settings: LoadSettings,
    clock: Clock,
    *,
    on_first_token: Callable[[int, float], None] = lambda rid, t: None,
    on_request: Callable[[RequestRow], None] = lambda row: None,
    client: httpx.AsyncClient | None = None,
    on_chunk: Callable[[int, float], None] | None = None,
    on_send: Callable[[int], None] | None = None,
) -> LoadResult:
    """Send ``requests`` and wait for every response. Request failures become rows with
    ``ok=False`` and an ``error``; cancelling the task cancels every request in flight.
    ``on_send(id)`` fires as a request is sent, ``on_chunk(id, t)`` for each token-bearing chunk,
    ``on_first_token(id, t)`` for the first, ``on_request(row)`` when it ends."""
    own = client is None
    if client is None:
        client = httpx.AsyncClient(
            base_url=settings.base_url,
            timeout=httpx.Timeout(None, connect=settings.connect_timeout_s),
            limits=httpx.Limits(max_connections=settings.max_concurrency or None,
                                max_keepalive_connections=None),
        )
    offsets = arrival_offsets_s(len(requests), settings.request_rate, settings.burstiness, settings.seed)
    sem = asyncio.Semaphore(settings.max_concurrency) if settings.max_concurrency > 0 else None
    rows: list[RequestRow] = []
    gaps: list[float] = []
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def task(req: Request, offset_s: float) -> None:
        delay = t0 + offset_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if sem is not None:
            async with sem:
                row, req_gaps = await _one(client, req, settings, clock, on_first_token, on_chunk, on_send)
        else:
            row, req_gaps = await _one(client, req, settings, clock, on_first_token, on_chunk, on_send)
        rows.append(row)
        if row.ok:
            gaps.extend(req_gaps)
        on_request(row)

    try:
        async with asyncio.TaskGroup() as tg:
            for req, off in zip(requests, offsets):
                tg.create_task(task(req, off))
    finally:
        if own:
            await client.aclose()
    rows.sort(key=lambda r: r.id)
    return LoadResult(rows=rows, itl_gaps_s=gaps)
