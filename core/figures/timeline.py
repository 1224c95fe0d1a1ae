"""One configuration over time: power (per GPU, total, HBM/VRAM, the power limit) with the
steady-state window shaded and recorded phases marked, and the batch timeline (running,
waiting, the maximum batch) underneath on the same time axis.

Phases: the measured diffusion batches (``Record.batches``: warm-up and measured, each a span)
and, when a record carries them, ``phases`` entries with ``name``, ``start_s`` and ``end_s``
(prefill/decode, encode/denoise/decode). Records of schema 1 have no ``phases`` field.

``gid``s: ``total``, ``gpu-<index>``, ``memory``, ``average``, ``power-limit`` on the power
axes; ``running``, ``waiting``, ``max-batch`` on the batch axes; ``steady`` on both (one
span each, the record's ``steady_state`` window); ``phase-<i>`` per phase span.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..records import Record
from .style import PALETTE, FigureContext, new_figure, stamp, styled

TITLE = "Power and batch timeline"
PHASE_COLORS = {"warm-up": "#BBBBBB", "prefill": "#56B4E9", "decode": "#009E73", "encode": "#CC79A7",
                "denoise": "#E69F00", "batch": "#0072B2"}


class Phase(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    start_s: float
    end_s: float


def phases_of(rec: Record) -> list[Phase]:
    """Recorded phases: explicit ``phases`` if the record has them, else diffusion batches."""
    explicit: Any = getattr(rec, "phases", None)
    if explicit:
        return [Phase(name=str(getattr(p, "name", None) or p.phase), start_s=float(p.start_s), end_s=float(p.end_s))
                for p in explicit]
    return [Phase(name="warm-up" if b.warmup else "batch", start_s=b.start_s, end_s=b.end_s)
            for b in sorted(rec.batches, key=lambda b: b.start_s)]


@styled
def timeline_figure(rec: Record, ctx: FigureContext):
    fig, (ax_p, ax_b) = new_figure(10.0, 6.2, rows=2, sharex=True, height_ratios=[3, 2])
    p, b = rec.power_timeline, rec.batch_timeline
    t = p.t_s
    if t:
        if len(p.per_gpu_w) > 1:
            for i, (idx, w) in enumerate(sorted(p.per_gpu_w.items(), key=lambda kv: int(kv[0]))):
                ax_p.plot(t, w, lw=0.7, alpha=0.8, color=PALETTE[(i + 2) % len(PALETTE)],
                          gid=f"gpu-{idx}", label=f"GPU {idx}")
        n = len(p.per_gpu_w) or 1
        ax_p.plot(t, p.total_w, lw=1.1, color=PALETTE[0], gid="total",
                  label="total, all GPUs (instant)" if n > 1 else f"GPU {rec.hardware.gpu_indices[0]} (instant)")
        if p.average_w:
            ax_p.plot(t, p.average_w, lw=0.9, color="#56B4E9", alpha=0.9, gid="average", label="1-s average")
        if p.memory_w:
            ax_p.plot(t, p.memory_w, lw=0.9, color=PALETTE[1], gid="memory", label="HBM (VRAM)")
    else:
        ax_p.text(0.5, 0.5, "no power timeline recorded", transform=ax_p.transAxes, ha="center")
    limits = rec.hardware.power_limit_w
    if limits:
        ax_p.axhline(sum(limits), color="#CC0000", ls=":", lw=1.0, gid="power-limit",
                     label=f"power limit ({' + '.join(f'{w:.0f}' for w in limits)} W)")
    ss = rec.steady_state
    for ax in (ax_p, ax_b):
        if ss is not None:
            ax.axvspan(ss.start_s, ss.end_s, color="#009E73", alpha=0.12, lw=0, zorder=0, gid="steady",
                       label=f"steady window ({ss.rule}) {ss.start_s:.1f}–{ss.end_s:.1f} s" if ax is ax_p else None)
    _draw_phases(ax_p, phases_of(rec))
    if p.period_s:
        dec = f", stored every {p.decimation} samples" if p.decimation > 1 else ""
        ax_p.set_title(f"sampled every {p.period_s * 1e3:.0f} ms{dec}", fontsize=7, loc="left")
    ax_p.set_ylabel("Power (W)")
    ax_p.set_ylim(bottom=0)
    ax_p.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    _draw_batch(ax_b, rec)
    ax_b.set_xlabel("Time since the configuration started (s)")
    extra = f" ({rec.status}: {'; '.join(rec.reasons)})" if rec.status != "ok" else ""
    stamp(fig, [ax_p, ax_b], ctx, f"{TITLE} — {rec.config.label()}{extra} — {ctx.run_id}")
    return fig


def _draw_phases(ax, phases: list[Phase]) -> None:
    seen: set[str] = set()
    measured = 0
    for i, ph in enumerate(phases):
        color = PHASE_COLORS.get(ph.name, PALETTE[(i + 3) % len(PALETTE)])
        label = None if ph.name in seen else f"phase: {ph.name}"
        seen.add(ph.name)
        ax.axvspan(ph.start_s, ph.end_s, ymin=0.93, ymax=1.0, color=color, alpha=0.85, lw=0.5,
                   ec="white", zorder=1, gid=f"phase-{i}", label=label)
        text = ph.name
        if ph.name == "batch":
            measured += 1
            text = f"batch {measured}"
        lo, hi = ax.get_xlim()
        if (ph.end_s - ph.start_s) < 0.04 * (hi - lo) and ph.name != "batch":
            continue  # too narrow to name (a diffusion batch's encode / decode): the legend does
        ax.text((ph.start_s + ph.end_s) / 2, 0.965, text, transform=ax.get_xaxis_transform(),
                ha="center", va="center", fontsize=6, color="black", zorder=2, clip_on=True)


def _draw_batch(ax, rec: Record) -> None:
    b = rec.batch_timeline
    if b.t_s:
        ax.step(b.t_s, b.running, where="post", lw=1.1, color=PALETTE[0], gid="running", label="running")
        if b.waiting:
            ax.step(b.t_s, b.waiting, where="post", lw=0.9, color=PALETTE[1], gid="waiting", label="waiting")
    else:
        ax.text(0.5, 0.5, "no batch timeline recorded", transform=ax.transAxes, ha="center")
    ax.axhline(rec.config.batch, color="#555555", ls="--", lw=0.9, gid="max-batch",
               label=f"maximum batch B = {rec.config.batch}")
    ax.set_ylabel({"text-to-image": "Images in the batch", "text-to-video": "Videos in the batch",
                   "image-to-video": "Videos in the batch"}.get(rec.task, "Requests"))
    ax.set_ylim(bottom=0)
    src = f" ({b.source})" if b.source else ""
    ax.set_title(f"batch timeline{src}", fontsize=7, loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
