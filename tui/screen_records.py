"""Records browser: the run directories under the given roots (including the shipped
``records/``), to open one or mark several for the side-by-side comparison
(:mod:`.screen_compare`)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, Static

from .live import fmt_energy
from .rundirs import RunInfo, find_run_dirs, load_run
from .screen_compare import CompareScreen, compare_warnings  # noqa: F401 (importable from here)


def _shown(paths: list[Path]) -> str:
    """Paths as the user would type them: relative to the working directory when below it."""
    cwd = Path.cwd().resolve()
    out = []
    for p in paths:
        p = Path(p)
        try:
            out.append(str(p.resolve().relative_to(cwd)) or ".")
        except ValueError:
            out.append(str(p))
    return ", ".join(out)


RUNNING, FINISHED, STOPPED = "running", "finished", "stopped"
STATUS_STYLE = {RUNNING: "bold yellow", FINISHED: "green", STOPPED: "magenta"}
#: (column key, header) of the runs table, in order.
COLUMNS = (("mark", ""), ("run", "Run directory"), ("task", "Task"), ("hardware", "Hardware"),
           ("status", "Status"), ("date", "Date"), ("model", "Model"), ("count", "ok/all"),
           ("best", "Best J/req"))


def run_status(info: RunInfo) -> str:
    """running (its writer is alive), finished (every configuration done) or stopped."""
    from ..core.procgroup import pid_alive

    m = info.manifest
    if m is None:
        return FINISHED if info.records and not info.error else STOPPED
    if m.finished:
        return FINISHED
    return RUNNING if pid_alive(m.pid) else STOPPED


def run_row(info: RunInfo, marked: bool) -> dict[str, object]:
    """The cells of one run, by column key (text and a sort key)."""
    ok, total = info.counts()
    energies = [r.energy_per_request_j for r in info.records
                if r.status == "ok" and r.energy_per_request_j is not None]
    hw = info.gpus() + (" [SIM]" if info.simulated() else "")
    status = run_status(info)
    return {
        "mark": "✓" if marked else "",
        "run": Path(info.path).name,
        "task": info.task(),
        "hardware": hw,
        "status": Text(status, style=STATUS_STYLE.get(status, "")),
        "date": info.created(),
        "model": Text(info.error, style="red") if info.error else info.model(),
        "count": f"{ok}/{total}",
        "best": fmt_energy(min(energies)) if energies else "—",
        "_best_j": min(energies) if energies else float("inf"),
    }


def _sort_value(row: dict[str, object], column: str):
    if column == "best":
        return row["_best_j"]
    if column == "count":
        ok, _, total = str(row["count"]).partition("/")
        return (int(ok or 0), int(total or 0))
    v = row.get(column, "")
    return str(v.plain if isinstance(v, Text) else v).lower()


def _matches(row: dict[str, object], needle: str) -> bool:
    if not needle:
        return True
    hay = " ".join(str(v.plain if isinstance(v, Text) else v) for k, v in row.items() if not k.startswith("_"))
    return needle.lower() in hay.lower()


class RecordsScreen(Screen):
    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare marked"),
        Binding("slash", "filter", "Filter"),
        Binding("o", "sort", "Sort"),
        Binding("p", "path", "Path"),
        Binding("g", "rescan", "Rescan"),
        Binding("escape", "back", "Back"),
        Binding("question_mark,f1", "app.help", "Keys"),
    ]

    def __init__(self, roots: list[Path]) -> None:
        super().__init__()
        self.roots = roots
        self.infos: dict[str, RunInfo] = {}
        self.rows: dict[str, dict[str, object]] = {}
        self.marked: list[str] = []
        self.filter_text = ""
        self.sort_column = "date"
        self.sort_reverse = True

    def compose(self) -> ComposeResult:
        yield Static(f"Records · {_shown(self.roots)}", id="records-title", classes="titlebar")
        with Horizontal(id="records-path-row"):
            yield Label("Path ", id="records-path-label")
            yield Input(", ".join(str(r) for r in self.roots), placeholder="directory with run directories",
                        id="records-path", compact=True)
        yield DataTable(id="runs", cursor_type="row")
        yield Input(placeholder="filter (any column) · Enter keep · Esc clear", id="records-filter", compact=True)
        yield Static("scanning…", id="records-status")
        yield Footer()

    def on_mount(self) -> None:
        t = self.query_one("#runs", DataTable)
        for key, header in COLUMNS:
            t.add_column(header, key=key, **({"width": 2} if key == "mark" else {}))
        self.query_one("#records-filter", Input).display = False
        for inp in self.query(Input):
            inp.cursor_blink = self.app.cursor_blink_enabled
        t.focus()
        self.scan()

    @work(thread=True, exclusive=True, group="records-scan")
    def scan(self) -> None:
        dirs = find_run_dirs(self.roots)
        infos = [load_run(d) for d in dirs]
        self.app.call_from_thread(self._scanned, infos)

    def _scanned(self, infos: list[RunInfo]) -> None:
        self.infos = {i.path: i for i in infos}
        self.rows = {i.path: run_row(i, i.path in self.marked) for i in infos}
        self._fill()

    def _fill(self) -> None:
        t = self.query_one("#runs", DataTable)
        current = self._current()
        t.clear()
        keys = [k for k, row in self.rows.items() if _matches(row, self.filter_text)]
        keys.sort(key=lambda k: _sort_value(self.rows[k], self.sort_column), reverse=self.sort_reverse)
        for k in keys:
            row = self.rows[k]
            t.add_row(*(row[c] for c, _ in COLUMNS), key=k)
        if current is not None and current.path in keys:
            t.move_cursor(row=keys.index(current.path))
        n, shown = len(self.rows), len(keys)
        arrow = "↓" if self.sort_reverse else "↑"
        header = dict(COLUMNS)[self.sort_column] or self.sort_column
        if n:
            text = (f"{shown} of {n} run director{'y' if n == 1 else 'ies'} · sorted by {header} {arrow}"
                    + (f" · filter '{self.filter_text}'" if self.filter_text else "")
                    + " · enter open · space mark · c compare · / filter · o sort · p path")
        else:
            text = "no run directory found under " + _shown(self.roots) + " · p to type a path"
        self.query_one("#records-status", Static).update(text)

    def _current(self) -> RunInfo | None:
        t = self.query_one("#runs", DataTable)
        if t.row_count == 0:
            return None
        key = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value
        return self.infos.get(key)

    @on(DataTable.RowSelected, "#runs")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    @on(DataTable.HeaderSelected, "#runs")
    def _header(self, event: DataTable.HeaderSelected) -> None:
        self.sort_by(str(event.column_key.value))

    def sort_by(self, column: str) -> None:
        if column == "mark":
            return
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, column == "date"
        self._fill()

    def action_sort(self) -> None:
        """Next column (o); clicking a header sorts by it, again reverses."""
        cols = [c for c, _ in COLUMNS if c != "mark"]
        nxt = cols[(cols.index(self.sort_column) + 1) % len(cols)] if self.sort_column in cols else cols[0]
        self.sort_column, self.sort_reverse = nxt, nxt == "date"
        self._fill()

    # -- filter and path ----------------------------------------------------------------------
    def action_filter(self) -> None:
        inp = self.query_one("#records-filter", Input)
        inp.display = True
        inp.focus()

    @on(Input.Changed, "#records-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._fill()

    @on(Input.Submitted, "#records-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.query_one("#runs", DataTable).focus()
        if not self.filter_text:
            event.input.display = False

    def action_path(self) -> None:
        self.query_one("#records-path", Input).focus()

    @on(Input.Submitted, "#records-path")
    def _path_done(self, event: Input.Submitted) -> None:
        roots = [Path(p.strip()).expanduser() for p in event.value.split(",") if p.strip()]
        missing = [str(p) for p in roots if not p.is_dir()]
        if missing:
            self.app.notify(f"{missing[0]}: no such directory", severity="error")
            return
        if roots:
            self.roots = roots
            self.query_one("#records-title", Static).update(f"Records · {_shown(self.roots)}")
            self.query_one("#runs", DataTable).focus()
            self.scan()

    def action_open(self) -> None:
        info = self._current()
        if info is not None:
            self.app.open_run_dir(Path(info.path), info=info)

    def action_mark(self) -> None:
        info = self._current()
        if info is None:
            return
        if info.path in self.marked:
            self.marked.remove(info.path)
        else:
            self.marked.append(info.path)
        mark = "✓" if info.path in self.marked else ""
        self.rows[info.path]["mark"] = mark
        self.query_one("#runs", DataTable).update_cell(info.path, "mark", mark)

    def action_compare(self) -> None:
        paths = [p for p in self.marked if p in self.infos]
        if len(paths) < 2:
            self.app.notify("Mark two or more runs with space first.", severity="warning")
            return
        self.app.push_screen(CompareScreen([self.infos[p] for p in paths]))

    def action_rescan(self) -> None:
        self.scan()

    def action_back(self) -> None:
        f = self.focused
        if isinstance(f, Input):
            if f.id == "records-filter":
                f.value = ""
                f.display = False
            self.query_one("#runs", DataTable).focus()
            return
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
