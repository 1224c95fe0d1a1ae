"""Steady-state detection (online, sample by sample, and offline on a whole trace) and the
validity gates."""

from __future__ import annotations

import math

import msgspec
import numpy as np

from ..records import Gate, SteadyState  # noqa: F401  (re-exported types)


class Window(msgspec.Struct, kw_only=True):
    """A detected (possibly still open) steady window on the run clock."""

    start_s: float
    end_s: float | None = None  # None while still open (online)


def saturation_threshold(max_num_seqs: int, tolerance: int = 1) -> float:
    """Running-batch level counted as saturated: ``B - tolerance``, with the tolerance capped
    at ``B // 4`` so a small B (1..3) must be reached exactly."""
    b = int(max_num_seqs)
    tol = max(0, min(int(tolerance), b // 4))
    return float(b - tol)


#: How long a run's start waits for the server to admit a burst (the queue to stop growing),
#: s: an overloaded server whose queue grows for good starts its window at the first sample
#: this long after its first saturated one.
MAX_ADMISSION_S = 5.0


class SaturationDetector:
    """Paper rule: steady while the server's running batch is saturated at ``max_num_seqs``.

    ``feed(t_s, running, waiting, generated_tokens=None)`` sample by sample (in time order);
    ``window`` is the current window (open or closed) or None.

    Settings (``SteadySpec`` in profiles, documented in the README):

    - ``tolerance`` (1): a sample is saturated when ``running >= B - tolerance`` (see
      :func:`saturation_threshold`; the tolerance is capped at ``B // 4``).
    - A dip below the threshold **while requests are waiting** is a refill, not the end of the
      steady state: with fixed output lengths requests finish in waves and the scheduler needs
      0.2-3 s to admit the next wave (longer at low power limits). A refill dip ends the run
      only when it turns into a **stall**: the server's generated-token counter (when the
      runtime reports it) has not advanced for ``max_dip_s`` (1 s), or the dip has lasted
      ``max_refill_s`` (5 s) -- then the run ends at its last saturated sample.
    - A dip with **no request waiting** (the queue drained) ends the run at once. Without a
      waiting count (NaN) a dip ends the run after ``max_dip_s``.
    - A run opens once the server has **admitted its burst**: when the waiting queue grew into
      the run's first sample, the run starts at the first later saturated sample at which it
      has stopped growing, or the first one :data:`MAX_ADMISSION_S` or more after the first. When a client sends
      its N requests at once, the API server spends up to a second taking them in; meanwhile it
      streams late and answers metrics late (on an H200 at B = 128 the first saturated sample
      showed ~4-8 k tokens the client had not received yet: 1-2.5 % of a 35 s window).
    - A run counts once it has lasted ``min_run_s`` (1 s, first to last saturated sample). The
      window is the longest counting run (the earliest on ties; an open run replaces a closed
      one only once strictly longer). ``runs`` lists every counting run, so the share of the
      saturated span that a split dropped can be reported.

    :meth:`finish` closes an open run at the end of the trace; :func:`detect_offline` is
    exactly feed-everything-then-finish (one code path, online and offline).
    """

    def __init__(self, max_num_seqs: int, tolerance: int = 1, *, max_dip_s: float = 1.0,
                 max_refill_s: float = 5.0, min_run_s: float = 1.0) -> None:
        if max_num_seqs < 1:
            raise ValueError("max_num_seqs must be >= 1")
        self.max_num_seqs = int(max_num_seqs)
        self.threshold = saturation_threshold(max_num_seqs, tolerance)
        self.max_dip_s = float(max_dip_s)
        self.max_refill_s = float(max_refill_s)
        self.min_run_s = float(min_run_s)
        self._run_start: float | None = None
        self._last_sat: float | None = None
        self._dip_start: float | None = None
        self._tokens: float | None = None  # last generated-token count seen
        self._tokens_moved_s: float | None = None  # when it last advanced
        self._best: Window | None = None  # longest closed run
        self._admit_from: float | None = None  # the run's first sample while admission lasts
        self._last_waiting = math.nan
        #: Every closed run that lasted ``min_run_s`` (start, end), in time order.
        self.runs: list[tuple[float, float]] = []

    def _close_run(self) -> None:
        assert self._run_start is not None and self._last_sat is not None
        dur = self._last_sat - self._run_start
        if dur >= self.min_run_s:
            self.runs.append((self._run_start, self._last_sat))
            if self._best is None or dur > self._best.end_s - self._best.start_s:  # type: ignore[operator]
                self._best = Window(start_s=self._run_start, end_s=self._last_sat)
        self._run_start = self._last_sat = self._dip_start = self._admit_from = None

    def feed(self, t_s: float, running: float, waiting: float,
             generated_tokens: float | None = None) -> Window | None:
        if generated_tokens is not None and math.isfinite(generated_tokens):
            if self._tokens is None or generated_tokens > self._tokens:
                self._tokens_moved_s = t_s
            self._tokens = generated_tokens
        growing = math.isfinite(waiting) and waiting > self._last_waiting  # False against NaN
        self._last_waiting = waiting if math.isfinite(waiting) else math.nan
        if running >= self.threshold:
            if self._run_start is None:
                self._run_start = t_s
                self._admit_from = t_s if growing else None
            elif self._admit_from is not None:
                self._run_start = t_s  # the first sample once the queue stopped growing (or the cap)
                if not growing or t_s - self._admit_from >= MAX_ADMISSION_S:
                    self._admit_from = None
            self._last_sat = t_s
            self._dip_start = None
        elif self._run_start is not None:
            if self._dip_start is None:
                self._dip_start = t_s
            dip_s = t_s - self._dip_start
            if not math.isfinite(waiting):
                ends = dip_s >= self.max_dip_s
            elif waiting <= 0:
                ends = True  # the queue drained
            else:  # a refill, unless it has become a stall
                frozen = self._tokens_moved_s is not None and t_s - self._tokens_moved_s >= self.max_dip_s
                ends = frozen or dip_s >= self.max_refill_s
            if ends:
                self._close_run()
        return self.window

    def finish(self) -> Window | None:
        """End of the trace: close an open run at its last saturated sample."""
        if self._run_start is not None:
            self._close_run()
        return self.window

    @property
    def window(self) -> Window | None:
        if self._run_start is not None:
            assert self._last_sat is not None
            dur = self._last_sat - self._run_start
            if dur >= self.min_run_s and (self._best is None or dur > self._best.end_s - self._best.start_s):  # type: ignore[operator]
                return Window(start_s=self._run_start, end_s=None)
        return None if self._best is None else Window(start_s=self._best.start_s, end_s=self._best.end_s)

    @property
    def last_saturated_s(self) -> float | None:
        """Last saturated sample of the open run (where an open window would end now)."""
        return self._last_sat

    def dropped_fraction(self) -> float:
        """Share of the saturated span (all counting runs) outside the chosen window, in [0, 1)."""
        total = math.fsum(b - a for a, b in self.runs)
        w = self.window
        if total <= 0 or w is None or w.end_s is None:
            return 0.0
        return max(0.0, 1.0 - (w.end_s - w.start_s) / total)


class RequestCountDetector:
    """ML.ENERGY v3 rule: window starts when the B-th request receives its first token and ends
    when N - B - 1 requests have finished (N total requests).

    Events may come in any order between the two kinds but each kind in time order. No window
    when N - B - 1 < 1 or fewer than B requests get a first token; the window is dropped when it
    would end before it starts (N too small compared with B)."""

    def __init__(self, max_num_seqs: int, num_requests: int) -> None:
        if max_num_seqs < 1:
            raise ValueError("max_num_seqs must be >= 1")
        self.max_num_seqs = int(max_num_seqs)
        self.num_requests = int(num_requests)
        self.end_count = self.num_requests - self.max_num_seqs - 1
        self._first = 0
        self._finished = 0
        self._start_s: float | None = None
        self._end_s: float | None = None

    def first_token(self, t_s: float) -> Window | None:
        self._first += 1
        if self._first == self.max_num_seqs:
            self._start_s = t_s
        return self.window

    def finished(self, t_s: float) -> Window | None:
        self._finished += 1
        if self.end_count >= 1 and self._finished == self.end_count:
            self._end_s = t_s
        return self.window

    def finish(self) -> Window | None:
        """End of the trace (nothing to close: a window without its end stays open)."""
        return self.window

    @property
    def window(self) -> Window | None:
        if self._start_s is None or self.end_count < 1:
            return None
        if self._end_s is None:
            return Window(start_s=self._start_s, end_s=None)
        if self._end_s < self._start_s:
            return None
        return Window(start_s=self._start_s, end_s=self._end_s)


def detect_offline(
    rule: str,
    max_num_seqs: int,
    batch_t_s: list[float],
    running: list[float],
    waiting: list[float],
    first_token_s: list[float],
    finish_s: list[float],
    *,
    num_requests: int | None = None,
    tolerance: int = 1,
    generated_tokens: list[float | None] | None = None,
    max_dip_s: float = 1.0,
    max_refill_s: float = 5.0,
) -> Window | None:
    """Detect the steady window on a whole trace with the named rule ("saturation" or
    "request-count"). Saturation: the online detector fed the whole trace (time order), then
    ``finish()`` -- see :func:`saturation_detector`. Request-count (vectorised): the B-th first
    token to the (N-B-1)-th finish; ``num_requests`` defaults to
    ``max(len(first_token_s), len(finish_s))``."""
    if rule == "saturation":
        return saturation_detector(max_num_seqs, batch_t_s, running, waiting, tolerance=tolerance,
                                   generated_tokens=generated_tokens, max_dip_s=max_dip_s,
                                   max_refill_s=max_refill_s).window
    if rule == "request-count":
        b = int(max_num_seqs)
        n = num_requests if num_requests is not None else max(len(first_token_s), len(finish_s))
        end_count = n - b - 1
        if b < 1 or end_count < 1 or len(first_token_s) < b or len(first_token_s) == 0:
            return None
        start = float(np.sort(np.asarray(first_token_s, dtype=np.float64))[b - 1])
        if len(finish_s) < end_count:
            return Window(start_s=start, end_s=None)
        end = float(np.sort(np.asarray(finish_s, dtype=np.float64))[end_count - 1])
        return None if end < start else Window(start_s=start, end_s=end)
    raise ValueError(f"unknown steady-state rule {rule!r} (saturation, request-count)")


def saturation_detector(max_num_seqs: int, batch_t_s: list[float], running: list[float], waiting: list[float],
                        *, tolerance: int = 1, generated_tokens: list[float | None] | None = None,
                        max_dip_s: float = 1.0, max_refill_s: float = 5.0) -> SaturationDetector:
    """A :class:`SaturationDetector` fed a whole batch trace (sorted by time, stable) and
    finished: its ``window``, ``runs`` and ``dropped_fraction()`` describe the trace."""
    if not len(batch_t_s) == len(running) == len(waiting):
        raise ValueError("batch_t_s, running and waiting must have the same length")
    if generated_tokens is not None and len(generated_tokens) != len(batch_t_s):
        raise ValueError("generated_tokens must have one value per batch sample")
    det = SaturationDetector(max_num_seqs, tolerance, max_dip_s=max_dip_s, max_refill_s=max_refill_s)
    order = sorted(range(len(batch_t_s)), key=batch_t_s.__getitem__)
    for i in order:
        det.feed(batch_t_s[i], running[i], waiting[i], None if generated_tokens is None else generated_tokens[i])
    det.finish()
    return det


#: Slack of the window_length gate, s. Window edges sit on batch samples (vLLM's /metrics every
#: 0.5 s), whose times jitter by a millisecond or so: the H200 grid's B = 32 windows of 40 polls read
#: 19.99915 and 19.99970 s beside 20.4978-20.5027 s. And an early stop at start + n blocks can read
#: (t0 + 20.0) - t0 = 19.999999999998. 5 ms (1 % of a poll) is far below what the gate is for.
WINDOW_TOLERANCE_S = 0.005


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def _beside(value: float, threshold: float) -> str:
    """``value`` to one decimal, or to as many more (up to 3) as it takes not to read as the
    threshold it misses or passes ("19.98 s < 20 s", not "20.0 s < 20 s")."""
    if not _finite(value):
        return f"{value}"
    for d in (1, 2, 3):
        if value == threshold or round(value, d) != round(threshold, d):
            break
    return f"{value:.{d}f}"


def evaluate_gates(
    *,
    window_s: float,
    mean_batch: float,
    max_num_seqs: int,
    energy_per_token_j: float | None,
    cap_fraction: float | None,
    min_window_s: float,
    min_batch_fraction: float,
    max_energy_per_token_j: float,
    max_cap_fraction: float,
) -> list[Gate]:
    """The validity gates: window length, mean batch >= fraction * B, energy per token in
    (0, max], share of outputs hitting the token cap (warning). Gates named ``window_length``,
    ``mean_batch``, ``energy_per_token``, ``token_cap``; the last two are left out when their
    value is None (not applicable). Non-finite values fail."""
    gates: list[Gate] = []
    ok = _finite(window_s) and window_s >= min_window_s - WINDOW_TOLERANCE_S
    gates.append(Gate(
        name="window_length", ok=ok, value=window_s if _finite(window_s) else None, threshold=min_window_s,
        message=f"steady window {_beside(window_s, min_window_s)} s {'>=' if ok else '<'} {min_window_s:g} s",
    ))
    need = min_batch_fraction * max_num_seqs
    ok = _finite(mean_batch) and mean_batch >= need
    gates.append(Gate(
        name="mean_batch", ok=ok, value=mean_batch if _finite(mean_batch) else None, threshold=need,
        message=(f"mean running batch {mean_batch:.2f} {'>=' if ok else '<'} "
                 f"{min_batch_fraction:g} x {max_num_seqs} = {need:.2f}"),
    ))
    if energy_per_token_j is not None:
        e = energy_per_token_j
        ok = _finite(e) and 0 < e <= max_energy_per_token_j
        gates.append(Gate(
            name="energy_per_token", ok=ok, value=e if _finite(e) else None, threshold=max_energy_per_token_j,
            message=(f"energy per token {e:.4g} J {'in' if ok else 'outside'} (0, {max_energy_per_token_j:g}] J"
                     if _finite(e) else "energy per token undefined: no tokens (or no energy) in the steady window"),
        ))
    if cap_fraction is not None:
        c = cap_fraction
        ok = _finite(c) and c < max_cap_fraction
        gates.append(Gate(
            name="token_cap", ok=ok, value=c if _finite(c) else None, threshold=max_cap_fraction,
            message=(f"{c:.0%} of outputs hit the token cap ({'<' if ok else '>='} {max_cap_fraction:.0%})"),
            severity="warning",
        ))
    return gates
