"""The trace of one configuration: everything it produced, at full resolution, as a msgspec
Struct that is written beside its record (``traces/<config>.msgpack.gz``) and from which the
pure analysis (:mod:`.analysis`) derives the record -- live and in ``mle-tui reanalyse`` alike.

:class:`TraceRecorder` is the one object a runtime feeds while a configuration runs (through the
callbacks of ``RuntimeContext``); :meth:`TraceRecorder.freeze` gives the :class:`Trace`.
"""

from __future__ import annotations

import gzip
import threading
from typing import Literal

import msgspec

from ..config import Config
from ..profile import CostSpec, SteadySpec
from ..records import BatchRow, Hardware, RequestRow
from .power_trace import PowerTrace

TRACE_SCHEMA_VERSION = 1
#: gzip level of trace files: level 5 gives most of level 9's size at a third of its time.
GZIP_LEVEL = 5


class BatchTrace(msgspec.Struct, kw_only=True):
    """Server-side batch samples (running, waiting, extras) on the run clock. Optional columns
    are None when the runtime never reported them; a missing value inside one is NaN."""

    t_s: list[float] = []
    running: list[float] = []
    waiting: list[float] = []
    kv_cache_usage: list[float] | None = None
    preemptions_total: list[float] | None = None
    #: The server's own output-token counter (vLLM ``generation_tokens_total``).
    generation_tokens_total: list[float] | None = None


class Mark(msgspec.Struct, kw_only=True):
    """A phase or event mark on the run clock (configuration start/end, warm-up, ...)."""

    t_s: float
    label: str


class Trace(msgspec.Struct, kw_only=True):
    schema_version: int = TRACE_SCHEMA_VERSION
    run_id: str
    config_key: str
    config: Config
    task: str
    runtime: str
    model: str
    weights: str
    latency_metric: str
    is_llm: bool
    simulated: bool
    hardware: Hardware
    started_unix_s: float
    #: Run-clock time at which the configuration ended, s.
    end_s: float
    num_requests: int
    #: Method settings the configuration ran with (the defaults of a reanalysis).
    steady: SteadySpec = msgspec.field(default_factory=SteadySpec)
    cost: CostSpec = msgspec.field(default_factory=CostSpec)
    power: PowerTrace | None = None
    batch: BatchTrace = msgspec.field(default_factory=BatchTrace)
    batch_source: str = ""
    #: Request events in arrival order (first token, finish), s.
    first_token_s: list[float] = []
    finish_s: list[float] = []
    requests: list[RequestRow] = []
    batches: list[BatchRow] = []
    #: Pooled inter-token gaps of ok requests, s (None: the runtime gave only rows).
    itl_gaps_s: list[float] | None = None
    #: Output-token timeline: times (ascending) and tokens at each (None: one each).
    token_times_s: list[float] | None = None
    token_counts: list[int] | None = None
    #: True when the timeline counts every token at the time it arrived (per-chunk usage,
    #: per-token timestamps); False when tokens merged into one chunk were booked at its end.
    token_counts_exact: bool = False
    #: Output tokens the server counted over the configuration.
    server_output_tokens: int | None = None
    marks: list[Mark] = []
    log_tail: list[str] = []
    #: Why the configuration failed or was skipped (None: it ran to the end).
    failure: str | None = None
    failure_kind: Literal["failed", "skipped"] | None = None


def encode_trace(trace: Trace) -> bytes:
    """msgpack, gzip-compressed."""
    return gzip.compress(msgspec.msgpack.encode(trace), compresslevel=GZIP_LEVEL, mtime=0)


def decode_trace(data: bytes) -> Trace:
    """Inverse of :func:`encode_trace` (raises msgspec errors or OSError on bad data)."""
    return msgspec.msgpack.decode(gzip.decompress(data), type=Trace)


def roundtrip(trace: Trace) -> Trace:
    """The trace as it will be read back from disk (what analysis must see live, so that a
    reanalysis reproduces the live record exactly)."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(trace), type=Trace)


class TraceRecorder:
    """Collects what one configuration produces; thread-safe (the runtime, the metrics poller
    and the sampler call it from their own threads). Live views subscribe through the
    ``on_*`` hooks of :class:`~mle_tui.core.measure.live.LiveSteady`; the recorder itself
    only records."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batch_t: list[float] = []
        self.running: list[float] = []
        self.waiting: list[float] = []
        self.kv: list[float | None] = []
        self.preempt: list[float | None] = []
        self.gen_tokens: list[float | None] = []
        self.first_token_s: list[float] = []
        self.finish_s: list[float] = []
        self.rows: list[RequestRow] = []
        self.batches: list[BatchRow] = []
        self.marks: list[Mark] = []
        self.log: list[str] = []
        self.max_log = 200

    # -- what runtimes call ------------------------------------------------------------------
    def batch(self, t_s: float, running: float, waiting: float, kv: float | None = None,
              preempt: float | None = None, gen_tokens: float | None = None) -> None:
        with self.lock:
            self.batch_t.append(t_s)
            self.running.append(running)
            self.waiting.append(waiting)
            self.kv.append(kv)
            self.preempt.append(preempt)
            self.gen_tokens.append(gen_tokens)

    def first_token(self, t_s: float) -> None:
        with self.lock:
            self.first_token_s.append(t_s)

    def request(self, row: RequestRow) -> int:
        """Record a finished request; returns how many have finished."""
        with self.lock:
            self.rows.append(row)
            if row.end_s is not None:
                self.finish_s.append(row.end_s)
            return len(self.rows)

    def batch_done(self, row: BatchRow) -> None:
        with self.lock:
            self.batches.append(row)

    def mark(self, t_s: float, label: str) -> None:
        with self.lock:
            self.marks.append(Mark(t_s=t_s, label=label))

    def log_line(self, line: str) -> None:
        with self.lock:
            self.log.append(line)
            if len(self.log) > 2 * self.max_log:
                del self.log[: len(self.log) - self.max_log]

    def log_tail(self, n: int = 50) -> list[str]:
        with self.lock:
            return list(self.log[-n:])

    # -- the trace ---------------------------------------------------------------------------
    def _batch_trace(self) -> BatchTrace:
        def column(v: list[float | None]) -> list[float] | None:
            if not v or all(x is None for x in v):
                return None
            return [float("nan") if x is None else float(x) for x in v]

        return BatchTrace(t_s=list(self.batch_t), running=list(self.running), waiting=list(self.waiting),
                          kv_cache_usage=column(self.kv), preemptions_total=column(self.preempt),
                          generation_tokens_total=column(self.gen_tokens))

    def freeze(self, **fields) -> Trace:  # noqa: ANN003 - the Trace's own fields
        """The Trace: what was recorded plus ``fields`` (identity, hardware, power, the
        runtime's result). Runtime-reported rows/batches win over the recorded ones when given
        non-empty."""
        with self.lock:
            recorded = dict(batch=self._batch_trace(), first_token_s=list(self.first_token_s),
                            finish_s=list(self.finish_s), requests=list(self.rows), batches=list(self.batches),
                            marks=list(self.marks), log_tail=list(self.log[-50:]))
        for k in ("requests", "batches", "log_tail"):
            if fields.get(k):
                recorded.pop(k)
            else:
                fields.pop(k, None)
        return roundtrip(Trace(**recorded, **fields))
