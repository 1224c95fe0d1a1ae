"""Records browser (run directories, including the shipped ``records/``) and side-by-side
comparison of runs."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, Static

from ..core.profile import parse_duration_s
from .figure_export import ask_and_draw, target_text
from .live import fmt_energy, fmt_latency, metric_label
from .rundirs import RunInfo, find_run_dirs, load_run
from .screen_results import measured_gpus, results_model_for


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


def compare_warnings(infos: list[RunInfo]) -> list[str]:
    """Where the compared runs differ in what makes their energies comparable."""
    def hardware(i: RunInfo) -> str:
        names = sorted({n for r in i.records for n in r.hardware.gpu_names})
        if names:
            counts = sorted({len(r.hardware.gpu_indices) for r in i.records})
            return f"{'/'.join(map(str, counts))}× {'/'.join(names)}"
        return i.gpus()

    def source(i: RunInfo) -> str:
        kinds = {r.hardware.power_source for r in i.records}
        if not kinds and i.manifest is not None:
            kinds = {i.manifest.power_source}
        return "/".join(sorted("NVML" if k == "nvml" else k for k in kinds)) or "?"

    def runtime(i: RunInfo) -> str:
        rts = sorted({r.runtime for r in i.records})
        if rts:
            return "/".join(rts)
        p = i.profile()
        return p.runtime if p else "?"

    out = []
    for what, fn in (("hardware", hardware), ("power source", source), ("runtime", runtime)):
        values = [fn(i) for i in infos]
        if len(set(values)) > 1:
            out.append(f"{what} differs: " + " vs ".join(f"{v} ({i.run_id})" for v, i in zip(values, infos)))
    return out


class CompareScreen(Screen):
    """Runs side by side: per run its recommended configuration at a shared latency target,
    fastest and lowest-energy configuration, and every configuration's figures."""

    BINDINGS = [
        Binding("t", "focus_target", "Target"),
        Binding("f", "figures", "Plots"),
        Binding("escape", "back", "Back"),
        Binding("question_mark,f1", "app.help", "Keys"),
    ]

    def __init__(self, infos: list[RunInfo], target: str = "") -> None:
        super().__init__()
        self.infos = infos
        self.models = [results_model_for(i) for i in infos]
        if not target:
            profile = infos[0].profile() if infos else None
            target = str(profile.target.value) if profile and profile.target.value is not None else ""
        self.initial_target = target

    def compose(self) -> ComposeResult:
        yield Static(f"Compare {len(self.infos)} runs", id="compare-title", classes="titlebar")
        with Horizontal(id="target-row"):
            yield Label("Target ≤ ", id="target-label")
            yield Input(self.initial_target, placeholder="e.g. 100ms", id="target", compact=True)
            yield Static("", id="target-error", classes="error")
        warn = compare_warnings(self.infos)
        yield Static("⚠ " + " · ".join(warn) + " — energies are not like for like" if warn else "",
                     id="compare-warn", classes="warning")
        yield Static("", id="compare-summary")
        with Horizontal(id="compare-cols"):
            for i, info in enumerate(self.infos):
                with Vertical(classes="compare-col"):
                    yield Static("", id=f"cmp-head-{i}", classes="compare-head")
                    yield DataTable(id=f"cmp-table-{i}", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#target", Input).cursor_blink = self.app.cursor_blink_enabled
        for i, m in enumerate(self.models):
            t = self.query_one(f"#cmp-table-{i}", DataTable)
            t.add_column("", key="mark", width=1)
            t.add_column("Config", key="config")
            t.add_column(metric_label(m.metric), key="lat")
            t.add_column("J/req", key="e")
            for row in m.rows:
                lat = None if row.latency_ms is None else row.latency_ms / 1e3
                t.add_row("", row.label, fmt_latency(lat), fmt_energy(row.energy_per_request_j),
                          key=row.key)
        self._apply(self.initial_target)
        self.query_one("#cmp-table-0", DataTable).focus()

    @on(Input.Changed, "#target")
    def _changed(self, event: Input.Changed) -> None:
        self._apply(event.value)

    def _apply(self, text: str) -> None:
        target = None
        err = self.query_one("#target-error", Static)
        if text.strip():
            try:
                target = parse_duration_s(text)
            except ValueError as exc:
                err.update(f" {exc}")
                return
        err.update("")
        recs = []
        for i, (info, m) in enumerate(zip(self.infos, self.models)):
            m.set_target(target)
            t = self.query_one(f"#cmp-table-{i}", DataTable)
            for row in m.rows:
                t.update_cell(row.key, "mark", "★" if row.recommended else ("◆" if row.frontier else ""))
            row = m.recommended
            recs.append(row)
            head = Text()
            head.append(f"{info.run_id}\n", style="bold")
            head.append(f"{info.model()} · {measured_gpus(info)}{' · SIMULATED' if info.simulated() else ''}\n")
            if row is not None:
                lat = None if row.latency_ms is None else row.latency_ms / 1e3
                head.append(f"★ {row.label}: {fmt_energy(row.energy_per_request_j)}/req, "
                            f"{metric_label(m.metric)} {fmt_latency(lat)}")
            else:
                head.append(m.report.message or "no recommendation")
            self.query_one(f"#cmp-head-{i}", Static).update(head)
        base = recs[0]
        parts = []
        for info, row in zip(self.infos[1:], recs[1:]):
            if base is not None and row is not None and base.energy_per_request_j and row.energy_per_request_j:
                ratio = row.energy_per_request_j / base.energy_per_request_j
                parts.append(f"{info.run_id}: {ratio:.2f}× the energy per request of {self.infos[0].run_id}")
        self.query_one("#compare-summary", Static).update(" · ".join(parts) or "recommended energy: not comparable")

    def action_focus_target(self) -> None:
        self.query_one("#target", Input).focus()

    def action_figures(self) -> None:
        """The runs' fronts on one chart (compare.png) at the target on screen."""
        from ..core.figures import render_compare, report_command

        infos, m0 = list(self.infos), self.models[0]
        target_s, metric = m0.target_s, m0.metric
        runs = [(i.records, i.manifest) for i in infos]

        def draw(dest: Path) -> list[Path]:
            command = report_command([i.path for i in infos], str(dest), "png", target_text(target_s), metric)
            return [render_compare(runs, dest, target_s=target_s, metric=metric, command=command)]

        name = "-vs-".join(i.run_id for i in infos)
        ask_and_draw(self, Path("figures") / f"compare-{name}", draw)

    def action_back(self) -> None:
        if self.focused is self.query_one("#target", Input):
            self.query_one("#cmp-table-0", DataTable).focus()
            return
        self.app.pop_screen()
