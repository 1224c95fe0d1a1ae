"""The results screen's model on top of :mod:`mle_tui.core.report` (Pareto rows, the
recommendation for a latency target, cost/carbon, TDP, CSV) plus the clipboard text. No
Textual here; nothing is recomputed that the core already computes."""

from __future__ import annotations

from ..core.pareto import TARGET_MARGIN_REL
from ..core.profile import DIFFUSION_TASKS
from ..core.records import FORMULAS, Record
from ..core.report import Report, ReportRow, build_report, to_csv
from .live import fmt_energy, fmt_latency, metric_label


class ResultsModel:
    """Rows for every record of a run and the recommendation for the current target."""

    def __init__(self, records: list[Record], metric: str | None = None, *,
                 price_usd_per_kwh: float | None = None, carbon_g_per_kwh: float | None = None) -> None:
        self.records = list(records)
        self.by_key = {r.config_key: r for r in self.records}
        self._metric_arg = metric
        self._price, self._carbon = price_usd_per_kwh, carbon_g_per_kwh
        self.diffusion = bool(self.records) and all(r.task in DIFFUSION_TASKS for r in self.records)
        video = bool(self.records) and all(r.task in ("text-to-video", "image-to-video") for r in self.records)
        self.unit_name = "J/video" if video else "J/image" if self.diffusion else "J/token"
        self.target_s: float | None = None
        self.report: Report = self._build(None)
        #: An adaptive run's GPU-time account and search summary ("" for a grid run).
        self.sweep_line = ""

    def _build(self, target_s: float | None) -> Report:
        return build_report(self.records, target_s, self._metric_arg,
                            price_usd_per_kwh=self._price, carbon_g_per_kwh=self._carbon)

    def set_target(self, target_s: float | None) -> Report:
        self.target_s = target_s
        self.report = self._build(target_s)
        return self.report

    # -- accessors ------------------------------------------------------------------------
    @property
    def rows(self) -> list[ReportRow]:
        return self.report.rows

    @property
    def metric(self) -> str:
        return self.report.metric

    @property
    def simulated(self) -> bool:
        return self.report.simulated

    @property
    def throughput_unit(self) -> str:
        units = {r.throughput_unit for r in self.rows if r.throughput is not None}
        return units.pop() if len(units) == 1 else ("img/s" if self.diffusion else "tok/s")

    @property
    def recommended(self) -> ReportRow | None:
        return self.report.recommended

    @property
    def fastest(self) -> ReportRow | None:
        return next((r for r in self.rows if r.fastest), None)

    def row(self, key: str | None) -> ReportRow | None:
        return next((r for r in self.rows if r.key == key), None)

    # -- text -------------------------------------------------------------------------------
    def recommendation_line(self) -> str:
        rep, row = self.report, self.report.recommended
        if row is None:
            return rep.message or "no recommendation"
        lat = None if row.latency_ms is None else row.latency_ms / 1e3
        text = (f"★ {row.label}: {fmt_energy(row.energy_per_request_j)}/request, "
                f"{metric_label(self.metric)} {fmt_latency(lat)}")
        fast = self.fastest
        if fast is not None and fast.key != row.key and rep.savings_vs_fastest is not None:
            text += f" — saves {rep.savings_vs_fastest * 100:.1f}% vs fastest ({fast.label})"
        elif fast is not None and fast.key == row.key:
            text += " — also the fastest"
        alt = rep.with_margin
        if alt is not None and alt.energy_per_request_j and row.energy_per_request_j:
            gap = alt.energy_per_request_j / row.energy_per_request_j - 1.0
            text += (f" · at the target (another GPU may miss it): {alt.label} keeps "
                     f"{TARGET_MARGIN_REL:.0%} spare at {gap:+.1%} energy")
        return text

    def cost_line(self) -> str:
        row = self.report.recommended
        if row is None:
            return ""  # the recommendation line already says why (shown once)
        bits = []
        if row.cost_per_1k_requests_usd is not None:
            bits.append(f"${row.cost_per_1k_requests_usd:.4f}/1k req")
        if row.carbon_per_1k_requests_g is not None:
            bits.append(f"{row.carbon_per_1k_requests_g:.1f} gCO2e/1k req")
        if row.tdp_overestimation is not None:
            bits.append(f"TDP estimate {row.tdp_overestimation:.2f}× measured")
        return " · ".join(bits)

    def tdp_line(self) -> str:
        ratios = [r.tdp_overestimation for r in self.rows if r.tdp_overestimation and r.status == "ok"]
        if not ratios:
            return "TDP estimate: not available"
        return (f"TDP × GPUs × time overestimates the measured energy {min(ratios):.2f}–{max(ratios):.2f}× "
                f"across configurations")

    def scatter(self) -> tuple[list[tuple[str, float, float]], list[tuple[float, float]], tuple[float, float] | None]:
        pts = [(r.key, r.latency_ms / 1e3, r.energy_per_request_j) for r in self.rows
               if r.status == "ok" and r.latency_ms is not None and r.energy_per_request_j is not None]
        front = [(r.latency_ms / 1e3, r.energy_per_request_j) for r in self.report.frontier
                 if r.latency_ms is not None and r.energy_per_request_j is not None]
        front.sort()
        rec = self.report.recommended
        rec_pt = (rec.latency_ms / 1e3, rec.energy_per_request_j) if (
            rec is not None and rec.latency_ms is not None and rec.energy_per_request_j is not None) else None
        return pts, front, rec_pt

    def to_csv(self) -> str:
        return to_csv(self.report)

    def formulas_text(self) -> str:
        lines = [f"{k}: {v}" for k, v in FORMULAS.items()]
        lines.append(f"latency metric of the frontier: {self.metric} (mean)")
        lines.append("frontier: configurations not dominated in (latency, energy per request); "
                     "recommended: lowest energy per request with latency <= target")
        return "\n".join(lines) + "\n"

    def copy_text(self, key: str | None = None, manifest=None, run_dir=None) -> str | None:
        """A command line reproducing configuration ``key`` (default: the recommended one)
        exactly: power limits per GPU, environment, every server flag (:mod:`core.repro`)."""
        from ..core.repro import repro_command

        if key is None:
            row = self.report.recommended
            key = row.key if row else None
        rec = self.by_key.get(key) if key else None
        if rec is None:
            return None
        return repro_command(rec, manifest, run_dir=run_dir)

    def percentile_columns(self) -> list[tuple[str, str, str]]:
        """(column key, header, stat attribute) for the latency percentiles the records hold:
        TTFT and TPOT mean/p50/p90/p99 for LLMs, batch latency for diffusion."""
        names = ("batch_latency",) if self.diffusion else ("ttft", "tpot")
        cols = []
        for name in names:
            if not any(getattr(r.latency, name) is not None for r in self.records):
                continue
            short = "batch" if name == "batch_latency" else metric_label(name)
            for stat in ("mean", "p50", "p90", "p99"):
                cols.append((f"{name}_{stat}", f"{short} {stat}", f"{stat}_s"))
        return cols

    def percentile(self, key: str, column: str, attr: str) -> float | None:
        rec = self.by_key.get(key)
        if rec is None:
            return None
        st = getattr(rec.latency, column.rsplit("_", 1)[0], None)
        return None if st is None else getattr(st, attr)
