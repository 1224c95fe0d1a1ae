"""A discrete-event continuous-batching LLM server: a test double and a demo, never a measurement.

Model (vLLM-like, iteration-level batching):

- Each iteration admits waiting requests (FIFO, preempted ones first) while fewer than
  ``max_num_seqs`` run, the prefill-token budget (``max_batched_tokens``) and the KV capacity
  allow; an admitted request is prefilled (prompt plus tokens generated before a preemption,
  i.e. recompute) and emits its first token at the end of that iteration. Every other running
  request decodes one token per iteration.
- Iteration time = ``step_base_s + per_seq_s * running + per_ctx_token_s * context tokens +
  per_prefill_token_s * prefill tokens``, divided by the tensor-parallel speed-up, times the
  simulated GPUs' ``speed_factor`` under their power limit.
- Utilisation (drives the simulated GPU's power) = time-weighted mix of decode utilisation
  ``0.35 + 0.6 * n / (n + 48)`` and prefill utilisation 0.98.
- KV capacity in tokens: before an iteration, if the running requests' context plus one new
  token each exceeds it, the most recently admitted request is preempted (its KV freed, it
  returns to the front of the queue and is recomputed when re-admitted).

Bookkeeping is O(1) per iteration plus O(1) per admission/finish, so a sweep of thousands of
requests runs in well under a second of CPU on the virtual clock.
"""

from __future__ import annotations

import heapq
import math
import random
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..clock import Clock, wait_until
from ..dataset_types import Request


#: Utilisation is quantised to this step before it drives the simulated GPUs.
UTIL_STEP = 0.002


@dataclass(frozen=True)
class LlmCostModel:
    """Iteration cost of a Llama-3.1-8B-like model on one H100-class GPU (rough, plausible)."""

    step_base_s: float = 0.0085
    per_seq_s: float = 0.00011
    per_ctx_token_s: float = 4.0e-8
    per_prefill_token_s: float = 3.5e-5
    max_batched_tokens: int = 8192
    kv_capacity_tokens: int = 262_144
    #: Parallel efficiency of tensor parallelism: speed-up = tp ** tp_exponent.
    tp_exponent: float = 0.8
    prefill_utilisation: float = 0.98

    def decode_utilisation(self, running: int) -> float:
        return 0.35 + 0.6 * running / (running + 48.0)


@dataclass
class SimRequestResult:
    """One finished request with its exact token timeline."""

    id: int
    send_s: float
    input_tokens: int
    output_tokens: int
    chunk_times_s: list[float]
    preempted: int = 0


@dataclass
class LlmSimTruth:
    """What the simulation knows exactly (for tests and the record's log)."""

    #: Start of the first iteration that ran ``max_num_seqs`` requests (None: never saturated).
    saturation_start_s: float | None = None
    #: End of the last iteration that ran ``max_num_seqs`` requests.
    saturation_end_s: float | None = None
    #: When the waiting queue became empty for good (last admission).
    queue_empty_s: float | None = None
    iterations: int = 0
    preemptions: int = 0
    total_tokens: int = 0
    end_s: float = 0.0
    #: Iteration end times and tokens emitted at each (exact token timeline).
    iter_end_s: list[float] = field(default_factory=list)
    iter_tokens: list[int] = field(default_factory=list)

    def tokens_between(self, t0_s: float, t1_s: float) -> int:
        """Exact number of output tokens emitted in [t0, t1]."""
        import bisect

        lo = bisect.bisect_left(self.iter_end_s, t0_s)
        hi = bisect.bisect_right(self.iter_end_s, t1_s)
        return int(sum(self.iter_tokens[lo:hi]))


class _Running:
    __slots__ = ("rid", "prompt", "output", "gen0", "seg_start", "segments", "version", "preempted")

    def __init__(self, rid: int, prompt: int, output: int) -> None:
        self.rid = rid
        self.prompt = prompt
        self.output = output
        self.gen0 = 0          # tokens generated before the current segment
        self.seg_start = -1    # iteration index of the current segment's first token
        self.segments: list[tuple[int, int]] = []
        self.version = 0
        self.preempted = 0


class Cancelled(Exception):
    """The run was cancelled through its cancel event."""


def arrival_times(n: int, request_rate: float, burstiness: float, seed: int) -> list[float]:
    """Send times: all at 0 for an infinite rate, else gamma-distributed gaps (vLLM bench serve)."""
    if math.isinf(request_rate):
        return [0.0] * n
    rng = random.Random(f"arrivals-{seed}")
    theta = 1.0 / (request_rate * burstiness)
    t, out = 0.0, []
    for _ in range(n):
        out.append(t)
        t += rng.gammavariate(burstiness, theta)
    return out


class LlmServerSim:
    """Run ``requests`` through the simulated server on ``clock``.

    Callbacks: ``on_batch(t_s, running, waiting, kv_usage, preemptions_total, tokens_total)``
    every ``sample_period_s``; ``on_first_token(rid, t_s)``; ``on_finish(result)``."""

    def __init__(
        self,
        requests: Sequence[Request],
        *,
        max_num_seqs: int,
        clock: Clock,
        gpus: Sequence[object] | None = None,
        tensor_parallel: int = 1,
        cost: LlmCostModel | None = None,
        send_times_s: Sequence[float] | None = None,
        max_concurrency: int = 0,
        cancel: threading.Event | None = None,
        stop: threading.Event | None = None,
        sample_period_s: float = 0.1,
        on_batch: Callable[[float, int, int, float, int, int], None] | None = None,
        on_first_token: Callable[[int, float], None] | None = None,
        on_finish: Callable[[SimRequestResult], None] | None = None,
    ) -> None:
        if max_num_seqs < 1:
            raise ValueError("max_num_seqs must be >= 1")
        self.requests = list(requests)
        self.B = int(max_num_seqs)
        self.clock = clock
        self.gpus = list(gpus or [])
        self.tp = max(1, int(tensor_parallel))
        self.cost = cost or LlmCostModel()
        self.send_times = list(send_times_s) if send_times_s is not None else [0.0] * len(self.requests)
        if len(self.send_times) != len(self.requests):
            raise ValueError("send_times_s must match requests")
        self.max_concurrency = max(0, int(max_concurrency))
        self.cancel = cancel
        #: Set: abort the outstanding requests and end the run (an early stop, not a failure).
        self.stop = stop
        self.sample_period_s = sample_period_s
        self.on_batch = on_batch or (lambda *a: None)
        self.on_first_token = on_first_token or (lambda rid, t: None)
        self.on_finish = on_finish or (lambda r: None)
        self.truth = LlmSimTruth()
        self._last_u = -1.0
        self._last_speed = 1.0

    # -- helpers ---------------------------------------------------------------------------
    def _advance(self, t_s: float) -> None:
        if not wait_until(self.clock, t_s, self.cancel):
            raise Cancelled()

    def _set_load(self, u: float) -> float:
        """Set the GPUs' utilisation (quantised to ``UTIL_STEP``, so the power trace changes only
        when the load does) and return the speed factor under their power limits."""
        uq = round(u / UTIL_STEP) * UTIL_STEP
        if uq == self._last_u:
            return self._last_speed
        self._last_u = uq
        for g in self.gpus:
            g.set_load(uq)  # type: ignore[attr-defined]
        self._last_speed = min((g.speed_factor(uq) for g in self.gpus), default=1.0)  # type: ignore[attr-defined]
        return self._last_speed

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> list[SimRequestResult]:
        cost = self.cost
        B = self.B
        reqs = self.requests
        order = sorted(range(len(reqs)), key=lambda i: (self.send_times[i], i))
        arrivals = deque(order)               # not yet sent (index into reqs)
        waiting: deque[_Running] = deque()    # sent, not running
        running: dict[int, _Running] = {}     # insertion order = admission order
        finish_heap: list[tuple[int, int, int, int]] = []  # (finish_it, seq, rid, version)
        seq = 0
        results: list[SimRequestResult] = []
        iter_end: list[float] = []
        iter_tokens: list[int] = []
        t = self.clock.now_s()
        t_start = t
        it = -1
        # Context bookkeeping: ctx_total(after iteration it) = ctx_const + len(running) * it.
        ctx_const = 0
        outstanding = 0
        preemptions = 0
        tokens_total = 0
        next_sample = t_start
        truth = self.truth
        sat_start: float | None = None
        sat_end: float | None = None
        speedup = self.tp ** cost.tp_exponent
        state = {"r": 0, "w": 0, "kv": 0.0}
        period = self.sample_period_s
        st_send: dict[int, float] = {}
        free_since = t_start  # when a client concurrency slot last opened

        cancel = self.cancel
        n_emitted = 0

        def emit_samples(until: float) -> None:
            nonlocal next_sample, n_emitted
            while next_sample <= until + 1e-12:
                n_emitted += 1
                if cancel is not None and n_emitted % 1024 == 0 and cancel.is_set():
                    self._set_load(0.0)
                    raise Cancelled()  # a long idle gap (a slow request rate): still interruptible
                self.on_batch(next_sample, state["r"], state["w"], state["kv"], preemptions, tokens_total)
                next_sample = t_start + (round((next_sample - t_start) / period) + 1) * period

        while arrivals or waiting or running:
            if self.cancel is not None and self.cancel.is_set():
                self._set_load(0.0)
                raise Cancelled()
            if self.stop is not None and self.stop.is_set():
                break  # early stop: the requests still outstanding are aborted
            # Client: send what has arrived (respecting the concurrency cap).
            while arrivals and self.send_times[arrivals[0]] <= t + 1e-12 and (
                    not self.max_concurrency or outstanding < self.max_concurrency):
                i = arrivals.popleft()
                r = reqs[i]
                st = _Running(r.id, max(1, int(r.input_tokens)), max(1, int(r.output_tokens)))
                a = self.send_times[i]
                st_send[st.rid] = a if not self.max_concurrency else max(a, free_since)
                waiting.append(st)
                outstanding += 1
            if not waiting and not running:
                # Idle until the next arrival.
                nxt = self.send_times[arrivals[0]]
                self._set_load(0.0)
                state.update(r=0, w=0, kv=0.0)
                emit_samples(nxt)
                self._advance(nxt)
                t = nxt
                continue
            it += 1
            n_decode = len(running)
            # Preempt (recompute) while the next decode step would not fit in the KV cache.
            while running and ctx_const + len(running) * (it - 1) + len(running) > cost.kv_capacity_tokens:
                _, victim = running.popitem()
                gen = victim.gen0 + (it - 1 - victim.seg_start + 1)
                ctx_const -= victim.prompt + victim.gen0 - victim.seg_start + 1
                victim.segments.append((victim.seg_start, it - 1))
                victim.gen0 = gen
                victim.version += 1
                victim.preempted += 1
                preemptions += 1
                waiting.appendleft(victim)
                truth.queue_empty_s = None
            n_decode = len(running)
            ctx_tokens = ctx_const + n_decode * (it - 1)
            kv_used = ctx_tokens + n_decode
            # Admit.
            prefill_tokens = 0
            admitted: list[_Running] = []
            while waiting and len(running) + len(admitted) < B:
                cand = waiting[0]
                need = cand.prompt + cand.gen0
                if admitted and prefill_tokens + need > cost.max_batched_tokens:
                    break
                if kv_used + need + 1 > cost.kv_capacity_tokens:
                    break
                waiting.popleft()
                admitted.append(cand)
                prefill_tokens += need
                kv_used += need + 1
            n = n_decode + len(admitted)
            if n == 0:
                # A single request larger than the KV cache can never run.
                bad = waiting.popleft()
                raise RuntimeError(f"request {bad.rid} needs {bad.prompt + bad.gen0} KV tokens; "
                                   f"capacity is {cost.kv_capacity_tokens}")
            decode_s = (cost.step_base_s + cost.per_seq_s * n + cost.per_ctx_token_s * ctx_tokens) / speedup
            prefill_s = cost.per_prefill_token_s * prefill_tokens / speedup
            base_s = decode_s + prefill_s
            u = (decode_s * cost.decode_utilisation(n) + prefill_s * cost.prefill_utilisation) / base_s
            dt = base_s / self._set_load(u)
            state.update(r=n, w=len(waiting), kv=min(1.0, kv_used / cost.kv_capacity_tokens))
            if n == B and sat_start is None:
                sat_start = t
            t_end = t + dt
            emit_samples(t_end - 1e-12 if t_end > t else t_end)
            self._advance(t_end)
            # Register admitted requests: first token (of this segment) at the end of this iteration.
            for st in admitted:
                st.seg_start = it
                running[st.rid] = st
                ctx_const += st.prompt + st.gen0 - it + 1
                finish_it = it + (st.output - st.gen0) - 1
                seq += 1
                heapq.heappush(finish_heap, (finish_it, seq, st.rid, st.version))
                if not st.segments:
                    self.on_first_token(st.rid, t_end)
            iter_end.append(t_end)
            iter_tokens.append(n)
            tokens_total += n
            if n == B:
                sat_end = t_end
            if not waiting and not arrivals and truth.queue_empty_s is None and admitted:
                truth.queue_empty_s = t
            # Finish.
            while finish_heap and finish_heap[0][0] <= it:
                _, _, rid, version = heapq.heappop(finish_heap)
                st = running.get(rid)
                if st is None or st.version != version:
                    continue
                del running[rid]
                ctx_const -= st.prompt + st.gen0 - st.seg_start + 1
                st.segments.append((st.seg_start, it))
                chunks: list[float] = []
                for a, b in st.segments:
                    chunks.extend(iter_end[a:b + 1])
                res = SimRequestResult(id=rid, send_s=st_send.pop(rid), input_tokens=st.prompt,
                                       output_tokens=st.output, chunk_times_s=chunks, preempted=st.preempted)
                results.append(res)
                if self.max_concurrency and outstanding == self.max_concurrency:
                    free_since = t_end
                outstanding -= 1
                self.on_finish(res)
            t = t_end
        self._set_load(0.0)
        state.update(r=0, w=0, kv=0.0)
        emit_samples(t)
        truth.saturation_start_s = sat_start
        truth.saturation_end_s = sat_end
        truth.iterations = it + 1
        truth.preemptions = preemptions
        truth.total_tokens = tokens_total
        truth.end_s = t
        truth.iter_end_s = iter_end
        truth.iter_tokens = iter_tokens
        return results
