"""Results screen: Pareto table, time–energy scatter, latency target with the recommendation
updated as you type, cost/carbon, TDP comparison, per-configuration timelines, export, copy."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, Static, TabbedContent, TabPane

from ..core.profile import parse_duration_s
from .charts import BatchChart, PowerChart
from .pareto_chart import ParetoChart
from .figure_export import ask_and_draw, target_text
from .live import fmt_energy, fmt_latency, metric_label
from .modals import ExportScreen
from .record_detail import STATUS_STYLE, config_detail, phase_summary, record_timedata  # noqa: F401
from .results_model import ResultsModel
from .rundirs import RunInfo, export_run

class ResultsScreen(Screen):
    BINDINGS = [
        Binding("t", "focus_target", "Target"),
        Binding("e", "export", "Export"),
        Binding("f", "figures", "Plots"),
        Binding("c", "copy", "Copy cmd"),
        Binding("l", "logs", "Log"),
        Binding("1", "tab('tab-table')", "Table", show=False),
        Binding("2", "tab('tab-scatter')", "Scatter", show=False),
        Binding("3", "tab('tab-config')", "Config", show=False),
        Binding("escape", "back", "Back"),
        Binding("question_mark,f1", "app.help", "Keys"),
    ]

    def __init__(self, info: RunInfo, target: str | None = None) -> None:
        super().__init__()
        self.info = info
        profile = info.profile()
        self.model = results_model_for(info)
        if target is None and profile is not None and profile.target.value is not None:
            target = str(profile.target.value)
        self.initial_target = target or ""
        self.committed_target = self.initial_target
        self.selected: str | None = None
        self._focus_before: object | None = None

    def compose(self) -> ComposeResult:
        m = self.model
        title = "Results · "
        if m.simulated or self.info.simulated():
            title += "SIMULATED · "
        title += f"{self.info.run_id} · {self.info.model()} · {self.info.task()} · {measured_gpus(self.info)}"
        yield Static(title, id="results-title", classes="titlebar")
        with Horizontal(id="target-row"):
            yield Label(f"Target {metric_label(m.metric)} ≤ ", id="target-label")
            yield Input(self.initial_target, placeholder="e.g. 100ms", id="target", compact=True)
            yield Static("", id="target-error", classes="error")
        yield Static("", id="rec-line")
        yield Static("", id="cost-line")
        with TabbedContent(id="tabs", initial="tab-table"):
            with TabPane("Pareto table", id="tab-table"):
                yield DataTable(id="pareto", cursor_type="row", zebra_stripes=False)
            with TabPane("Time–energy", id="tab-scatter"):
                yield ParetoChart(id="scatter")
                yield Static("", id="tdp-line")
            with TabPane("Configuration", id="tab-config"):
                with Vertical(id="cfg"):
                    yield Static("select a row in the table (enter)", id="cfg-detail")
                    yield PowerChart(id="cfg-power")
                    yield BatchChart(id="cfg-batch")
        yield Footer()

    def on_mount(self) -> None:
        inp = self.query_one("#target", Input)
        inp.cursor_blink = self.app.cursor_blink_enabled
        table = self.query_one("#pareto", DataTable)
        m = self.model
        table.add_column("", key="mark", width=2)
        table.add_column("Config", key="config")
        pcols = m.percentile_columns()
        primary = f"{m.metric}_mean" not in {c[0] for c in pcols}
        if primary:
            table.add_column(metric_label(m.metric), key="latency")
        table.add_column("J/req", key="ereq")
        table.add_column(m.unit_name, key="eunit")
        table.add_column("Avg W", key="power")
        table.add_column(m.throughput_unit, key="tput")
        for key, header, _ in pcols:
            table.add_column(header, key=key)
        table.add_column("Status", key="status")
        for row in m.rows:
            cells = [self._mark(row), row.label]
            if primary:
                cells.append(fmt_latency(_s(row.latency_ms)))
            cells += [fmt_energy(row.energy_per_request_j), _fmt_small(row.energy_per_unit_j),
                      _fmt_num(row.avg_power_w, 0), _fmt_rate(row.throughput)]
            cells += [fmt_latency(m.percentile(row.key, key, attr)) for key, _, attr in pcols]
            cells.append(Text(row.status + (f": {row.reasons[0]}" if row.reasons and row.status != "ok" else ""),
                              style=STATUS_STYLE.get(row.status, "")))
            table.add_row(*cells, key=row.key)
        self._apply_target(self.initial_target)
        table.focus()

    @staticmethod
    def _mark(row) -> Text:
        if row.recommended:
            return Text("★", style="bold yellow")
        if row.frontier:
            return Text("◆", style="green")
        return Text("")

    # -- target ---------------------------------------------------------------------------
    @on(Input.Changed, "#target")
    def _target_changed(self, event: Input.Changed) -> None:
        """Typing only checks the text; Enter commits it (Escape goes back to the last one)."""
        ok = self._check_target(event.value) is not False
        if ok and event.value != self.committed_target:
            self.query_one("#target-error", Static).update(" Enter to apply · Esc to keep "
                                                           f"{self.committed_target or 'no target'}")

    @on(Input.Submitted, "#target")
    def _target_submitted(self, event: Input.Submitted) -> None:
        if self._apply_target(event.value):
            self.query_one("#pareto", DataTable).focus()

    def _check_target(self, text: str) -> float | None | bool:
        """The target in s (None: no target), or False after showing why the text is bad."""
        err = self.query_one("#target-error", Static)
        inp = self.query_one("#target", Input)
        if not text.strip():
            inp.set_class(False, "-invalid")
            err.update("")
            return None
        try:
            target_s = parse_duration_s(text)
        except ValueError as exc:
            inp.set_class(True, "-invalid")
            err.update(f" {exc}")
            return False
        inp.set_class(False, "-invalid")
        err.update("")
        return target_s

    def _apply_target(self, text: str) -> bool:
        target_s = self._check_target(text)
        if target_s is False:
            return False
        self.committed_target = text
        self.model.set_target(target_s)
        self._refresh_recommendation()
        return True

    def _refresh_recommendation(self) -> None:
        m = self.model
        table = self.query_one("#pareto", DataTable)
        for row in m.rows:
            table.update_cell(row.key, "mark", self._mark(row))
        self.query_one("#rec-line", Static).update(m.recommendation_line())
        self.query_one("#cost-line", Static).update(m.cost_line())
        pts, front, rec = m.scatter()
        self.query_one("#scatter", ParetoChart).set_points(pts, front, rec, m.target_s)
        note = ""
        if m.target_s is not None and pts:
            xs = [p[1] for p in pts]
            if m.target_s > max(xs) or m.target_s < min(xs):
                side = "right" if m.target_s > max(xs) else "left"
                note = f" (target {fmt_latency(m.target_s)} is {side} of the plotted range)"
        self.query_one("#tdp-line", Static).update(
            "★ recommended · ◆/line frontier · o configuration · │ target" + note + "\n" + m.tdp_line()
            + (f"\n{m.sweep_line}" if m.sweep_line else ""))

    # -- selection --------------------------------------------------------------------------
    @on(DataTable.RowHighlighted, "#pareto")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value:
            self.show_config(event.row_key.value)

    @on(DataTable.RowSelected, "#pareto")
    def _selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key is not None and event.row_key.value:
            self.show_config(event.row_key.value)
            self.query_one("#tabs", TabbedContent).active = "tab-config"

    def show_config(self, key: str) -> None:
        rec = self.model.by_key.get(key)
        if rec is None:
            return
        self.selected = key
        self.query_one("#cfg-detail", Static).update(config_detail(rec))
        self.query_one("#cfg-power", PowerChart).set_data(record_timedata(rec))
        self.query_one("#cfg-batch", BatchChart).set_data(record_timedata(rec))

    # -- actions ----------------------------------------------------------------------------
    def action_focus_target(self) -> None:
        self.query_one("#target", Input).focus()

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        if tab == "tab-table":
            self.query_one("#pareto", DataTable).focus()

    def action_back(self) -> None:
        inp = self.query_one("#target", Input)
        if self.focused is inp:
            if inp.value != self.committed_target:
                inp.value = self.committed_target
            self._check_target(self.committed_target)
            self.query_one("#pareto", DataTable).focus()
            return
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    def action_copy(self) -> None:
        """Copy the command line that reproduces the highlighted configuration (else the
        recommended one): limits per GPU, environment, every server flag."""
        key = self.selected or (self.model.recommended.key if self.model.recommended else None)
        text = self.model.copy_text(key, self.info.manifest, run_dir=Path(self.info.path))
        if text is None:
            self.app.notify("No configuration selected to copy.", severity="warning")
            return
        self.app.copy_to_clipboard(text)
        self.app.last_copied = text
        self.app.notify(f"Command line for {key} copied (OSC 52; in tmux: set -g set-clipboard on).")

    def action_logs(self) -> None:
        from .screen_logs import LogScreen

        self._focus_before = self.focused
        self.app.push_screen(LogScreen(Path(self.info.path), self.selected))

    def action_export(self) -> None:
        default = str(Path("exports") / self.info.run_id)
        self._focus_before = self.focused
        self.app.push_screen(ExportScreen(default), self._do_export)

    def on_screen_resume(self) -> None:
        """Focus comes back to where it was before a dialog or another screen."""
        w = self._focus_before
        self._focus_before = None
        if w is not None and getattr(w, "is_attached", False) and w.focusable:
            self.set_focus(w)
        elif self.focused is None:
            self.query_one("#pareto", DataTable).focus()

    def _do_export(self, dest: str | None) -> None:
        if not dest:
            return
        try:
            written = export_run(Path(self.info.path), Path(dest), self.model.to_csv(), self.model.formulas_text())
        except OSError as exc:
            self.app.notify(f"Export failed: {exc}", severity="error")
            return
        self.app.last_export = Path(dest)
        self.app.notify(f"Exported {len(written)} files to {dest}")

    def action_figures(self) -> None:
        """Every figure of this run, at the target on screen, into DIR/figures (or a typed path)."""
        from ..core.figures import render_run, report_command

        m, info = self.model, self.info
        target_s, metric = m.target_s, m.metric

        def draw(dest: Path) -> list[Path]:
            command = report_command([info.path], str(dest), "png", target_text(target_s), metric)
            return render_run(m.records, info.manifest, dest, target_s=target_s, metric=metric, command=command)

        ask_and_draw(self, Path(info.path) / "figures", draw)


def measured_gpus(info: RunInfo) -> str:
    """The GPUs the records measured, e.g. ``1× NVIDIA H200 (GPU 0 of 2)``."""
    recs = info.records
    if not recs:
        return info.gpus()
    indices = sorted({i for r in recs for i in r.hardware.gpu_indices})
    names = sorted({n for r in recs for n in r.hardware.gpu_names})
    text = f"{len(indices)}× {'/'.join(names) or '?'}"
    node = len(info.manifest.gpus) if info.manifest and info.manifest.gpus else None
    which = ", ".join(map(str, indices))
    if node:
        text += f" (GPU {which} of {node})"
    elif indices:
        text += f" (GPU {which})"
    return text


def results_model_for(info: RunInfo) -> ResultsModel:
    profile = info.profile()
    model = ResultsModel(
        info.records, profile.latency_metric() if profile else None,
        price_usd_per_kwh=profile.cost.electricity_usd_per_kwh if profile else None,
        carbon_g_per_kwh=profile.cost.carbon_g_per_kwh if profile else None,
    )
    model.sweep_line = adaptive_line(Path(info.path), info.records, info.manifest)
    return model


def adaptive_line(run_dir: Path, records, manifest) -> str:  # noqa: ANN001
    """An adaptive run's account for the results screen ("" for a grid run)."""
    from ..core.adaptive.account import sweep_account
    from ..core.adaptive.plan import read_adaptive

    log = read_adaptive(run_dir)
    if log is None:
        return ""
    acc = sweep_account(run_dir, records, manifest, log.recommended)  # at the run's own target
    return "" if acc is None else f"adaptive: {acc.summary}" + (f" · {acc.reuse_check}" if acc.reuse_check else "")


def _s(ms: float | None) -> float | None:
    return None if ms is None else ms / 1e3


def _fmt_num(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def _fmt_small(v: float | None) -> str:
    """Energy per token / image / video: 3 significant digits, kJ from 1,000 J (a video)."""
    if v is not None and v >= 1e3:
        return fmt_energy(v)
    return "—" if v is None else f"{v:.3g}"


def _fmt_rate(v: float | None) -> str:
    """Throughput: one decimal from 10 a second, else 2 significant digits (0.11 videos/s)."""
    if v is None:
        return "—"
    return f"{v:,.1f}" if v >= 10 else f"{v:.2g}"
