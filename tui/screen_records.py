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
from .live import fmt_energy, fmt_latency
from .rundirs import RunInfo, find_run_dirs, load_run
from .screen_results import results_model_for


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


class RecordsScreen(Screen):
    BINDINGS = [
        Binding("enter", "open", "Open", show=True),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare marked"),
        Binding("g", "rescan", "Rescan"),
        Binding("escape", "back", "Back"),
        Binding("question_mark,f1", "app.help", "Keys"),
    ]

    def __init__(self, roots: list[Path]) -> None:
        super().__init__()
        self.roots = roots
        self.infos: dict[str, RunInfo] = {}
        self.marked: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(f"Records · {_shown(self.roots)}", id="records-title", classes="titlebar")
        yield DataTable(id="runs", cursor_type="row")
        yield Static("scanning…", id="records-status")
        yield Footer()

    def on_mount(self) -> None:
        t = self.query_one("#runs", DataTable)
        t.add_column("", key="mark", width=2)
        t.add_column("Run", key="run")
        t.add_column("Model", key="model")
        t.add_column("Task", key="task")
        t.add_column("GPU", key="gpu")
        t.add_column("ok/all", key="count")
        t.add_column("Best J/req", key="best")
        t.add_column("Created", key="created")
        t.focus()
        self.scan()

    @work(thread=True, exclusive=True, group="records-scan")
    def scan(self) -> None:
        dirs = find_run_dirs(self.roots)
        infos = [load_run(d) for d in dirs]
        self.app.call_from_thread(self._scanned, infos)

    def _scanned(self, infos: list[RunInfo]) -> None:
        t = self.query_one("#runs", DataTable)
        t.clear()
        self.infos = {}
        for info in infos:
            self.infos[info.path] = info
            ok, total = info.counts()
            energies = [r.energy_per_request_j for r in info.records
                        if r.status == "ok" and r.energy_per_request_j is not None]
            run = info.run_id + (" [SIM]" if info.simulated() else "")
            t.add_row(
                "✓" if info.path in self.marked else "", run, info.model() if not info.error else Text(info.error, style="red"),
                info.task(), info.gpus(), f"{ok}/{total}", fmt_energy(min(energies)) if energies else "—",
                info.created(), key=info.path,
            )
        n = len(infos)
        self.query_one("#records-status", Static).update(
            f"{n} run director{'y' if n == 1 else 'ies'} · enter open · space mark · c compare" if n
            else "no run directory found under " + _shown(self.roots))

    def _current(self) -> RunInfo | None:
        t = self.query_one("#runs", DataTable)
        if t.row_count == 0:
            return None
        key = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value
        return self.infos.get(key)

    @on(DataTable.RowSelected, "#runs")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

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
        t = self.query_one("#runs", DataTable)
        t.update_cell(info.path, "mark", "✓" if info.path in self.marked else "")

    def action_compare(self) -> None:
        paths = self.marked or []
        if len(paths) < 2:
            self.app.notify("Mark two or more runs with space first.", severity="warning")
            return
        self.app.push_screen(CompareScreen([self.infos[p] for p in paths]))

    def action_rescan(self) -> None:
        self.scan()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()


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
            t.add_column(m.metric.upper() or "Lat", key="lat")
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
            head.append(f"{info.model()} · {info.gpus()}{' · SIMULATED' if info.simulated() else ''}\n")
            if row is not None:
                lat = None if row.latency_ms is None else row.latency_ms / 1e3
                head.append(f"★ {row.label}: {fmt_energy(row.energy_per_request_j)}/req, "
                            f"{m.metric} {fmt_latency(lat)}")
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
