"""Runs side by side (from the records browser's marked runs): per run its recommended
configuration at a shared latency target, and where the runs differ in what makes their
energies comparable."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Label, Static

from ..core.profile import parse_duration_s
from .figure_export import ask_and_draw, target_text
from .live import fmt_energy, fmt_latency, metric_label
from .rundirs import RunInfo
from .screen_results import measured_gpus, results_model_for


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
