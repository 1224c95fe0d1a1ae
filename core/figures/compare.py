"""Two (or more) runs' time–energy fronts on one chart: each run's configurations, its
frontier line and its recommended configuration, in its own colour, on a shared latency axis
(the first run's metric, unless one is given).

``gid``s: ``run<i>-configs-ok``, ``run<i>-configs-not-ok``, ``run<i>-frontier``,
``run<i>-recommended`` for run ``i``; ``target``.
"""

from __future__ import annotations

from ..records import Record
from ..report import build_report
from .pareto_fig import draw_front, draw_target, metric_axis_label, right_edge
from .style import PALETTE, FigureContext, energy_label, latency_scale, new_figure, stamp, styled

TITLE = "Time–energy fronts compared"


@styled
def compare_figure(runs: list[tuple[list[Record], FigureContext]], *, target_s: float | None = None,
                   metric: str | None = None):
    """``runs``: (records, context) per run, in legend order. Returns the figure, a context
    naming every run (the first run's command) and the one-line description of the runs."""
    if not runs:
        raise ValueError("compare_figure needs at least one run")
    reports = []
    for records, _ in runs:
        rep = build_report(records, target_s, metric)
        metric = metric or rep.metric  # the first run's metric for every run
        reports.append(rep)
    fig, (ax,) = new_figure(10.0, 5.8)
    for i, (rep, (_, ctx)) in enumerate(zip(reports, runs)):
        name = ctx.run_id + (" (SIMULATED)" if ctx.simulated else "")
        draw_front(ax, rep, color=PALETTE[i % len(PALETTE)], prefix=f"run{i}-", name=name, label_points=False)
    scale, _ = latency_scale(reports[0].metric)
    if target_s is not None:
        draw_target(ax, reports, scale)
    ax.set_xlabel(metric_axis_label(reports[0].metric))
    ax.set_ylabel(energy_label(runs[0][0]))
    ax.set_xlim(0, right_edge(reports, scale))
    ax.set_ylim(bottom=0)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper right")
    first = runs[0][1]
    shown = FigureContext(
        run_id=" vs ".join(c.run_id for _, c in runs),
        hardware=" | ".join(dict.fromkeys(c.hardware for _, c in runs)),
        model=" | ".join(dict.fromkeys(c.model for _, c in runs)),
        runtime=" | ".join(dict.fromkeys(c.runtime for _, c in runs)),
        power_source=" | ".join(dict.fromkeys(c.power_source for _, c in runs)),
        simulated=any(c.simulated for _, c in runs),
        command=first.command,
    )
    stamp(fig, [ax], shown, f"{TITLE} — {shown.run_id}", subtitle="\n".join(c.short() for _, c in runs))
    return fig, shown, "; ".join(c.short() for _, c in runs)
