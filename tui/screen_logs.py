"""Server log view: the runtime's log of one configuration (``<run_dir>/logs/<config>.log``),
scrollable, followed while it grows, with mle-tui's own ``GET /metrics`` polls left out."""

from __future__ import annotations

import re
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Log, Static

#: Access-log lines of mle-tui's own Prometheus polls (uvicorn: ``"GET /metrics HTTP/1.1" 200``).
_POLL = re.compile(r'"GET /metrics(?:\?[^ "]*)? HTTP/[0-9.]+"')
#: Bytes read from the end of a large log when it is first opened.
TAIL_BYTES = 4 * 2**20


def is_metrics_poll(line: str) -> bool:
    return _POLL.search(line) is not None


def filter_log_lines(lines: list[str]) -> tuple[list[str], int]:
    """Lines without the ``GET /metrics`` polls, and how many were dropped."""
    kept = [ln for ln in lines if not is_metrics_poll(ln)]
    return kept, len(lines) - len(kept)


def log_files(run_dir: Path) -> list[Path]:
    d = Path(run_dir) / "logs"
    try:
        return sorted(p for p in d.iterdir() if p.suffix == ".log" and p.is_file())
    except OSError:
        return []


class LogReader:
    """Reads a log file incrementally (complete lines only), from the last ``TAIL_BYTES``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._pos: int | None = None
        self._partial = b""
        self.dropped = 0
        self.skipped_bytes = 0

    def read(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, 2)
                if self._pos is None or size < self._pos:  # first read, or truncated/rotated
                    self._pos = max(0, size - TAIL_BYTES)
                    self.skipped_bytes = self._pos
                    self._partial = b""
                f.seek(self._pos)
                data = f.read(max(0, size - self._pos))
        except OSError:
            return []
        self._pos += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        lines = [ln.decode("utf-8", "replace").rstrip("\r") for ln in complete]
        kept, dropped = filter_log_lines(lines)
        self.dropped += dropped
        return kept


class LogScreen(Screen):
    """The server log of one configuration; ``n``/``p`` step through the run's other logs."""

    BINDINGS = [
        Binding("n", "step(1)", "Next config"),
        Binding("p", "step(-1)", "Prev config"),
        Binding("G,end", "bottom", "Follow"),
        Binding("escape", "back", "Back"),
        Binding("question_mark,f1", "app.help", "Keys"),
    ]

    def __init__(self, run_dir: Path, key: str | None = None, poll_s: float = 1.0) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.files = log_files(self.run_dir)
        names = [p.stem for p in self.files]
        self.index = names.index(key) if key in names else (len(self.files) - 1)
        self.poll_s = poll_s
        self.reader: LogReader | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="logs-title", classes="titlebar")
        yield Log(id="server-log", max_lines=20_000, auto_scroll=True)
        yield Static("", id="logs-status")
        yield Footer()

    def on_mount(self) -> None:
        self._open()
        self.set_interval(self.poll_s, self.poll, name="log-follow")

    @property
    def path(self) -> Path | None:
        return self.files[self.index] if 0 <= self.index < len(self.files) else None

    def _open(self) -> None:
        log = self.query_one("#server-log", Log)
        log.clear()
        path = self.path
        self.reader = LogReader(path) if path is not None else None
        title = f"Server log · {self.run_dir.name}"
        if path is not None:
            title += f" · {path.stem} ({self.index + 1}/{len(self.files)})"
        self.query_one("#logs-title", Static).update(title)
        if path is None:
            log.write_line(f"no log yet under {self.run_dir / 'logs'}")
        self.poll()
        log.scroll_end(animate=False)

    def poll(self) -> None:
        if self.reader is None:
            fresh = log_files(self.run_dir)
            if fresh != self.files:
                self.files = fresh
                self.index = len(fresh) - 1
                self._open()
            return
        lines = self.reader.read()
        if lines:
            self.query_one("#server-log", Log).write_lines(lines)
        r = self.reader
        status = f"{r.path} · {r.dropped} GET /metrics poll line{'s' * (r.dropped != 1)} hidden"
        if r.skipped_bytes:
            status += f" · first {r.skipped_bytes / 2**20:.1f} MiB not shown"
        self.query_one("#logs-status", Static).update(status)

    def action_step(self, delta: int) -> None:
        self.files = log_files(self.run_dir) or self.files
        if not self.files:
            return
        self.index = (self.index + delta) % len(self.files)
        self._open()

    def action_bottom(self) -> None:
        self.query_one("#server-log", Log).scroll_end(animate=False)

    def action_back(self) -> None:
        self.app.pop_screen()
