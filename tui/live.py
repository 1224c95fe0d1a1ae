"""What the run screen shows, folded from the runner's events (no Textual here).

:class:`LiveState` consumes :mod:`mle_tui.core.events` events, from the in-process runner or
from a tailed ``live.jsonl`` (attach), and keeps bounded buffers for the charts, the sweep's
progress per configuration, the steady window, the log tail and the timing for the ETA.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core.events import (
    BatchProgress,
    BatchSampleEvent,
    ConfigFinished,
    ConfigStarted,
    Event,
    GpuTimeUpdate,
    HealthSample,
    LogLine,
    PhaseMark,
    PowerSample,
    RequestProgress,
    RunFinished,
    RunStarted,
    SteadyUpdate,
)

from .live_rows import DONE, EARLIER, FAILED, INVALID, PENDING, RUNNING, SKIPPED, ConfigRow  # noqa: F401 - re-exported
from .live_adaptive import PRUNED, apply_pruned, gpu_time_text, unprune_all  # noqa: F401 - PRUNED re-exported
from .live_eta import eta_s
from .live_nodes import NodeStates
from .fmt import METRIC_LABEL, fmt_duration, fmt_energy, fmt_latency, health_text, metric_label  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from .series import DecimatingSeries


def _series(channels: int, capacity: int) -> DecimatingSeries:
    """A chart buffer (numpy behind it: imported with the first run shown, not at start-up)."""
    from .series import DecimatingSeries

    return DecimatingSeries(channels, capacity)

#: The runner's per-batch log line (diffusion), folded into batch progress until the runner
#: emits :class:`BatchProgress` itself.
_BATCH_LINE = re.compile(r"^batch (\d+)( \(warm-up\))?: ([0-9.]+) s, ([0-9.]+) J$")


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
        #: The run's warnings for the operator (``LogLine.warning``: without the prefix), as received.
        self.warnings: list[str] = []
        self.finished: RunFinished | None = None
        #: The sweep's GPU time after the last configuration (issue 11).
        self.gpu_time: GpuTimeUpdate | None = None
        #: An adaptive sweep (known from its first GpuTimeUpdate): rows it excludes are PRUNED.
        self.adaptive = False
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
        #: The app asked the runner to finish the running configuration, then stop (`f`).
        self.draining = False
        #: The runner raised instead of returning (shown on the run screen).
        self.error: str | None = None
        #: Wall time the sweep ended (elapsed stops there).
        self.ended_at_s: float | None = None
        #: Latest GPU health of the measured GPUs (events or the screen's own poll).
        self.health: HealthSample | None = None
        #: Wall time of the last HealthSample from the runner (the screen then polls none).
        self.health_event_at_s: float | None = None
        #: Diffusion: measured batches of the current configuration.
        self.batch_progress: BatchProgress | None = None
        self._batch_energy_j = 0.0
        self._batch_images = 0
        #: Measured (non-warm-up) batches per diffusion configuration, when known (profile).
        self.batches_per_config: int | None = None
        #: Diffusion phase marks (run clock, label) of the current configuration, step ends left
        #: out (the chart draws phases, not steps); bounded like the chart buffers.
        self.phase_marks: collections.deque[tuple[float, str]] = collections.deque(maxlen=capacity)
        #: What one diffusion request makes ("image", "video"), when known (profile).
        self.output_unit = "image"
        #: A cluster run: the nodes' states (this object holds the selected node's).
        self.nodes = NodeStates()

    # -- folding events -------------------------------------------------------------------
    def apply(self, event: Event) -> None:
        self.events_applied += 1
        self.version += 1
        node = getattr(event, "node", None)
        if node is None:
            self._fold(event)
            return
        self.nodes.see(node)
        if isinstance(event, PowerSample):
            self.nodes.total_w[node] = event.total_w
        elif isinstance(event, ConfigStarted):
            self.nodes.forget_key(self, event.key, node)
        with self.nodes.swapped(self, node):
            self._fold(event)

    def _fold(self, event: Event) -> None:
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
            self.log.append(event.shown)
            self.log_count += 1
            if event.warning is not None:
                self.warnings.append(event.warning)
            if self.diffusion:
                self._fold_batch_line(event.line)
        elif isinstance(event, HealthSample):
            self.health = event
            self.health_event_at_s = self._now_s()
        elif isinstance(event, BatchProgress):
            self.batch_progress = event
        elif isinstance(event, PhaseMark):
            if ":step:" not in event.label:
                self.phase_marks.append((event.t_s, event.label))
                self.chart_version += 1
        elif isinstance(event, ConfigStarted):
            self._on_config_started(event)
        elif isinstance(event, ConfigFinished):
            self._on_config_finished(event)
        elif isinstance(event, RunStarted):
            self._on_run_started(event)
        elif isinstance(event, GpuTimeUpdate):
            self.gpu_time = event
            apply_pruned(self, event)
        elif isinstance(event, RunFinished):
            self.finished = event
            self.mark_ended()
            for _ in self.nodes.each(self) if self.nodes else [None]:
                self._end_current()

    def _end_current(self) -> None:
        """The sweep ended during the current configuration: it is pending again."""
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
        unprune_all(self)
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
        self.batch_progress = None
        self.phase_marks.clear()
        self._batch_energy_j, self._batch_images = 0.0, 0
        self.health = None
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

    def _fold_batch_line(self, line: str) -> None:
        m = _BATCH_LINE.match(line)
        if m is None or m.group(2):
            return
        b = self.config_started.config.batch if self.config_started else 1
        prev = self.batch_progress
        done = (prev.done if prev else 0) + 1
        self._batch_energy_j += float(m.group(4))
        self._batch_images += b
        total = (prev.total if prev and prev.total else 0) or (self.batches_per_config or 0)
        self.batch_progress = BatchProgress(done=done, total=total, batch_size=b,
                                            energy_per_image_j=self._batch_energy_j / self._batch_images)

    def mark_ended(self) -> None:
        if self.ended_at_s is None:
            self.ended_at_s = self._now_s()

    # -- derived figures ------------------------------------------------------------------
    @property
    def diffusion(self) -> bool:
        cs = self.config_started
        return cs is not None and cs.config.batch_size is not None

    @property
    def gpu_indices(self) -> list[int]:
        cs = self.config_started
        if cs is None:
            return []
        return list(cs.gpu_indices) if cs.gpu_indices else list(range(cs.config.num_gpus))

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
        """Wall time since the sweep started, frozen when it ended."""
        if self.started_at_s is None:
            return None
        end = self.ended_at_s if self.ended_at_s is not None else self._now_s()
        return max(0.0, end - self.started_at_s)

    def current_fraction(self) -> float | None:
        """How far the current configuration is (requests, or batches for diffusion)."""
        if self.current is None:
            return None
        bp = self.batch_progress
        if self.diffusion and bp is not None and bp.total:
            return min(1.0, bp.done / bp.total)
        p = self.progress
        if p is not None and p.total and p.done:
            return min(1.0, p.done / p.total)
        return None

    def counts(self) -> dict[str, int]:
        out = collections.Counter(r.status for r in self.rows.values())
        return dict(out)

    def eta_s(self) -> float | None:
        """Remaining wall time (:func:`.live_eta.eta_s`)."""
        return eta_s(self)

    def counter_text(self) -> str:
        """The header's counter: requests, or measured batches and images for diffusion."""
        if self.diffusion:
            bp = self.batch_progress
            b = self.config_started.config.batch
            done = bp.done if bp else 0
            total = (bp.total if bp and bp.total else None) or self.batches_per_config
            return f"batch {done}/{total if total else '?'} ({done * b} img)"
        if self.progress is not None and self.progress.total:
            return f"{self.progress.done}/{self.progress.total} req"
        return ""

    def gpu_time_text(self) -> str:
        """"adaptive: measured 14, pruned 20 of 40, 26 GPU-min, grid ≈ 95 (3.7x)"."""
        return gpu_time_text(self)

    def batches_text(self) -> str:
        """Diffusion: measured batches so far and energy per image (ML.ENERGY eq. 1)."""
        bp = self.batch_progress
        b = self.config_started.config.batch
        total = (bp.total if bp and bp.total else None) or self.batches_per_config
        of = f" of {total}" if total else ""
        if bp is None or bp.done == 0:
            return f"measured batches: none yet{of} (warm-up first) · B={b}"
        n = bp.done * b
        text = f"measured batch {bp.done}{of} · B={b} · {n} image{'s' * (n != 1)}"
        if bp.energy_per_image_j is not None:
            text += f" · {fmt_energy(bp.energy_per_image_j)}/{self.output_unit} so far"
        return text

    def steady_gates_text(self) -> str:
        s = self.steady
        if s is None or not s.gates:
            return ""
        return " ".join(f"{name} {'✓' if ok else '✗'}" for name, ok in s.gates.items())
