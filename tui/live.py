"""What the run screen shows, folded from the runner's events (no Textual here).

:class:`LiveState` consumes :mod:`mle_tui.core.events` events, from the in-process runner or
from a tailed ``live.jsonl`` (attach), and keeps bounded buffers for the charts, the sweep's
progress per configuration, the steady window, the log tail and the timing for the ETA.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from ..core.events import (
    BatchSampleEvent,
    ConfigFinished,
    ConfigStarted,
    Event,
    LogLine,
    PowerSample,
    RequestProgress,
    RunFinished,
    RunStarted,
    SteadyUpdate,
)

if TYPE_CHECKING:
    from .series import DecimatingSeries


def _series(channels: int, capacity: int) -> DecimatingSeries:
    """A chart buffer (numpy behind it: imported with the first run shown, not at start-up)."""
    from .series import DecimatingSeries

    return DecimatingSeries(channels, capacity)

#: Display status of a configuration in the progress list.
PENDING, RUNNING, DONE, FAILED, INVALID, EARLIER = "pending", "running", "done", "failed", "invalid", "earlier"
#: Skipped by the user: not a failure; resume runs it again.
SKIPPED = "skipped"


class ConfigRow(msgspec.Struct, kw_only=True):
    key: str
    index: int
    label: str = ""
    status: str = PENDING
    energy_per_request_j: float | None = None
    latency_value_s: float | None = None
    reasons: list[str] = []
    #: Length of the configuration on the run clock, s (first to last sample).
    duration_s: float | None = None


class LiveState:
    """Mutable view model of one run. Call :meth:`apply` on the UI thread only."""

    def __init__(self, *, now_s: Callable[[], float] = time.time, capacity: int = 4096,
                 log_lines: int = 400) -> None:
        self._now_s = now_s
        self._capacity = capacity
        self.run_id = ""
        self.run_dir = ""
        self.power_source = ""
        self.simulated = False
        self.rows: dict[str, ConfigRow] = {}
        self.current: str | None = None
        self.current_index = 0
        self.total = 0
        self.config_started: ConfigStarted | None = None
        self.power: DecimatingSeries | None = None
        self.has_memory = False
        self.batch = _series(2, capacity)
        self.steady: SteadyUpdate | None = None
        self.progress: RequestProgress | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=log_lines)
        #: Log lines received in total (the screen writes the ones it has not seen).
        self.log_count = 0
        self.finished: RunFinished | None = None
        self.started_at_s: float | None = None
        #: Wall time (the app's clock) when the current configuration started, and the wall
        #: durations of configurations seen from start to end. A virtual-clock run (the sim)
        #: takes seconds for hours of run-clock time, so the ETA prefers wall time.
        self._config_wall_start_s: float | None = None
        self._wall_durations_s: list[float] = []
        #: Bumped on every change; the screen redraws when it moved.
        self.version = 0
        #: Bumped when chart data changed.
        self.chart_version = 0
        self.events_applied = 0
        self.stopping = False
        #: The runner raised instead of returning (shown on the run screen).
        self.error: str | None = None

    # -- folding events -------------------------------------------------------------------
    def apply(self, event: Event) -> None:
        self.events_applied += 1
        self.version += 1
        if isinstance(event, PowerSample):
            self._on_power(event)
        elif isinstance(event, BatchSampleEvent):
            self.batch.append(event.t_s, (event.running, event.waiting))
            self.chart_version += 1
        elif isinstance(event, SteadyUpdate):
            self.steady = event
            self.chart_version += 1
        elif isinstance(event, RequestProgress):
            self.progress = event
        elif isinstance(event, LogLine):
            self.log.append(event.line)
            self.log_count += 1
        elif isinstance(event, ConfigStarted):
            self._on_config_started(event)
        elif isinstance(event, ConfigFinished):
            self._on_config_finished(event)
        elif isinstance(event, RunStarted):
            self._on_run_started(event)
        elif isinstance(event, RunFinished):
            self.finished = event
            if self.current and self.rows.get(self.current, None) is not None:
                row = self.rows[self.current]
                if row.status == RUNNING:
                    row.status = PENDING
            self.current = None

    def apply_all(self, events) -> int:
        n = 0
        for e in events:
            self.apply(e)
            n += 1
        return n

    def _on_run_started(self, e: RunStarted) -> None:
        self.run_id, self.run_dir = e.run_id, e.run_dir
        self.power_source, self.simulated = e.power_source, e.simulated
        if self.started_at_s is None:
            self.started_at_s = self._now_s()
        skipped = set(e.skipped)
        for i, key in enumerate(e.configs):
            row = self.rows.get(key) or ConfigRow(key=key, index=i)
            row.index = i
            if key in skipped:
                row.status = EARLIER
            self.rows[key] = row
        self.total = len(e.configs)
        self.finished = None

    def _on_config_started(self, e: ConfigStarted) -> None:
        self.config_started = e
        self.current, self.current_index, self.total = e.key, e.index, max(self.total, e.total)
        row = self.rows.get(e.key) or ConfigRow(key=e.key, index=e.index)
        row.label, row.status = e.label, RUNNING
        self.rows[e.key] = row
        self.power = None
        self.batch = _series(2, self._capacity)
        self.steady = None
        self.progress = RequestProgress(done=0, total=e.num_requests, t_s=0.0)
        self._config_wall_start_s = self._now_s()
        self.chart_version += 1

    def _on_config_finished(self, e: ConfigFinished) -> None:
        row = self.rows.get(e.key) or ConfigRow(key=e.key, index=len(self.rows))
        row.status = {"ok": DONE, "failed": FAILED, "invalid": INVALID, "skipped": SKIPPED}.get(e.status, e.status)
        row.energy_per_request_j = e.energy_per_request_j
        row.latency_value_s = e.latency_value_s
        row.reasons = list(e.reasons)
        span = self.run_clock_span_s()
        if span is not None and e.key == self.current:
            row.duration_s = span
        if e.key == self.current and self._config_wall_start_s is not None:
            self._wall_durations_s.append(self._now_s() - self._config_wall_start_s)
        self.rows[e.key] = row
        if e.key == self.current:
            self.current = None

    def _on_power(self, e: PowerSample) -> None:
        n = len(e.per_gpu_w)
        if self.power is None or self.power.channels != 2 + n:
            self.power = _series(2 + n, self._capacity)
        mem = e.memory_w if e.memory_w is not None else float("nan")
        self.has_memory = self.has_memory or e.memory_w is not None
        self.power.append(e.t_s, (e.total_w, mem, *e.per_gpu_w))
        self.chart_version += 1

    # -- derived figures ------------------------------------------------------------------
    @property
    def gpu_count(self) -> int:
        return 0 if self.power is None else self.power.channels - 2

    def run_clock_span_s(self) -> float | None:
        """Seconds of the current configuration on the run clock (first to last sample)."""
        ends = []
        for s in (self.power, self.batch):
            if s is not None and len(s):
                ends.append((s.first_t(), s.last_t()))
        if not ends:
            return None
        return max(b for _, b in ends) - min(a for a, _ in ends)

    def elapsed_s(self) -> float | None:
        return None if self.started_at_s is None else max(0.0, self._now_s() - self.started_at_s)

    def counts(self) -> dict[str, int]:
        out = collections.Counter(r.status for r in self.rows.values())
        return dict(out)

    def eta_s(self) -> float | None:
        """Remaining time: mean configuration length (run clock) × configurations left, minus
        what the current one has done (scaled by its request progress when known)."""
        if self.finished is not None:
            return 0.0
        pending = sum(1 for r in self.rows.values() if r.status == PENDING)
        if sum(self._wall_durations_s) > 0 and self._config_wall_start_s is not None:
            # Seen live (not replayed from live.jsonl): wall-clock durations.
            durations = list(self._wall_durations_s)
            span = max(0.0, self._now_s() - self._config_wall_start_s) if self.current is not None else 0.0
        else:
            durations = [r.duration_s for r in self.rows.values() if r.duration_s]
            span = self.run_clock_span_s() or 0.0
        current_left = None
        p = self.progress
        if self.current is not None and p is not None and p.total and p.done:
            frac = min(1.0, p.done / p.total)
            current_left = span * (1.0 - frac) / frac if frac > 0 else None
        if durations:
            mean = sum(durations) / len(durations)
            if current_left is None and self.current is not None:
                current_left = max(0.0, mean - span)
            return pending * mean + (current_left or 0.0)
        if current_left is not None:
            return current_left + pending * (span + current_left)
        return None

    def steady_gates_text(self) -> str:
        s = self.steady
        if s is None or not s.gates:
            return ""
        return " ".join(f"{name} {'✓' if ok else '✗'}" for name, ok in s.gates.items())


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def fmt_energy(j: float | None) -> str:
    if j is None:
        return "—"
    if j >= 1e6:
        return f"{j / 1e6:.2f} MJ"
    if j >= 1e3:
        return f"{j / 1e3:.2f} kJ"
    return f"{j:.1f} J" if j >= 10 else f"{j:.3g} J"


def fmt_latency(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 1.0:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"
