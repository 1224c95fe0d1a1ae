"""Write a run's figures (or a comparison) into a directory: the entry points the CLI
(``report --plot``, ``compare --plot``) and the app's results screen call.

Files: ``pareto.<fmt>``, ``energy_vs_batch.<fmt>``, ``timeline-<config_key>.<fmt>`` per
configuration with a power timeline (``timelines="all"``), or only for the recommended and
the fastest configuration (``"recommended"``), or none; ``compare.<fmt>`` for a comparison.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from ..errors import InputError
from ..records import Manifest, Record
from ..report import build_report
from .style import DPI, FORMATS, FigureContext, context_for, require_matplotlib, save


TIMELINES = ("all", "recommended", "none")


def report_command(run_dirs: list[str], out_dir: str, fmt: str, target: str | None = None,
                   metric: str | None = None, timelines: str = "all") -> str:
    """The ``mle-tui`` command line that writes these figures again."""
    words = ["mle-tui", "report" if len(run_dirs) == 1 else "compare", *run_dirs, "--plot", out_dir,
             "--format", fmt]
    if target is not None:
        words += ["--target", target]
    if metric is not None:
        words += ["--metric", metric]
    if timelines != "all":
        words += ["--timelines", timelines]
    return shlex.join(words)


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InputError("command line", "--format", f"unknown figure format {fmt!r} (png or svg)")
    require_matplotlib()


def _close(fig) -> None:
    fig.clear()


def render_run(records: list[Record], manifest: Manifest | None, out_dir: Path, *,
               target_s: float | None = None, metric: str | None = None, fmt: str = "png",
               command: str = "", dpi: int = DPI, timelines: str = "all") -> list[Path]:
    """Every figure of one run; returns the files written."""
    _check(fmt)
    if timelines not in TIMELINES:
        raise InputError("command line", "--timelines", f"unknown choice {timelines!r} (all, recommended or none)")
    from .energy_batch import TITLE as EB_TITLE
    from .energy_batch import energy_batch_figure
    from .pareto_fig import TITLE as PF_TITLE
    from .pareto_fig import pareto_figure
    from .timeline import TITLE as TL_TITLE
    from .timeline import timeline_figure

    out = Path(out_dir)
    ctx = context_for(records, manifest, command)
    written = []
    report = build_report(records, target_s, metric)
    fig = pareto_figure(records, ctx, report=report)
    written.append(save(fig, out / f"pareto.{fmt}", fmt, ctx, PF_TITLE, dpi))
    _close(fig)
    fig = energy_batch_figure(records, ctx)
    if fig is not None:
        written.append(save(fig, out / f"energy_vs_batch.{fmt}", fmt, ctx, EB_TITLE, dpi))
        _close(fig)
    keep = {r.key for r in report.rows if r.recommended or r.fastest}
    for rec in sorted(records, key=lambda r: r.config_key):
        if timelines == "none" or (timelines == "recommended" and rec.config_key not in keep):
            continue
        if rec.power_timeline.t_s or rec.batch_timeline.t_s:
            fig = timeline_figure(rec, ctx)
            written.append(save(fig, out / f"timeline-{rec.config_key}.{fmt}", fmt, ctx,
                                f"{TL_TITLE}: {rec.config_key}", dpi))
            _close(fig)
    return written


def render_compare(runs: list[tuple[list[Record], Manifest | None]], out_dir: Path, *,
                   target_s: float | None = None, metric: str | None = None, fmt: str = "png",
                   command: str = "", dpi: int = DPI) -> Path:
    """The runs' fronts on one chart, ``compare.<fmt>``."""
    _check(fmt)
    from .compare import TITLE, compare_figure

    ctxs: list[tuple[list[Record], FigureContext]] = [
        (records, context_for(records, manifest, command)) for records, manifest in runs]
    fig, shown, description = compare_figure(ctxs, target_s=target_s, metric=metric)
    path = save(fig, Path(out_dir) / f"compare.{fmt}", fmt, shown, TITLE, dpi, subtitle=description)
    _close(fig)
    return path
