"""One streamed response as the load generator reads it: the chunk structs decoded from each
``data:`` payload (the text skipped), each token-bearing chunk's time and usage delta, and
the per-chunk token counts; and the streams an early stop left open (their tokens so far)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from .loadgen import LoadProgress


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Choice(msgspec.Struct):
    finish_reason: str | None = None


class _Chunk(msgspec.Struct):
    """The parts of a streamed chunk we read (the text is skipped, not decoded)."""

    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: Any = None


_chunk_decoder = msgspec.json.Decoder(_Chunk)


def chunk_token_counts(deltas: list[int | None], output_tokens: int) -> list[int]:
    """Tokens per token-bearing chunk from the per-chunk usage deltas (None: the chunk carried no
    usage, counted as 1), made to sum to ``output_tokens``: a shortfall goes to the last chunk, an
    excess is taken from the last chunks."""
    counts = [1 if d is None else max(0, d) for d in deltas]
    if not counts:
        return counts
    diff = output_tokens - sum(counts)
    if diff > 0:
        counts[-1] += diff
    i = len(counts) - 1
    while diff < 0 and i >= 0:
        take = min(counts[i], -diff)
        counts[i] -= take
        diff += take
        i -= 1
    return counts


class SseStream:
    """One response's events as they are read: token-chunk times, per-chunk usage deltas,
    the last usage, finish reason and error."""

    __slots__ = ("rid", "on_first_token", "progress", "times", "deltas", "prev", "usage", "finish", "error")

    def __init__(self, rid: int, on_first_token: Callable[[int, float], None], progress: "LoadProgress") -> None:
        self.rid, self.on_first_token, self.progress = rid, on_first_token, progress
        self.times: list[float] = []
        self.deltas: list[int | None] = []
        self.prev = 0
        self.usage: _Usage | None = None
        self.finish: str | None = None
        self.error: str | None = None

    @property
    def exact(self) -> bool:
        """Every token-bearing chunk so far carried usage (exact per-chunk counts)."""
        return bool(self.deltas) and all(d is not None for d in self.deltas)

    def event(self, payload: bytes, now: float) -> bool:
        """Take one ``data:`` payload received by ``now``; True when the stream is over."""
        if payload == b"[DONE]":
            return True
        chunk = _chunk_decoder.decode(payload)
        if chunk.error is not None and not chunk.choices:
            err = chunk.error
            self.error = str(err.get("message", err) if isinstance(err, dict) else err)
            return True
        if chunk.choices:
            if not self.times:
                self.on_first_token(self.rid, now)
            self.times.append(now)
            self.progress.chunks += 1
            self.progress.last_chunk_s = now
            self.finish = chunk.choices[0].finish_reason or self.finish
            ct = chunk.usage.completion_tokens if chunk.usage is not None else None
            self.deltas.append(None if ct is None else ct - self.prev)
            self.progress.tokens += 1 if ct is None else max(0, ct - self.prev)
            if ct is not None:
                self.prev = ct
        if chunk.usage is not None:
            self.usage = chunk.usage
        return False


def aborted_streams(inflight: dict[int, SseStream]) -> tuple[dict[int, list[float]], dict[int, list[int]], int]:
    """The streams still open when the load returned (an early stop's aborted requests): each
    one's chunk times and tokens so far (the last usage's count where chunks carried usage,
    else one per chunk), and how many had usage on every chunk."""
    times: dict[int, list[float]] = {}
    tokens: dict[int, list[int]] = {}
    exact = 0
    for rid, st in inflight.items():
        if not st.times:
            continue
        times[rid] = list(st.times)
        tokens[rid] = chunk_token_counts(st.deltas, st.prev if st.exact else len(st.times))
        exact += st.exact
    return times, tokens, exact
