"""Screens of the detached-sweep life cycle: quit (detach or stop), the list of sweeps running on
this host (reattach), and the run screen whose skip/stop go through the control channel."""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label

from ..core.runs_registry import RunningSweep
from .live import SKIPPED
from .screen_run import SYMBOL, RunScreen

# The progress list's mark for a configuration skipped by the user (not a failure).
SYMBOL.setdefault(SKIPPED, ("»", "yellow"))


class QuitScreen(ModalScreen[str | None]):
    """A sweep runs in its own process: detach (``d``), stop it (``s``), or cancel (``escape``)."""

    BINDINGS = [
        Binding("d", "answer('detach')", "Detach"),
        Binding("s", "answer('stop')", "Stop sweep"),
        Binding("escape,n", "answer(None)", "Cancel", show=False),
    ]

    def __init__(self, pid: int | None, run_dir: Path) -> None:
        super().__init__()
        self.pid, self.run_dir = pid, run_dir

    def compose(self) -> ComposeResult:
        who = f"pid {self.pid}" if self.pid else "its own process"
        with Vertical(id="dialog"):
            yield Label(f"The sweep runs in {who} and writes to {self.run_dir}.\n"
                        "Detach: it keeps running; `mle-tui` lists it and reattaches.\n"
                        "Stop: the current configuration is stopped, power limits restored.",
                        id="question")
            with Horizontal(id="dialog-buttons"):
                yield Button("Detach (d)", variant="primary", id="detach", compact=True)
                yield Button("Stop sweep (s)", variant="error", id="stop", compact=True)
                yield Button("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#detach", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_answer(self, value: str | None) -> None:
        self.dismiss(value)


class RunningSweepsScreen(ModalScreen[str | None]):
    """Sweeps running on this host; enter reattaches (returns the run directory)."""

    BINDINGS = [
        Binding("enter", "pick", "Attach"),
        Binding("escape", "dismiss_none", "New sweep"),
    ]

    def __init__(self, sweeps: list[RunningSweep]) -> None:
        super().__init__()
        self.sweeps = sweeps

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            n = len(self.sweeps)
            yield Label(f"{n} sweep{'s' if n != 1 else ''} running on this host. Enter attaches; "
                        "escape sets up a new one.", id="question")
            yield DataTable(id="running", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#running", DataTable)
        table.add_columns("PID", "PROGRESS", "GPUS", "RUNNING FOR", "RUN DIR")
        now = time.time()
        for s in self.sweeps:
            gpus = s.gpus or "?"
            if s.simulated:
                gpus += " SIMULATED"
            table.add_row(str(s.pid), f"{s.done}/{s.total or '?'}", gpus,
                          _since(now - s.started_unix_s), s.run_dir, key=s.run_dir)
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(str(event.row_key.value))

    def action_pick(self) -> None:
        table = self.query_one("#running", DataTable)
        if table.row_count:
            self.dismiss(self.sweeps[table.cursor_row].run_dir)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)


def _since(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class AttachedRunScreen(RunScreen):
    """The run screen following a runner process: skip and stop ask, then reach the runner
    through the run directory's control channel (any attached app can)."""

    def _read_manifest(self) -> None:
        super()._read_manifest()
        from .sweep_process import DetachedRun

        handle = getattr(self.app, "runner", None)
        if isinstance(handle, DetachedRun) and handle.run_dir == self.attach_dir:
            # Liveness from the runner process's identity (the app's handle), not a bare pid.
            self._attach_pid = None
            self._attach_ended = self._attach_ended or not self.app.run_active  # type: ignore[attr-defined]

    def action_skip(self) -> None:
        if self.app.runner is None or not self.app.run_active:  # type: ignore[attr-defined]
            self.app.notify("No runner process is running this directory.", severity="warning")
            return
        self.app.action_skip_config()  # type: ignore[attr-defined]

    def action_stop(self) -> None:
        if self.app.runner is None or not self.app.run_active:  # type: ignore[attr-defined]
            self.app.notify("No runner process is running this directory.", severity="warning")
            return
        self.app.action_stop_run()  # type: ignore[attr-defined]
