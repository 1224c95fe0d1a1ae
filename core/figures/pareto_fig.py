"""The time–energy Pareto front of a run: every configuration a point (invalid/failed ones
hollow, with their reasons in a legend note under the axes), the frontier line, the latency
target, the recommended and the fastest configuration, the saving between them.

Frontier, recommendation and fastest come from :func:`mle_tui.core.report.build_report`
(which uses :func:`mle_tui.core.pareto.recommend`); nothing is recomputed here.

``gid``s: ``configs-ok``, ``configs-not-ok`` (hollow), ``frontier``, ``target``,
``recommended``, ``fastest``, ``savings``, ``reasons`` (the legend note).
"""

from __future__ import annotations

import textwrap

from ..pareto import fmt_duration
from ..records import Record
from ..report import METRIC_NAMES, Report, ReportRow, build_report
from .style import PALETTE, FigureContext, energy_label, latency_scale, new_figure, stamp, styled

TITLE = "Time–energy Pareto front"
#: Characters per line of a not-ok configuration's reason under the axes (wrapped, not cut off).
REASON_WIDTH = 150


def _xy(rows: list[ReportRow], scale: float) -> tuple[list[float], list[float]]:
    xs = [r.latency_ms / 1e3 * scale for r in rows]  # type: ignore[operator]
    ys = [r.energy_per_request_j for r in rows]
    return xs, ys  # type: ignore[return-value]


def plotted(row: ReportRow) -> bool:
    return row.latency_ms is not None and row.energy_per_request_j is not None


def metric_axis_label(metric: str) -> str:
    _, unit = latency_scale(metric)
    return f"Mean {METRIC_NAMES.get(metric, metric or 'latency')} ({unit})"


def draw_front(ax, report: Report, *, color: str, prefix: str = "", name: str = "",
               label_points: bool = True) -> None:
    """Points, hollow not-ok points, frontier line and the recommended configuration of one
    report on ``ax`` (the Pareto figure and the comparison share it)."""
    scale, _ = latency_scale(report.metric)
    ok = [r for r in report.rows if r.status == "ok" and plotted(r)]
    bad = [r for r in report.rows if r.status != "ok" and plotted(r)]
    lead = f"{name}: " if name else ""
    if ok:
        xs, ys = _xy(ok, scale)
        ax.scatter(xs, ys, s=28, color=color, alpha=0.75, zorder=3, gid=f"{prefix}configs-ok",
                   label=f"{lead}configuration (ok)")
    if bad:
        xs, ys = _xy(bad, scale)
        ax.scatter(xs, ys, s=34, facecolors="none", edgecolors=color, linewidths=1.2, zorder=3,
                   gid=f"{prefix}configs-not-ok", label=f"{lead}invalid / failed (hollow; not on the frontier)")
    front = sorted((r for r in report.frontier if plotted(r)), key=lambda r: (r.latency_ms, r.energy_per_request_j))
    if front:
        xs, ys = _xy(front, scale)
        ax.plot(xs, ys, color=color, lw=1.6, zorder=2, gid=f"{prefix}frontier", label=f"{lead}Pareto frontier")
    if label_points:
        for r in front + bad:
            ax.annotate(r.label, (r.latency_ms / 1e3 * scale, r.energy_per_request_j),  # type: ignore[operator]
                        xytext=(4, 3), textcoords="offset points", fontsize=6, color="#333333", zorder=4)
    rec = report.recommended
    if rec is not None and plotted(rec):
        x, y = _xy([rec], scale)
        ax.scatter(x, y, marker="*", s=260,
                   color="#E69F00", edgecolors="black", linewidths=0.8, zorder=5, gid=f"{prefix}recommended",
                   label=f"{lead}recommended: {rec.label} ({rec.energy_per_request_j:.4g} J)")


@styled
def pareto_figure(records: list[Record], ctx: FigureContext, *, target_s: float | None = None,
                  metric: str | None = None, report: Report | None = None):
    """The figure (a matplotlib Figure) for one run."""
    rep = report or build_report(records, target_s, metric)
    scale, unit = latency_scale(rep.metric)
    fig, (ax,) = new_figure(8.0, 5.6)
    draw_front(ax, rep, color=PALETTE[0])
    fastest = next((r for r in rep.rows if r.fastest), None)
    rec = rep.recommended
    if fastest is not None and plotted(fastest):
        x, y = _xy([fastest], scale)
        ax.scatter(x, y, marker="D", s=90,
                   facecolors="none", edgecolors="#D55E00", linewidths=1.6, zorder=5, gid="fastest",
                   label=f"fastest: {fastest.label} ({fastest.energy_per_request_j:.4g} J)")
    if rep.target_s is not None:
        draw_target(ax, [rep], scale)
    if (rec is not None and fastest is not None and rec.key != fastest.key and plotted(rec) and plotted(fastest)
            and rep.savings_vs_fastest is not None):
        ax.annotate(
            f"recommended: −{rep.savings_vs_fastest:.1%} energy per request\nvs the fastest ({fastest.label})",
            xy=(rec.latency_ms / 1e3 * scale, rec.energy_per_request_j),  # type: ignore[operator]
            xytext=(0.45, 0.55), textcoords="axes fraction", ha="left", va="bottom", fontsize=8,
            gid="savings", zorder=6, bbox={"boxstyle": "round", "fc": "white", "ec": "#999999", "alpha": 0.9},
            arrowprops={"arrowstyle": "->", "color": "#333333", "lw": 1.0},
        )
    ax.set_xlabel(metric_axis_label(rep.metric))
    ax.set_ylabel(energy_label(records))
    ax.set_ylim(bottom=0)
    ax.set_xlim(0, right_edge([rep], scale))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right")
    else:
        ax.text(0.5, 0.5, f"no configuration with {rep.metric or 'latency'} and energy per request",
                transform=ax.transAxes, ha="center", gid="empty")
    _reasons_note(fig, rep)
    stamp(fig, [ax], ctx, f"{TITLE} — {ctx.run_id}")
    return fig


def right_edge(reports: list[Report], scale: float) -> float:
    """Fit the points; include the target unless it lies far beyond them."""
    xs = [r.latency_ms / 1e3 * scale for rep in reports for r in rep.rows if plotted(r)]  # type: ignore[operator]
    right = max(xs) * 1.1 if xs else 1.0
    target_s = reports[0].target_s if reports else None
    if target_s is not None and target_s * scale <= 2.0 * right:
        right = max(right, target_s * scale * 1.05)
    return right


def draw_target(ax, reports: list[Report], scale: float) -> None:
    """The target as a vertical line; when it lies far right of every point, a note at the right
    edge says so (the line stays, outside the view)."""
    rep = reports[0]
    x = rep.target_s * scale  # type: ignore[operator]
    label = f"target: {rep.metric} ≤ {fmt_duration(rep.target_s)}"  # type: ignore[arg-type]
    ax.axvline(x, color="#555555", ls="--", lw=1.2, zorder=1, gid="target", label=label)
    if x > right_edge(reports, scale):
        ax.text(0.99, 0.02, f"{label} →\n(right of every point)", transform=ax.transAxes, ha="right",
                va="bottom", fontsize=7, color="#555555", gid="target-note")


def _reasons_note(fig, rep: Report) -> None:
    """A legend under the axes listing every configuration that is not ok, with its reason."""
    from matplotlib.lines import Line2D

    bad = [r for r in rep.rows if r.status != "ok"]
    if not bad:
        return
    handles, labels = [], []
    for r in bad:
        reasons = "; ".join(r.reasons) or "no reason recorded"
        drawn = "" if plotted(r) else " (not drawn: no latency/energy)"
        handles.append(Line2D([], [], ls="none", marker="o", markerfacecolor="none",
                              markeredgecolor=PALETTE[0] if plotted(r) else "#999999"))
        labels.append(textwrap.fill(f"{r.label}: {r.status}: {reasons}{drawn}", REASON_WIDTH))
    leg = fig.legend(handles, labels, loc="outside lower center", ncols=1, fontsize=7, frameon=False,
                     title="Not on the frontier (hollow markers)", title_fontsize=7)
    leg.set_gid("reasons")
