"""The recorder a runtime feeds while a configuration runs (through the callbacks of
``RuntimeContext``); :meth:`TraceRecorder.freeze` gives the :class:`.trace.Trace`."""

from __future__ import annotations

import math

import threading

from ..records import BatchRow, RequestRow
from .trace import BatchTrace, Mark, Trace, roundtrip


class TraceRecorder:
    """Collects what one configuration produces; thread-safe (the runtime, the metrics poller
    and the sampler call it from their own threads). It only records: the live view's steady
    window is :class:`.live.LiveSteady`'s."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batch_t: list[float] = []
        self.running: list[float] = []
        self.waiting: list[float] = []
        self.kv: list[float | None] = []
        self.preempt: list[float | None] = []
        self.gen_tokens: list[float | None] = []
        self.itl_sum: list[float | None] = []
        self.itl_count: list[float | None] = []
        self.first_token_s: list[float] = []
        self.finish_s: list[float] = []
        self.rows: list[RequestRow] = []
        self.batches: list[BatchRow] = []
        self.marks: list[Mark] = []
        self.util_t: list[float] = []
        self.util: list[list[float]] = []
        self.log: list[str] = []
        self.max_log = 200

    # -- what runtimes call ------------------------------------------------------------------
    def batch(self, t_s: float, running: float, waiting: float, kv: float | None = None,
              preempt: float | None = None, gen_tokens: float | None = None, itl_sum_s: float | None = None,
              itl_count: float | None = None) -> None:
        with self.lock:
            self.batch_t.append(t_s)
            self.running.append(running)
            self.waiting.append(waiting)
            self.kv.append(kv)
            self.preempt.append(preempt)
            self.gen_tokens.append(gen_tokens)
            self.itl_sum.append(itl_sum_s)
            self.itl_count.append(itl_count)

    def utilisation(self, t_s: float, pct: list[float | None]) -> None:
        """GPU utilisation of the configuration's GPUs (in their order), percent; None unread."""
        with self.lock:
            self.util_t.append(t_s)
            self.util.append([math.nan if v is None else float(v) for v in pct])

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
                          generation_tokens_total=column(self.gen_tokens), itl_sum_s=column(self.itl_sum),
                          itl_count=column(self.itl_count))

    def freeze(self, **fields) -> Trace:  # noqa: ANN003 - the Trace's own fields
        """The Trace: what was recorded plus ``fields`` (identity, hardware, power, the
        runtime's result). Runtime-reported rows/batches win over the recorded ones when given
        non-empty."""
        with self.lock:
            recorded = dict(batch=self._batch_trace(), first_token_s=list(self.first_token_s),
                            finish_s=list(self.finish_s), requests=list(self.rows), batches=list(self.batches),
                            marks=list(self.marks), log_tail=list(self.log[-50:]),
                            util_t_s=list(self.util_t),
                            util_pct=[list(col) for col in zip(*self.util)] if self.util else [])
        for k in ("requests", "batches", "log_tail"):
            if fields.get(k):
                recorded.pop(k)
            else:
                fields.pop(k, None)
        return roundtrip(Trace(**recorded, **fields))
