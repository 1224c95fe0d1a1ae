"""While a vLLM configuration runs: does the client receive tokens as fast as the engine makes
them? The live counterpart of the record's ``client_pace`` and ``output_lag`` gates
(:mod:`..measure.output_lag`), so the operator learns during a long configuration -- not after
it -- that its window will not be the GPU's.

Over the last ``span_s`` of a full batch (mean running >= ``min_batch_fraction`` x B), each
running request should get a token every engine gap (vLLM's engine-stamped inter-token
histogram); the client's gap is mean running / client tokens per s (Little's law). Their ratio
above ``warn_pace`` says the output sets the pace: one log line, once per configuration. On the
H200 (2026-11-30) the runs that kept pace read 0.994-1.001 over whole windows, the lagging ones
1.03-1.36; a ten-second span is noisier, hence the wider 1.05."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable

from ..events import WARNING_PREFIX
from ..measure.output_lag import REMEDY, counter_between, engine_pace
from .base import BatchSample

SPAN_S = 10.0
WARN_PACE = 1.05
MIN_BATCH_FRACTION = 0.85


class LivePace:
    """Fed the server's samples (poller thread) and the client's token count (event loop);
    :meth:`check` returns the warning the first time the pace is off, else None."""

    def __init__(self, max_num_seqs: int, *, span_s: float = SPAN_S, warn_pace: float = WARN_PACE,
                 min_batch_fraction: float = MIN_BATCH_FRACTION) -> None:
        self.B = max_num_seqs
        self.span_s, self.warn_pace, self.min_batch_fraction = span_s, warn_pace, min_batch_fraction
        self._lock = threading.Lock()
        self._bt: list[float] = []
        self._running: list[float] = []
        self._itl: list[tuple[float, float]] = []  # (sum s, count), cumulative
        self._ct: list[float] = []
        self._tokens: list[int] = []
        self.warned: str | None = None
        #: The last pace computed (None: no full span yet), for tests and the log.
        self.pace: float | None = None

    def on_batch(self, s: BatchSample) -> None:
        if s.itl_sum_s is None or s.itl_count is None:
            return
        with self._lock:
            self._bt.append(s.t_s)
            self._running.append(s.running)
            self._itl.append((s.itl_sum_s, s.itl_count))

    def feeding(self, on_batch: Callable[[BatchSample], None]) -> Callable[[BatchSample], None]:
        """``on_batch`` that also feeds this monitor."""
        def both(sample: BatchSample) -> None:
            on_batch(sample)
            self.on_batch(sample)
        return both

    def on_tokens(self, t_s: float, tokens_total: int) -> None:
        self._ct.append(t_s)
        self._tokens.append(tokens_total)

    def tick(self, now_s: float, tokens_total: int) -> str | None:
        """The client's token count now, then :meth:`check`."""
        self.on_tokens(now_s, tokens_total)
        return self.check(now_s)

    def check(self, now_s: float) -> str | None:
        """Over [now - span, the last sample of both sides]: the record's own pace
        (:func:`..measure.output_lag.engine_pace`), the client's tokens interpolated as the
        server's counters are."""
        if self.warned is not None or not self._ct:
            return None
        t0 = now_s - self.span_s
        with self._lock:
            i = max(0, bisect.bisect_left(self._bt, t0) - 1)  # the sample before the span on
            bt, runs = self._bt[i:], self._running[i:]
            sums, counts = [x for x, _ in self._itl[i:]], [n for _, n in self._itl[i:]]
        if not bt:
            return None
        t1 = min(bt[-1], self._ct[-1])
        j = max(0, bisect.bisect_left(self._ct, t0) - 1)
        toks = counter_between(self._ct[j:], self._tokens[j:], t0, t1)
        inside = [r for t, r in zip(bt, runs) if t0 <= t <= t1]
        if toks is None or not inside or t1 <= t0:
            return None
        mean_running = sum(inside) / len(inside)
        if mean_running < self.min_batch_fraction * self.B:
            return None
        itl_s, pace = engine_pace(bt, sums, counts, t0, t1, mean_running, toks)
        if pace is None:
            return None
        self.pace = pace
        if pace <= self.warn_pace:
            return None
        self.warned = (f"{WARNING_PREFIX}over the last {self.span_s:.0f} s the client received tokens {pace:.2f}x slower "
                       f"than vLLM's engine made them (a batch of {mean_running:.0f}, {toks / (t1 - t0):,.0f} tokens/s "
                       f"received, engine gap {itl_s * 1e3:.1f} ms): the output, not the GPU, sets the pace and this "
                       f"configuration's record will fail its output_lag gate; {REMEDY}")
        return self.warned
