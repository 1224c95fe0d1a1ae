"""Energy per request against (maximum) batch size, the paper's Figure 3: one series per
everything-but-the-batch (power limit, TP degree, diffusion steps), measured bars with the
TDP-based estimate behind them (lighter, wider) and the estimate's ratio written above, and a
line through each series' measured values.

The TDP estimate per request is ``energy_per_request_j × tdp_overestimation``: the record's
ratio is ``tdp_estimate_j`` over the measured energy of the same window (``FORMULAS``).

``gid``s: ``measured-<i>``, ``tdp-<i>``, ``line-<i>`` per series ``i`` (in legend order),
``ratio`` on each ratio label. Invalid configurations are hollow bars; failed ones are left out.
"""

from __future__ import annotations

import msgspec

from ..config import Config
from ..records import FORMULAS, Record
from .style import PALETTE, FigureContext, energy_label, finite, new_figure, stamp, styled

TITLE = "Energy per request vs batch size"


class Series(msgspec.Struct, kw_only=True):
    label: str
    records: list[Record]


def _series_config(c: Config) -> Config:
    return msgspec.structs.replace(c, max_num_seqs=None, batch_size=None)


def _order(c: Config) -> tuple:
    return (c.num_inference_steps or 0, c.width or 0, c.tensor_parallel, c.pipeline_parallel,
            c.power_limit_w if c.power_limit_w is not None else 10**9)


def series_of(records: list[Record]) -> list[Series]:
    """Drawable records (ok or invalid, with energy per request) grouped by their configuration
    without the batch, each sorted by batch size."""
    groups: dict[Config, list[Record]] = {}
    for r in records:
        if r.status == "failed" or not finite(r.energy_per_request_j):
            continue
        groups.setdefault(_series_config(r.config), []).append(r)
    out = []
    for cfg in sorted(groups, key=_order):
        recs = sorted(groups[cfg], key=lambda r: (r.config.batch, r.config_key))
        out.append(Series(label=cfg.label(), records=recs))
    return out


def tdp_per_request_j(r: Record) -> float | None:
    if finite(r.energy_per_request_j) and finite(r.tdp_overestimation):
        return r.energy_per_request_j * r.tdp_overestimation  # type: ignore[operator]
    return None


@styled
def energy_batch_figure(records: list[Record], ctx: FigureContext):
    """The figure, or None when no record has an energy per request."""
    series = series_of(records)
    if not series:
        return None
    batches = sorted({r.config.batch for s in series for r in s.records})
    pos = {b: i for i, b in enumerate(batches)}
    n = len(series)
    slot = 0.84 / n
    fig, (ax,) = new_figure(max(7.0, 1.2 + 0.45 * n * len(batches)), 5.2)
    any_tdp = False
    for si, s in enumerate(series):
        color = PALETTE[si % len(PALETTE)]
        xs = [pos[r.config.batch] - 0.42 + slot * (si + 0.5) for r in s.records]
        meas = [float(r.energy_per_request_j) for r in s.records]  # type: ignore[arg-type]
        tdp = [tdp_per_request_j(r) for r in s.records]
        tx = [x for x, t in zip(xs, tdp) if t is not None]
        ty = [t for t in tdp if t is not None]
        if ty:
            any_tdp = True
            ax.bar(tx, ty, slot * 0.95, color=color, alpha=0.22, edgecolor=color, linewidth=0.5,
                   zorder=1, gid=f"tdp-{si}")
        bars = ax.bar(xs, meas, slot * 0.55, color=color, edgecolor=color, linewidth=1.2, zorder=2,
                      gid=f"measured-{si}", label=s.label)
        for bar, r in zip(bars, s.records):
            if r.status != "ok":
                bar.set_facecolor("none")
                bar.set_hatch("////")
        ax.plot(xs, meas, color=color, marker="o", ms=3.5, lw=1.2, zorder=3, gid=f"line-{si}")
        for x, t, r in zip(xs, tdp, s.records):
            if t is not None:
                ax.text(x, t, f"{r.tdp_overestimation:.2f}×", ha="center", va="bottom", fontsize=6,
                        rotation=90 if n > 3 else 0, zorder=4, gid="ratio")
    llm = not all(r.task in ("text-to-image", "text-to-video", "image-to-video") for r in records)
    what = "videos" if records and all(r.task in ("text-to-video", "image-to-video") for r in records) else "images"
    ax.set_xticks(range(len(batches)), [str(b) for b in batches])
    ax.set_xlabel("Maximum batch size (max_num_seqs)" if llm else f"Batch size ({what} per batch)")
    ax.set_ylabel(energy_label(records))
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)
    from matplotlib.patches import Patch

    handles, labels = ax.get_legend_handles_labels()
    if any_tdp:
        handles.append(Patch(facecolor="#888888", alpha=0.25, edgecolor="#888888"))
        labels.append("behind: TDP estimate (TDP × GPUs × time), ratio above")
    if any(r.status != "ok" for s in series for r in s.records):
        handles.append(Patch(facecolor="none", edgecolor="#333333", hatch="////"))
        labels.append("hatched: invalid configuration")
    ax.legend(handles, labels, loc="upper right", title="series (configuration without the batch)",
              title_fontsize=7)
    eq = FORMULAS["energy_per_request_llm" if llm else "energy_per_request_diffusion"]
    ax.set_title(f"measured: {eq}", fontsize=7, loc="left")
    stamp(fig, [ax], ctx, f"{TITLE} — {ctx.run_id}")
    return fig
