"""The steady window while a configuration runs: the same detectors as the analysis, fed
sample by sample, reporting :class:`~mle_tui.core.events.SteadyUpdate` events for the live
view. The record's window comes from :func:`.analysis.analyse` on the whole trace; for the
saturation rule both use :class:`.steady.SaturationDetector`, so the live window is the
record's window as far as the trace has gone."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable

from ..events import SteadyUpdate
from ..profile_method import SteadySpec
from .steady import RequestCountDetector, SaturationDetector, Window

#: An open window is re-reported at most this often (run-clock seconds).
PERIODIC_S = 1.0


class LiveSteady:
    def __init__(self, steady: SteadySpec, max_num_seqs: int, num_requests: int,
                 emit: Callable[[SteadyUpdate], None],
                 energy_between: Callable[[float, float], float] | None = None) -> None:
        self.rule = steady.rule
        self._emit = emit
        self._energy_between = energy_between
        self._lock = threading.Lock()
        self._sat = SaturationDetector(max_num_seqs, steady.saturation_tolerance, max_dip_s=steady.max_dip_s,
                                       max_refill_s=steady.max_refill_s)
        self._rc = RequestCountDetector(max_num_seqs, num_requests)
        self._t: list[float] = []
        self._cum: list[float] = [0.0]  # prefix sums of running, for O(1) window means
        self._gen: list[float | None] = []
        self._window: Window | None = None
        self._last_update = -math.inf

    def current(self) -> tuple[float | None, bool]:
        """The live window's start (None: none yet) and whether it is still open."""
        w = self._window
        return (None, False) if w is None else (w.start_s, w.end_s is None)

    def on_batch(self, t_s: float, running: float, waiting: float, gen_tokens: float | None) -> None:
        with self._lock:
            self._t.append(t_s)
            self._cum.append(self._cum[-1] + running)
            self._gen.append(gen_tokens)
            window = self._sat.feed(t_s, running, waiting, gen_tokens) if self.rule == "saturation" else None
        if self.rule == "saturation":
            self._changed(window, t_s, with_energy=True)

    def on_first_token(self, t_s: float) -> None:
        with self._lock:
            window = self._rc.first_token(t_s)
        if self.rule == "request-count":
            self._changed(window, t_s)

    def on_finished(self, t_s: float) -> None:
        with self._lock:
            window = self._rc.finished(t_s)
        if self.rule == "request-count":
            self._changed(window, t_s)

    def _changed(self, window: Window | None, t_s: float, with_energy: bool = False) -> None:
        if window is None:
            return
        changed = self._window is None or window != self._window
        periodic = window.end_s is None and t_s - self._last_update >= PERIODIC_S
        if not (changed or periodic):
            return
        self._window = window
        self._last_update = t_s
        end = window.end_s if window.end_s is not None else t_s
        with self._lock:
            lo = bisect.bisect_left(self._t, window.start_s)
            hi = bisect.bisect_right(self._t, end)
            mean_batch = (self._cum[hi] - self._cum[lo]) / (hi - lo) if hi > lo else None
            g0 = self._gen[lo] if hi > lo else None
            g1 = self._gen[hi - 1] if hi > lo else None
        ept = None
        if with_energy and self._energy_between is not None and g0 is not None and g1 is not None and g1 > g0:
            try:
                e = self._energy_between(window.start_s, end)
                ept = e / (g1 - g0) if math.isfinite(e) and e > 0 else None
            except Exception:  # noqa: BLE001 - a live figure must not stop the measurement
                ept = None
        self._emit(SteadyUpdate(start_s=window.start_s, end_s=window.end_s, mean_batch=mean_batch,
                                energy_per_token_j=ept))
