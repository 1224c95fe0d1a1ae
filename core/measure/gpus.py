"""Per-GPU figures of a configuration, pure: each GPU's share of the window energy, the node's
other GPUs over the same window (a provisioning view, never in the configuration's energy), and
the gate that catches a GPU of the configuration left idle (a wrong device mapping).

A record's *window* is its steady window for LLMs and its measured batches for diffusion, so
it is a list of ``(t0_s, t1_s)`` spans; every figure here is summed over the spans.
"""

from __future__ import annotations

import math

import numpy as np

from ..records import Gate, GpuEnergy
from .energy import WindowEnergy, window_energy_j
from .power_trace import PowerTrace

Spans = list[tuple[float, float]]
#: Utilisation is judged only from at least this many samples inside the window (about 1 Hz).
MIN_UTIL_SAMPLES = 3
#: A GPU outside the configuration drawing this many times its least busy GPU's power is named.
IDLE_WARN_RATIO = 1.25


def split(power: PowerTrace | None, spans: Spans, util_t_s: list[float] | None = None,
          util_pct: list[list[float]] | None = None, *, shares: bool = True,
          windows: list[WindowEnergy] | None = None) -> list[GpuEnergy]:
    """One :class:`GpuEnergy` per GPU of ``power`` over ``spans``: counter energy, average
    power, the instant-power integral, (``shares``) the share of the summed energy, and the
    mean utilisation where samples fall inside the spans. ``windows``: the spans' energies
    when the caller has them already (one per span, from ``power``)."""
    if power is None or not power.gpu_indices or not spans:
        return []
    g = len(power.gpu_indices)
    energy = [0.0] * g
    integral = [0.0] * g
    if windows is None:
        windows = [window_energy_j(power, t0, t1) for t0, t1 in spans]
    for we in windows:
        for k in range(g):
            energy[k] += we.per_gpu_j[k] if k < len(we.per_gpu_j) else math.nan
            integral[k] += we.per_gpu_integral_j[k] if k < len(we.per_gpu_integral_j) else math.nan
    dur = math.fsum(max(0.0, t1 - t0) for t0, t1 in spans)
    total = math.fsum(energy) if all(math.isfinite(e) for e in energy) else math.nan
    util = utilisation(util_t_s or [], util_pct or [], spans, g)
    out = []
    for k, index in enumerate(power.gpu_indices):
        e = energy[k] if math.isfinite(energy[k]) else None
        out.append(GpuEnergy(
            index=int(index), energy_j=e,
            avg_power_w=e / dur if e is not None and dur > 0 else None,
            integral_j=integral[k] if math.isfinite(integral[k]) else None,
            share=e / total if shares and e is not None and math.isfinite(total) and total > 0 else None,
            utilisation_pct=util[k]))
    return out


def utilisation(t_s: list[float], pct: list[list[float]], spans: Spans, g: int) -> list[float | None]:
    """Mean utilisation per GPU over the samples inside ``spans`` (None with fewer than
    :data:`MIN_UTIL_SAMPLES`)."""
    if not t_s or not pct:
        return [None] * g
    t = np.asarray(t_s, dtype=np.float64)
    inside = np.zeros(t.shape, dtype=bool)
    for t0, t1 in spans:
        inside |= (t >= t0) & (t <= t1)
    out: list[float | None] = []
    for k in range(g):
        if k >= len(pct):
            out.append(None)
            continue
        v = np.asarray(pct[k], dtype=np.float64)[inside[: len(pct[k])]]
        v = v[np.isfinite(v)]
        out.append(float(v.mean()) if v.size >= MIN_UTIL_SAMPLES else None)
    return out


def active_gate(per_gpu: list[GpuEnergy], min_power_ratio: float, min_utilisation_pct: float) -> Gate | None:
    """``gpus_active``: every GPU of the configuration worked during the window. A GPU averaging
    under ``min_power_ratio`` of the busiest one's power (several GPUs), or whose mean
    utilisation is under ``min_utilisation_pct`` (where read), fails it. None when nothing can
    be judged (no per-GPU power, one GPU without utilisation samples)."""
    if not per_gpu:
        return None
    powers = [p.avg_power_w for p in per_gpu]
    problems: list[str] = []
    ratio_value: float | None = None
    if len(per_gpu) > 1 and min_power_ratio > 0 and all(p is not None for p in powers):
        busiest = max(powers)  # type: ignore[type-var]
        if busiest and busiest > 0:
            ratio_value = min(powers) / busiest  # type: ignore[type-var,operator]
            for p in per_gpu:
                if p.avg_power_w < min_power_ratio * busiest:  # type: ignore[operator]
                    problems.append(f"GPU {p.index} averaged {p.avg_power_w:.0f} W, under {min_power_ratio:.0%} "
                                    f"of the busiest GPU's {busiest:.0f} W")
    utils = [p for p in per_gpu if p.utilisation_pct is not None] if min_utilisation_pct > 0 else []
    if utils:
        for p in utils:
            if p.utilisation_pct < min_utilisation_pct:  # type: ignore[operator]
                problems.append(f"GPU {p.index} was {p.utilisation_pct:.0f} % utilised "
                                f"(under {min_utilisation_pct:g} %)")
    if ratio_value is None and not utils:
        return None
    ok = not problems
    what = ((f"all {len(per_gpu)} GPUs of the configuration worked" if len(per_gpu) > 1 else "the GPU worked") if ok else
            "a GPU of the configuration stayed idle (wrong device mapping?): " + "; ".join(problems))
    return Gate(name="gpus_active", ok=ok, value=ratio_value, threshold=min_power_ratio if ratio_value is not None
                else min_utilisation_pct, message=what)


def idle_warning(per_gpu: list[GpuEnergy], idle: list[GpuEnergy]) -> str | None:
    """A warning when a GPU outside the configuration drew :data:`IDLE_WARN_RATIO` times the
    configuration's least busy GPU's power or more over the window: someone else's work, or the server on the wrong devices."""
    cfg_min = min((p.avg_power_w for p in per_gpu if p.avg_power_w is not None), default=None)
    if cfg_min is None:
        return None
    busy = [p for p in idle if p.avg_power_w is not None and p.avg_power_w > IDLE_WARN_RATIO * cfg_min]
    if not busy:
        return None
    names = ", ".join(f"GPU {p.index} ({p.avg_power_w:.0f} W)" for p in busy)
    return (f"GPUs outside the configuration drew more than its least busy GPU ({cfg_min:.0f} W): {names}; "
            "another job on the node, or the server on the wrong devices")


def figures(trace, steady, spans: Spans, windows: list[WindowEnergy] | None = None):  # noqa: ANN001, ANN201
    """What analysis adds for a record over ``spans`` (``windows``: their energies from the
    configuration's power trace, where analysis has them): ``(per_gpu, idle_gpus, gate | None,
    warning | None)``."""
    per_gpu = split(trace.power, spans, trace.util_t_s, trace.util_pct, windows=windows)
    idle = split(trace.idle_power, spans, shares=False)
    gate = active_gate(per_gpu, steady.min_gpu_power_ratio, steady.min_gpu_utilisation_pct)
    return per_gpu, idle, gate, idle_warning(per_gpu, idle)
