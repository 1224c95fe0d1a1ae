"""The record's decimated timelines (power, batch) from a trace's full-resolution samples."""

from __future__ import annotations

import math

import numpy as np

from ..records import BatchTimeline, PowerTimeline
from .power_trace import PowerTrace

#: Most points kept per timeline in a record.
MAX_TIMELINE_POINTS = 6000


def _hold_weighted(v: np.ndarray, dur: np.ndarray, starts: np.ndarray) -> np.ndarray:
    num = np.add.reduceat(v * dur, starts)
    den = np.add.reduceat(dur, starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), v[starts])


def power_timeline(pt: PowerTrace | None, max_points: int = MAX_TIMELINE_POINTS) -> PowerTimeline:
    """Decimated to <= max_points: a point standing for several samples carries their
    time-weighted mean power; ``energy_j`` is the summed counter interpolated at each point's
    time, relative to the first point."""
    if pt is None or not pt.t_s:
        return PowerTimeline(period_s=pt.period_s if pt is not None else 0.1)
    t = np.asarray(pt.t_s, dtype=np.float64)
    n = len(t)
    per = [np.asarray(c, dtype=np.float64) for c in pt.instant_w]
    tot = np.sum(per, axis=0) if per else np.zeros(n)
    avg = None if pt.average_w is None else np.sum(np.asarray(pt.average_w, dtype=np.float64), axis=0)
    mem = None if pt.memory_w is None else np.sum(np.asarray(pt.memory_w, dtype=np.float64), axis=0)
    step = max(1, math.ceil(n / max(1, max_points)))
    if step > 1:
        starts = np.arange(0, n, step)
        nxt = np.empty_like(t)
        nxt[:-1] = t[1:]
        nxt[-1] = t[-1] + (float(np.median(np.diff(t))) if n > 1 else pt.period_s)
        dur = nxt - t
        per = [_hold_weighted(v, dur, starts) for v in per]
        tot = _hold_weighted(tot, dur, starts)
        avg = None if avg is None else _hold_weighted(avg, dur, starts)
        mem = None if mem is None else _hold_weighted(mem, dur, starts)
        t = t[starts]
    if pt.counter_t_s and pt.counter_j:
        ct = np.asarray(pt.counter_t_s, dtype=np.float64)
        e = np.sum([np.interp(t, ct, np.asarray(c, dtype=np.float64)) for c in pt.counter_j], axis=0)
        energy = (e - e[0]).tolist()
    else:
        energy = []
    return PowerTimeline(
        t_s=t.tolist(), total_w=tot.tolist(),
        per_gpu_w={str(i): v.tolist() for i, v in zip(pt.gpu_indices, per)},
        average_w=None if avg is None else avg.tolist(), memory_w=None if mem is None else mem.tolist(),
        energy_j=energy, period_s=pt.period_s, decimation=step,
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
