"""Run screen: live power and batch charts on one time axis with the steady window, sweep
progress, log tail, elapsed time and ETA. The same screen follows a run started elsewhere
(``attach``) by tailing its ``live.jsonl``. The text it shows is made in :mod:`.run_text`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Log, Static

from ..core.events import HealthSample
from ..core.procgroup import pid_alive
from .attach import LiveTail
from .charts import BatchChart, PowerChart, TimeData, power_legend, shared_x_range
from .live import PENDING, RUNNING, LiveState, health_text
from .run_text import SYMBOL, batch_legend, progress_text, status_text, steady_text  # noqa: F401 (SYMBOL: detach_ui)

#: Chart builds take at most 1/CHART_DUTY of the time (the redraw interval stretches beyond
#: the 0.25 s tick when a build is slow, e.g. on a loaded 2-core machine).
CHART_DUTY = 8.0


class RunScreen(Screen):
    BINDINGS = [
        Binding("s", "skip", "Skip config"),
        Binding("x", "stop", "Stop sweep"),
        # not in the footer (it is full at 80 columns): the help (?) and the command palette list it
        Binding("f", "drain", "Finish then stop", show=False),
        Binding("r", "results", "Results"),
        Binding("l", "logs", "Server log"),
        Binding("m", "memory", "VRAM line"),
        Binding("n", "next_node", "Next node", show=False),
        Binding("question_mark,f1", "app.help", "Keys"),
    ]

    def __init__(self, live: LiveState, *, attach_dir: Path | None = None, tick_s: float = 0.25) -> None:
        super().__init__()
        self.live = live
        self.attach_dir = attach_dir
        self.tail = LiveTail(attach_dir / "live.jsonl") if attach_dir else None
        self.tick_s = tick_s
        self._seen_version = -1
        self._seen_chart = -1
        self._log_seen = 0
        self._warned = 0
        self._status_text = ""
        self._progress_text = ""
        self._steady_text = ""
        self._attach_pid: int | None = None
        self._attach_ended = False
        self._manifest_checked = 0
        #: Redraws of the charts (tests and the benchmark read it).
        self.chart_updates = 0
        self._last_chart_at = -1e9
        self._chart_key: str | None = None
        self._legend_text = ("", "", "")
        #: The memory (VRAM/HBM) power line, toggled with ``m``.
        self.show_memory = True
        self._facts_checked_at = -1e9
        self._health_busy = False
        self._own_pids: set[int] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="run-status", classes="titlebar")
        with Horizontal(id="run-main"):
            with Vertical(id="charts"):
                yield Static("", id="power-legend", classes="legend")
                yield PowerChart(id="power")
                yield Static("", id="batch-legend", classes="legend")
                yield BatchChart(id="batch")
            with VerticalScroll(id="progress-pane"):
                yield Static("", id="nodes")
                yield Static("", id="health")
                yield Static("", id="progress")
        yield Static("", id="steady")
        yield Log(id="log", max_lines=500, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        if self.tail is not None:
            self._read_manifest()
        self.sync()
        self.set_interval(self.tick_s, self.sync, name="run-redraw")
        self.set_interval(1.0, self.poll_health, name="gpu-health")

    # -- attach -----------------------------------------------------------------------------
    def _read_manifest(self) -> None:
        from .rundirs import load_run

        info = load_run(self.attach_dir)
        m = info.manifest
        if m is not None:
            self._attach_pid = m.pid
            if self.live.started_at_s is None:
                self.live.started_at_s = m.created_unix_s
            self.live.power_source = self.live.power_source or m.power_source
            if m.finished and self.live.ended_at_s is None:
                # Elapsed of a finished run: to its last record's end, not to now.
                ends = [r.started_unix_s + r.duration_s for r in info.records]
                self.live.ended_at_s = max(ends) if ends else None
                self.live.mark_ended()
            self.live.run_id = self.live.run_id or m.run_id
            self.live.simulated = self.live.simulated or m.power_source == "simulated"
            self._attach_ended = m.finished
        # Finished configurations from their records (live.jsonl may be gone or rotated).
        from ..core.events import ConfigFinished

        for r in info.records:
            row = self.live.rows.get(r.config_key)
            if row is None or row.status in (PENDING, RUNNING):
                self.live.apply(ConfigFinished(
                    key=r.config_key, status=r.status, reasons=list(r.reasons),
                    energy_per_request_j=r.energy_per_request_j, latency_value_s=r.latency_value_s,
                    record_path=""))
                self.live.rows[r.config_key].label = r.config.label()

    def _poll_tail(self) -> None:
        events = self.tail.read()
        if events:
            self.live.apply_all(events)
        self._manifest_checked += 1
        if self._manifest_checked % max(1, int(2 / self.tick_s)) == 0 and not self._attach_ended:
            self._read_manifest()
            if self._attach_pid and not pid_alive(self._attach_pid) and self.live.finished is None:
                self._attach_ended = True

    # -- redraw -----------------------------------------------------------------------------
    def sync(self, force: bool = False) -> None:
        """Apply pending data and redraw what changed (called at 4 Hz). The header, legends
        and charts are updated in the same tick, so the charts never lag the header; a new
        configuration redraws the charts at once."""
        if self.tail is not None:
            self._poll_tail()
        live = self.live
        if live.finished is not None or live.error is not None or (self._attach_ended and self.tail):
            live.mark_ended()
        self._load_profile_facts()
        self._update_status()
        if live.version != self._seen_version:
            self._seen_version = live.version
            self._update_progress()
            self._update_nodes()
            self._update_steady()
            self._update_log()
            self._update_health()
        new_config = live.current != self._chart_key
        if live.chart_version != self._seen_chart and (force or new_config or self._chart_due()):
            self._seen_chart = live.chart_version
            self._chart_key = live.current
            self._update_charts()

    def _load_profile_facts(self) -> None:
        """What the events do not carry (diffusion batches per configuration), from run.json."""
        live = self.live
        if live.batches_per_config is not None or not live.diffusion or not live.run_dir:
            return
        now = time.monotonic()
        if now - self._facts_checked_at < 2.0:
            return
        self._facts_checked_at = now
        from .rundirs import load_run

        profile = load_run(Path(live.run_dir)).profile()
        if profile is not None:
            live.batches_per_config = profile.load.batches
            live.output_unit = "video" if profile.is_video else "image"

    def _chart_due(self) -> bool:
        """Charts redraw at most every tick, and less often when building them is costly, so
        the charts never take more than ~1/CHART_DUTY of a core from the measurement."""
        now = time.monotonic()
        cost = self.query_one("#power", PowerChart).last_build_s + self.query_one("#batch", BatchChart).last_build_s
        interval = max(self.tick_s * 0.9, CHART_DUTY * cost)
        if now - self._last_chart_at < interval:
            return False
        self._last_chart_at = now
        return True

    def _update_status(self) -> None:
        text = status_text(self.live, attached=self.tail is not None, attach_ended=self._attach_ended)
        if text != self._status_text:
            self._status_text = text
            self.query_one("#run-status", Static).update(text, layout=False)

    def _update_progress(self) -> None:
        text = progress_text(self.live)
        if text.plain != self._progress_text:
            self._progress_text = text.plain
            self.query_one("#progress", Static).update(text)

    def _update_nodes(self) -> None:
        """A cluster run: per node its GPUs, configuration and power (hidden on one host)."""
        if not self.live.nodes:
            return
        from .cluster_view import nodes_text

        w = self.query_one("#nodes", Static)
        w.display = True
        w.update(nodes_text(self.live))

    def _update_steady(self) -> None:
        text = steady_text(self.live)
        if text != self._steady_text:
            self._steady_text = text
            self.query_one("#steady", Static).update(text, layout=False)

    def _update_log(self) -> None:
        live = self.live
        log = self.query_one("#log", Log)
        lines = list(live.log)
        new = live.log_count - self._log_seen
        if new > 0:
            log.write_lines(lines[-min(new, len(lines)):])
            self._log_seen = live.log_count
        for warning in live.warnings[self._warned:]:  # a toast too: the log scrolls on
            self.app.notify(warning, title="Warning", severity="warning", timeout=30)
        self._warned = len(live.warnings)

    def _update_charts(self) -> None:
        live = self.live
        self.chart_updates += 1
        d = TimeData()
        if live.power is not None and len(live.power):
            t, v = live.power.arrays()
            d.power_t = np.array(t)
            d.total_w = np.array(v[0])
            d.memory_w = np.array(v[1]) if live.has_memory else None
            d.per_gpu_w = [np.array(v[2 + i]) for i in range(live.gpu_count)]
        if len(live.batch):
            t, v = live.batch.arrays()
            d.batch_t, d.running, d.waiting = np.array(t), np.array(v[0]), np.array(v[1])
        if live.steady is not None:
            d.steady_start_s, d.steady_end_s = live.steady.start_s, live.steady.end_s
        if live.config_started is not None:
            d.max_num_seqs = live.config_started.config.batch
        if live.phase_marks:
            from ..core.measure.phases import live_spans

            d.phases = live_spans(list(live.phase_marks))
        # Diffusion: no running-batch chart (between batches it would dip to 0 and read like
        # an LLM batch draining); the batches are counted in the line below the charts.
        diffusion = live.diffusion
        d.x_range = shared_x_range(d.power_t, None if diffusion else d.batch_t)
        for wid in ("#batch", "#batch-legend"):
            w = self.query_one(wid)
            if w.display == diffusion:
                w.display = not diffusion
        self.query_one("#power", PowerChart).set_data(d)
        if not diffusion:
            self.query_one("#batch", BatchChart).set_data(d)
        self._update_legends(d)

    def _update_legends(self, d: TimeData) -> None:
        live = self.live
        started = live.config_started
        pl = power_legend(d, started.power_limit_w if started is not None else None, self.show_memory)
        bl = batch_legend(d)
        if (pl, bl) != self._legend_text[:2]:
            self._legend_text = (pl, bl, self._legend_text[2])
            self.query_one("#power-legend", Static).update(pl, layout=False)
            self.query_one("#batch-legend", Static).update(bl, layout=False)

    # -- GPU health ------------------------------------------------------------------------
    def _update_health(self) -> None:
        text = health_text(self.live.health, self.live.current is not None)
        if text != self._legend_text[2]:
            self._legend_text = (*self._legend_text[:2], text)
            self.query_one("#health", Static).update(text)

    def poll_health(self) -> None:
        """1 Hz: NVML health of the configuration's GPUs, read here when the runner sends none
        (a simulated GPU lives in the runner: its health comes only as events)."""
        live = self.live
        if self._health_busy or live.current is None or live.power_source != "nvml" or live.nodes:
            # A cluster run's GPUs are on other hosts: only their agents' events tell.
            return
        if live.health_event_at_s is not None and live._now_s() - live.health_event_at_s < 3.0:
            return  # the runner sends health events
        self._health_busy = True
        self._read_health(live.gpu_indices)

    @work(thread=True, exclusive=True, group="gpu-health", exit_on_error=False)
    def _read_health(self, indices: list[int]) -> None:
        from ..core.power.health import process_tree, read_health

        try:
            root = self._attach_pid or os.getpid()
            own = process_tree(root)
            readings = read_health("nvml", indices, own_pids=own)
            self.app.call_from_thread(self._health_read, HealthSample(t_s=time.time(), gpus=readings))
        finally:
            self._health_busy = False

    def _health_read(self, sample: HealthSample) -> None:
        self.live.health = sample
        self.live.version += 1

    # -- actions ----------------------------------------------------------------------------
    def action_skip(self) -> None:
        if self.tail is not None:
            self.app.notify("Attached: skip the configuration where the run was started.", severity="warning")
            return
        self.app.action_skip_config()

    def action_stop(self) -> None:
        if self.tail is not None:
            self.app.notify("Attached: stop the run where it was started (or send it SIGTERM).",
                            severity="warning")
            return
        self.app.action_stop_run()

    def action_drain(self) -> None:
        """Finish the running configuration, then stop (asks); a run followed here or started by
        this app (in-process or its detached runner)."""
        if self.app.runner is None or not self.app.run_active:  # type: ignore[attr-defined]
            self.app.notify("No runner is running this sweep.", severity="warning")
            return
        self.app.action_drain_run()  # type: ignore[attr-defined]

    def action_next_node(self) -> None:
        """The charts, header and steady line follow the next node of a cluster run."""
        if not self.live.nodes:
            return
        self.live.nodes.cycle(self.live)
        self.sync(force=True)

    def action_memory(self) -> None:
        self.show_memory = not self.show_memory
        chart = self.query_one("#power", PowerChart)
        chart.show_memory = self.show_memory
        chart.invalidate()
        self._update_charts()

    def action_logs(self) -> None:
        from .screen_logs import LogScreen

        run_dir = self.attach_dir or (Path(self.live.run_dir) if self.live.run_dir else None)
        if run_dir is None:
            self.app.notify("No run directory yet.", severity="warning")
            return
        key = self.live.current or (self.live.config_started.key if self.live.config_started else None)
        self.app.push_screen(LogScreen(run_dir, key))

    def action_results(self) -> None:
        run_dir = self.attach_dir or (Path(self.live.run_dir) if self.live.run_dir else self.app.run_dir)
        if run_dir is None:
            self.app.notify("No run directory yet.", severity="warning")
            return
        self.app.open_results(Path(run_dir))
