"""Headless progress for ``mle-tui run --headless`` and ``mle-tui attach --headless``.

A listener for the runner's events. On a terminal it redraws one line with ``\\r`` (a progress
bar for the current configuration and the sweep's ETA), at most 5 times a second so it stays
pleasant over slow SSH; otherwise it prints one line per finished configuration. No Textual.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import msgspec

from mle_tui.core import events as ev
from mle_tui.core.pareto import fmt_duration
from mle_tui.core.procgroup import pid_alive
from mle_tui.core.textsafe import escape_terminal

BAR_WIDTH = 20
#: What the printer keeps per configuration in flight (one per node of a cluster run).
_SLOT = ("index", "total", "label", "done", "req_total", "unit", "cfg_t0", "in_config")
REDRAW_PERIOD_S = 0.2
#: The runner's log line for a finished diffusion batch ("batch 3: 5.12 s, 2400 J").
_BATCH_LINE = re.compile(r"^batch \d+( \(warm-up\))?:")


def fmt_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "--"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    frac = 0.0 if total <= 0 else min(1.0, max(0.0, done / total))
    full = int(frac * width)
    return "#" * full + "." * (width - full)


class ProgressPrinter:
    """Feed it events; it writes progress to ``stream``."""

    def __init__(self, stream: TextIO, *, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 batches_per_config: int | None = None) -> None:
        """``batches_per_config``: diffusion runs count batches (warm-up included) instead of
        requests."""
        self.stream = stream
        self.batches_per_config = batches_per_config
        self.unit = "req"
        self.tty = stream.isatty() if tty is None else tty
        self.clock = clock
        self.to_run = 0
        self.finished = 0
        #: An adaptive sweep: configurations its search excludes now (not in the ETA).
        self.pruned = 0
        self.adaptive = False
        self.index = 0
        self.total = 0
        self.label = ""
        self.done = 0
        self.req_total = 0
        self.run_t0: float | None = None
        self.cfg_t0: float | None = None
        self.in_config = False
        self._last_draw = -1e9
        self._drawn = ""
        #: Replaying old events (attach): no durations or ETA, no redraws.
        self.replay = False
        #: A cluster run: the node whose configuration the fields above hold, the others'.
        self._node: str | None = None
        self._slots: dict[str | None, tuple] = {}

    def _switch(self, node: str | None) -> None:
        """Hold ``node``'s configuration in the fields (events of two nodes interleave)."""
        self._slots[self._node] = tuple(getattr(self, a) for a in _SLOT)
        for a, v in zip(_SLOT, self._slots.pop(node, (0, 0, "", 0, 0, "req", None, False))):
            setattr(self, a, v)
        self._node = node

    def _fraction_done(self) -> float:
        """Configurations in flight: the fraction done, summed over nodes."""
        frac = self.done / self.req_total if self.in_config and self.req_total > 0 else 0.0
        return frac + sum(s[3] / s[4] for s in self._slots.values() if s[7] and s[4] > 0)

    # -- event entry point
    def __call__(self, event: ev.Event) -> None:
        now = self.clock()
        node = getattr(event, "node", None)
        if node is not None and node != self._node:
            self._switch(node)
        if isinstance(event, ev.RunStarted):
            self.run_t0 = now
            self.to_run = len(event.configs) - len(event.skipped)
            self.pruned, self.adaptive = 0, False
            sim = " (SIMULATED)" if event.simulated else ""
            skipped = f", {len(event.skipped)} already done" if event.skipped else ""
            self._line(f"run {event.run_id}: {len(event.configs)} configurations{skipped}; "
                       f"power source {event.power_source}{sim}; records in {event.run_dir}")
        elif isinstance(event, ev.ConfigStarted):
            self.index, self.total, self.label = event.index, event.total, event.label
            self.done, self.req_total, self.unit = 0, event.num_requests, "req"
            if self.batches_per_config:
                self.req_total, self.unit = self.batches_per_config, "batches"
            self.cfg_t0 = now
            self.in_config = True
            self._draw(force=True)
        elif isinstance(event, ev.RequestProgress):
            self.done, self.req_total, self.unit = event.done, event.total, "req"
            self._draw()
        elif isinstance(event, ev.LogLine):
            if event.warning is not None:
                self._line(event.shown)
            elif self.unit == "batches" and self.in_config and _BATCH_LINE.match(event.line):
                self.done = min(self.done + 1, self.req_total)
                self._draw()
        elif isinstance(event, ev.ConfigFinished):
            self.finished += 1
            self.in_config = False
            took = now - self.cfg_t0 if self.cfg_t0 is not None else 0.0
            parts = [f"[{self.index + 1}/{self.total}] {self.label}: {event.status}"]
            if self._node is not None:
                parts.append(f"on {self._node}")
            if event.energy_per_request_j is not None:
                parts.append(f"{event.energy_per_request_j:.1f} J/req")
            if event.latency_value_s is not None:
                parts.append(f"latency {fmt_duration(event.latency_value_s)}")
            if event.reasons and event.status != "ok":
                parts.append("(" + "; ".join(event.reasons)[:120] + ")")
            if not self.replay:
                parts.append(f"in {took:.1f}s, ETA {self.eta_text()}")
            self._line("  ".join(parts))
        elif isinstance(event, ev.GpuTimeUpdate):
            if event.strategy == "adaptive":
                self.pruned, self.adaptive = len(event.pruned), True
                self._line(f"adaptive: {event.line}")
        elif isinstance(event, ev.RunFinished):
            state = "stopped" if event.stopped else "done"
            skipped = f", {event.skipped} skipped" if event.skipped else ""
            self._line(f"{state}: {event.completed - event.invalid} ok, {event.invalid} invalid, "
                       f"{event.failed} failed{skipped}")

    # -- figures
    def eta_s(self) -> float | None:
        """Remaining wall time of the sweep: elapsed / work done x work left (an adaptive
        sweep: the configurations its search has pruned are not left)."""
        to_run = self.to_run - self.pruned
        if self.run_t0 is None or to_run <= 0:
            return None
        frac = self._fraction_done()
        work_done = min(self.finished + frac, to_run)
        if work_done <= 0.02:
            return None
        elapsed = self.clock() - self.run_t0
        return elapsed / work_done * (to_run - work_done)

    def eta_text(self) -> str:
        """"12m00s"; an adaptive sweep: "~12m00s (adaptive)" (what its search may still measure)."""
        text = fmt_eta(self.eta_s())
        return f"~{text} (adaptive)" if self.adaptive else text

    def status_line(self) -> str:
        took = self.clock() - self.cfg_t0 if self.cfg_t0 is not None else 0.0
        others = sum(1 for s in self._slots.values() if s[7])
        where = f"{self._node} +{others} " if others else f"{self._node} " if self._node else ""
        return (f"{where}[{self.index + 1}/{self.total}] {self.label} |{bar(self.done, self.req_total)}| "
                f"{self.done}/{self.req_total} {self.unit}  {took:.0f}s  ETA {self.eta_text()}")

    # -- output
    def _draw(self, force: bool = False) -> None:
        if not self.tty or self.replay:
            return
        now = self.clock()
        if not force and now - self._last_draw < REDRAW_PERIOD_S:
            return
        width = shutil.get_terminal_size((100, 24)).columns - 1
        text = escape_terminal(self.status_line(), keep_newlines=False)[:width]
        if text == self._drawn:
            return
        pad = " " * max(0, len(self._drawn) - len(text))
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._drawn = text
        self._last_draw = now

    def _line(self, text: str) -> None:
        if self.tty and self._drawn:
            self.stream.write("\r" + " " * len(self._drawn) + "\r")
            self._drawn = ""
        # Server log lines and record text are input: no escape sequence reaches the terminal.
        self.stream.write(escape_terminal(text, keep_newlines=False) + "\n")
        self.stream.flush()


def batches_per_config(profile) -> int | None:
    """Batches a diffusion configuration runs (warm-up included); None for LLM tasks."""
    if profile is None or profile.is_llm:
        return None
    return profile.load.batches + profile.load.warmup_batches


def _batches_of(store) -> int | None:
    try:
        manifest = store.read_manifest()
        if manifest is None or not manifest.profile_toml:
            return None
        from mle_tui.core.profile import decode_profile

        return batches_per_config(decode_profile(manifest.profile_toml))
    except Exception:  # noqa: BLE001 - progress display only
        return None



def _writer_alive(run_dir: Path, manifest_pid: int | None) -> bool:
    """The run's runner process is running (its registered identity; a bare pid only for a
    writer that does not register, e.g. an older version)."""
    from mle_tui.core.runs_registry import is_alive, read_runner

    info = read_runner(run_dir)
    if info is not None:
        return is_alive(info)
    return pid_alive(manifest_pid)


def follow_live(run_dir: Path, stream: TextIO, *, poll_s: float = 0.5,
                wait_start_s: float = 10.0) -> int:
    """Follow ``run_dir/live.jsonl`` until the run finishes or its process is gone.

    Returns 0 when the run finished with no failed configuration, else 1."""
    from mle_tui.core.store import RunStore

    store = RunStore(run_dir)
    live = store.live_path()
    printer = ProgressPrinter(stream, batches_per_config=_batches_of(store))
    deadline = time.monotonic() + wait_start_s
    while not live.exists():
        if time.monotonic() > deadline:
            stream.write(f"{live}: no live event stream (the run has not started here)\n")
            return 1
        time.sleep(poll_s)
    buf = b""
    printer.replay = True
    idle_since = time.monotonic()
    with live.open("rb") as fh:
        while True:
            chunk = fh.read()
            if chunk:
                idle_since = time.monotonic()
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    try:
                        event = ev.decode_event(line)
                    except msgspec.DecodeError:
                        continue  # a line from a newer version: skip it
                    printer(event)
                    if isinstance(event, ev.RunFinished):
                        return 1 if (event.failed or event.stopped) else 0
                continue
            if printer.replay:
                printer.replay = False
                printer._draw(force=True)
            manifest = store.read_manifest()
            if manifest is not None and manifest.finished and time.monotonic() - idle_since > 2 * poll_s:
                stream.write("run finished\n")
                return 0
            if manifest is not None and not _writer_alive(run_dir, manifest.pid) and time.monotonic() - idle_since > 4 * poll_s:
                stream.write(f"the run's process ({manifest.pid}) is gone without finishing; "
                             f"rerun it with --out {run_dir} to resume\n")
                return 1
            time.sleep(poll_s)
