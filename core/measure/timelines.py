"""The record's decimated timelines (power, batch) from a trace's full-resolution samples."""

from __future__ import annotations

import math

import numpy as np

from ..records import BatchTimeline, PowerTimeline
from .energy import energy_at
from .power_trace import PowerTrace

#: Most points kept per timeline in a record.
MAX_TIMELINE_POINTS = 6000


def power_timeline(pt: PowerTrace | None, max_points: int = MAX_TIMELINE_POINTS,
                   readings: int | None = None) -> PowerTimeline:
    """Decimated to <= max_points: a point standing for several samples carries their
    time-weighted mean power; ``energy_j`` is the estimated cumulative energy
    (:func:`.energy.energy_at`, summed over GPUs) at the point's time, relative to the first
    point. ``readings``: how many raw readings the samples stand for (default: the samples)."""
    if pt is None or not len(pt.t_s):
        return PowerTimeline(period_s=pt.period_s if pt is not None else 0.1)
    t = np.asarray(pt.t_s, dtype=np.float64)
    n = len(t)
    per = np.asarray(pt.instant_w, dtype=np.float64).reshape(-1, n)
    avg = None if pt.average_w is None else np.asarray(pt.average_w, dtype=np.float64).reshape(-1, n).sum(axis=0)
    mem = None if pt.memory_w is None else np.asarray(pt.memory_w, dtype=np.float64).reshape(-1, n).sum(axis=0)
    step = max(1, math.ceil(n / max(1, max_points)))
    starts = np.arange(0, n, step)
    e_at = energy_at(pt, t[starts]).sum(axis=0) if len(pt.counter_t_s) else np.full(len(starts), np.nan)
    tot = per.sum(axis=0)
    if step > 1:
        nxt = np.empty_like(t)
        nxt[:-1] = t[1:]
        nxt[-1] = t[-1] + (float(np.median(np.diff(t))) if n > 1 else pt.period_s)
        dur = nxt - t

        def reduce(x: np.ndarray) -> np.ndarray:
            num = np.add.reduceat(x * dur, starts, axis=-1)
            den = np.add.reduceat(dur, starts)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(den > 0, num / np.where(den > 0, den, 1.0), x[..., starts])

        per, tot = reduce(per), reduce(tot)
        avg = None if avg is None else reduce(avg)
        mem = None if mem is None else reduce(mem)
        t = t[starts]
    energy = [] if not np.all(np.isfinite(e_at)) else (e_at - e_at[0]).tolist()
    return PowerTimeline(
        t_s=t.tolist(), total_w=tot.tolist(),
        per_gpu_w={str(i): row.tolist() for i, row in zip(pt.gpu_indices, per)},
        average_w=None if avg is None else avg.tolist(), memory_w=None if mem is None else mem.tolist(),
        energy_j=energy, period_s=pt.period_s, decimation=max(1, round((readings or n) / len(t))),
    )


def batch_timeline(t_s: list[float], cols: dict[str, list[float] | None], source: str,
                   max_points: int = MAX_TIMELINE_POINTS) -> BatchTimeline:
    """Decimated to <= max_points by block means; a column with a missing (NaN) value is left
    out (None), as is a column the runtime never reported."""
    n = len(t_s)
    step = max(1, math.ceil(n / max(1, max_points)))
    starts = np.arange(0, n, step)
    counts = np.diff(np.r_[starts, n])
    out: dict[str, list[float] | None] = {}
    for k, v in cols.items():
        if v is None or not len(v):
            out[k] = None if k not in ("running", "waiting") else []
            continue
        arr = np.asarray(v, dtype=np.float64)
        if not np.all(np.isfinite(arr)):
            out[k] = None if k not in ("running", "waiting") else []
            continue
        out[k] = arr.tolist() if step == 1 else (np.add.reduceat(arr, starts) / counts).tolist()
    t = list(t_s) if step == 1 else [t_s[i] for i in starts]
    return BatchTimeline(t_s=t, running=out["running"] or [], waiting=out["waiting"] or [],
                         kv_cache_usage=out.get("kv"), preemptions_total=out.get("pre"),
                         generation_tokens_total=out.get("gen"), source=source)
