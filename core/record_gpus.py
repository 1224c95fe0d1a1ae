"""What a record says about its GPUs, one line each for the report and the record view: each
GPU's power, share and utilisation, the node's other GPUs, neighbour sweeps on the host, and
whether the GPU was the bottleneck at all."""

from __future__ import annotations

from .measure.neighbours import neighbour_text
from .records import RecordHead

#: Below both, a GPU is "not the bottleneck": mean NVML utilisation (% of time a kernel ran) and
#: average power as a share of the applied limit, over the record's window.
UNDER_USED_UTIL_PCT = 80.0
UNDER_USED_POWER_SHARE = 0.8


def under_used(r: RecordHead) -> str | None:
    """``"57% busy, 324 of 400 W"`` when every GPU of the record averaged under
    :data:`UNDER_USED_UTIL_PCT` utilisation and under :data:`UNDER_USED_POWER_SHARE` of its applied
    limit: the server waited on something other than the GPU (host, an encoder, the client), and a
    power limit there trades little speed. None when not, or unknown."""
    per = r.per_gpu
    limits = list(r.hardware.power_limit_w or [])
    if not per or len(limits) != len(per) or any(g.utilisation_pct is None or g.avg_power_w is None for g in per):
        return None
    if any(g.utilisation_pct >= UNDER_USED_UTIL_PCT or g.avg_power_w >= UNDER_USED_POWER_SHARE * lim  # type: ignore[operator]
           for g, lim in zip(per, limits)):
        return None
    util = sum(g.utilisation_pct for g in per) / len(per)  # type: ignore[misc]
    watts = sum(g.avg_power_w for g in per) / len(per)  # type: ignore[misc]
    return f"{util:.0f}% busy, {watts:.0f} of {max(limits):.0f} W" + (" a GPU" if len(per) > 1 else "")


def gpu_summary(rec: RecordHead) -> str | None:
    """One line on a record's GPUs: each GPU's average power and share of the window energy
    (min-max beyond four GPUs), utilisation, the node's other GPUs (not in the record's energy)
    and any neighbour configurations. None for a one-GPU record with nothing else to say."""
    per = rec.per_gpu
    parts = []
    if len(per) > 1:
        if len(per) <= 4:
            parts.append("GPUs " + " · ".join(
                f"{g.index}: {_w(g.avg_power_w)} {_pct(g.share)}" + (f" {g.utilisation_pct:.0f}% util" if g.utilisation_pct is not None else "")
                for g in per))
        else:
            ws = [g.avg_power_w for g in per if g.avg_power_w is not None]
            sh = [g.share for g in per if g.share is not None]
            parts.append(f"{len(per)} GPUs {min(ws):.0f}–{max(ws):.0f} W" if ws else f"{len(per)} GPUs")
            if sh:
                parts[-1] += f", shares {min(sh):.1%}–{max(sh):.1%}"
    elif per and per[0].utilisation_pct is not None:
        node = f"{rec.hardware.node} " if rec.hardware.node else ""
        parts.append(f"{node}GPU {per[0].index}: {per[0].utilisation_pct:.0f}% util")
    if rec.idle_gpus:
        ws = [g.avg_power_w for g in rec.idle_gpus if g.avg_power_w is not None]
        drawn = f" drew {sum(ws):.0f} W" if ws else ""
        parts.append(f"node's other {len(rec.idle_gpus)} GPU{'s' * (len(rec.idle_gpus) != 1)} "
                     f"({', '.join(str(g.index) for g in rec.idle_gpus)}){drawn}, not in this energy")
    if rec.neighbours:
        parts.append("side by side with " + ", ".join(neighbour_text(rec.run_id, n) for n in rec.neighbours))
    return " · ".join(parts) if parts else None


def _w(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} W"


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.1%}"
