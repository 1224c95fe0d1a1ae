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


class SaturationDetector:
    """Paper rule: steady while the server's running batch is saturated at ``max_num_seqs``.

    ``feed(t_s, running, waiting)`` sample by sample (in time order); ``window`` is the current
    window (open or closed) or None.

    A sample is saturated when ``running >= B - tolerance`` (see :func:`saturation_threshold`).
    A saturated run starts at its first saturated sample and survives brief dips: it ends at
    its last saturated sample when an unsaturated sample shows the queue drained
    (``waiting <= 0``) or the dip has lasted ``max_dip_s`` (1 s) from its first unsaturated
    sample (so a single-sample dip is tolerated at any polling period). A run counts once it has lasted ``min_run_s`` (1 s, first to last saturated
    sample). The window is the longest counting run (the earliest on ties; an open run
    replaces a closed one only once strictly longer). :meth:`finish` closes an open run at the
    end of the trace; :func:`detect_offline` is exactly feed-everything-then-finish.
    """

    def __init__(self, max_num_seqs: int, tolerance: int = 1, *, max_dip_s: float = 1.0,
                 min_run_s: float = 1.0) -> None:
        if max_num_seqs < 1:
            raise ValueError("max_num_seqs must be >= 1")
        self.max_num_seqs = int(max_num_seqs)
        self.threshold = saturation_threshold(max_num_seqs, tolerance)
        self.max_dip_s = float(max_dip_s)
        self.min_run_s = float(min_run_s)
        self._run_start: float | None = None
        self._last_sat: float | None = None
        self._dip_start: float | None = None
        self._best: Window | None = None  # longest closed run

    def _close_run(self) -> None:
        assert self._run_start is not None and self._last_sat is not None
        dur = self._last_sat - self._run_start
        if dur >= self.min_run_s and (self._best is None or dur > self._best.end_s - self._best.start_s):  # type: ignore[operator]
            self._best = Window(start_s=self._run_start, end_s=self._last_sat)
        self._run_start = self._last_sat = self._dip_start = None

    def feed(self, t_s: float, running: float, waiting: float) -> Window | None:
        if running >= self.threshold:
            if self._run_start is None:
                self._run_start = t_s
            self._last_sat = t_s
            self._dip_start = None
        elif self._run_start is not None:
            if self._dip_start is None:
                self._dip_start = t_s
            if waiting <= 0 or t_s - self._dip_start >= self.max_dip_s:
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
) -> Window | None:
    """Detect the steady window on a whole trace with the named rule ("saturation" or
    "request-count"). Same answer as feeding the online detector the same data (in time order)
    and calling its ``finish()``; implemented independently (vectorised) so each checks the
    other. ``num_requests`` (request-count rule) defaults to
    ``max(len(first_token_s), len(finish_s))``."""
    if rule == "saturation":
        return _saturation_offline(max_num_seqs, batch_t_s, running, waiting, tolerance)
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


def _saturation_offline(max_num_seqs: int, batch_t_s: list[float], running: list[float], waiting: list[float],
                        tolerance: int, max_dip_s: float = 1.0, min_run_s: float = 1.0) -> Window | None:
    if not len(batch_t_s) == len(running) == len(waiting):
        raise ValueError("batch_t_s, running and waiting must have the same length")
    if max_num_seqs < 1:
        raise ValueError("max_num_seqs must be >= 1")
    if not batch_t_s:
        return None
    t = np.asarray(batch_t_s, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t = t[order]
    r = np.asarray(running, dtype=np.float64)[order]
    w = np.asarray(waiting, dtype=np.float64)[order]
    sat = r >= saturation_threshold(max_num_seqs, tolerance)
    if not sat.any():
        return None
    # Index of the last saturated sample at or before each sample (-1 before the first one);
    # an unsaturated sample's dip started at the sample right after that one.
    idx = np.where(sat, np.arange(len(t)), -1)
    last = np.maximum.accumulate(idx)
    dip_start = t[np.minimum(last + 1, len(t) - 1)]
    breaker = ~sat & (last >= 0) & ((w <= 0) | (t - dip_start >= max_dip_s))
    run_id = np.cumsum(breaker)[sat]
    ts = t[sat]
    # First and last saturated time of each run (run ids are non-decreasing along ts).
    bounds = np.flatnonzero(np.diff(run_id)) + 1
    firsts = ts[np.r_[0, bounds]]
    lasts = ts[np.r_[bounds - 1, len(ts) - 1]]
    dur = lasts - firsts
    ok = dur >= min_run_s
    if not ok.any():
        return None
    best = int(np.argmax(np.where(ok, dur, -np.inf)))  # first maximum: the earliest on ties
    return Window(start_s=float(firsts[best]), end_s=float(lasts[best]))


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


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
    ok = _finite(window_s) and window_s >= min_window_s
    gates.append(Gate(
        name="window_length", ok=ok, value=window_s if _finite(window_s) else None, threshold=min_window_s,
        message=f"steady window {window_s:.1f} s {'>=' if ok else '<'} {min_window_s:g} s",
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
            message=(f"energy per token {e:.4g} J {'in' if ok else 'outside'} (0, {max_energy_per_token_j:g}] J"),
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
