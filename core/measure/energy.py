"""Energy of a window from a PowerTrace (pure: no clock, threads or I/O).

Provisional version (interpolated counter); the sampler work replaces it with the edge-precise
one of the same signature."""

from __future__ import annotations

import math

import msgspec
import numpy as np

from .power_trace import PowerTrace


class WindowEnergy(msgspec.Struct, kw_only=True):
    energy_j: float
    per_gpu_j: list[float] = []
    #: Zero-order-hold integral of instant power over the window, summed over GPUs, J.
    integral_j: float = math.nan
    #: A counter went backwards (reset): energy_j is NaN.
    counter_reset: bool = False
    method: str = "counter interpolated"


def window_energy_j(trace: PowerTrace, t0_s: float, t1_s: float) -> WindowEnergy:
    """Counter delta between the first reading at/after t0 and the last at/before t1, plus the
    zero-order-hold integral of instant power over the partial spans at each edge; with no
    counter reading inside the window, the integral alone. Per GPU, then summed."""
    ct = np.asarray(trace.counter_t_s, dtype=np.float64)
    t = np.asarray(trace.t_s, dtype=np.float64)
    per: list[float] = []
    reset = False
    k0 = int(np.searchsorted(ct, t0_s, side="left"))
    k1 = int(np.searchsorted(ct, t1_s, side="right")) - 1
    for g, col in enumerate(trace.counter_j):
        c = np.asarray(col, dtype=np.float64)
        p = np.asarray(trace.instant_w[g], dtype=np.float64) if g < len(trace.instant_w) else np.zeros(len(t))
        if len(c) > 1 and np.any(np.diff(c) < 0):
            reset = True
        if k0 <= k1 and len(c):
            e = float(c[k1] - c[k0]) + _zoh(t, p, t0_s, float(ct[k0])) + _zoh(t, p, float(ct[k1]), t1_s)
        else:
            e = _zoh(t, p, t0_s, t1_s)
        per.append(e)
    energy = math.fsum(per) if per and not reset else math.nan
    return WindowEnergy(energy_j=energy, per_gpu_j=per, integral_j=integral_j(trace, t0_s, t1_s),
                        counter_reset=reset, method="counter + edge integral")


def _zoh(t: np.ndarray, p: np.ndarray, a: float, b: float) -> float:
    if not len(t) or b <= a:
        return 0.0
    edges = np.r_[t, np.inf]
    lo = np.clip(edges[:-1], a, b)
    hi = np.clip(edges[1:], a, b)
    return float(np.sum(p * (hi - lo)))


def integral_j(trace: PowerTrace, t0_s: float, t1_s: float) -> float:
    """Zero-order-hold integral of instant power summed over GPUs over [t0, t1]; nothing before
    the first sample, the last sample holds after it."""
    if not trace.t_s or t1_s <= t0_s:
        return 0.0 if trace.t_s else math.nan
    t = np.asarray(trace.t_s, dtype=np.float64)
    p = np.sum(np.asarray(trace.instant_w, dtype=np.float64), axis=0)
    edges = np.r_[t, np.inf]
    lo = np.clip(edges[:-1], t0_s, t1_s)
    hi = np.clip(edges[1:], t0_s, t1_s)
    return float(np.sum(p * (hi - lo)))
