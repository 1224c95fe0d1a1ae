"""Energy of a window from a :class:`~.power_trace.PowerTrace`: the cumulative energy counter,
with the instant-power shape filling in between counter readings. Pure: no clock, threads or I/O;
the live sampler and offline analysis call the same functions.

The counter (NVML's cumulative energy) advances in ticks (~100 ms): a reading at ``t`` holds the
energy up to the last tick before ``t``, so a reading's value is exact but its time is not.

**Anchors.** Per GPU, each distinct counter value is an anchor ``(tau, value)`` where ``tau`` is
the tick at which the counter took that value. A run of equal readings whose first reading
follows the last reading of the previous value within ``precise_bracket_s`` brackets that tick
tightly (the sampler re-reads the counter every 5 ms after each mark until it changes): ``tau``
is the bracket's midpoint (within half the bracket of the true tick) and the anchor is *located*. Otherwise ``tau`` is the run's first
reading time (the tick lies up to one tick before it). An unlocated anchor read less than
``tick_guard_s`` before a located one is dropped: its tick time is the less certain of the two
and they describe the same stretch (typically a mark, then its probes); so is one between two
located anchors at most ``BRIDGE_S`` apart (a diffusion batch bracketed by marks).

**Estimated cumulative energy** ``E(t)``: between anchors ``a`` and ``a + 1`` the counter delta
is distributed in proportion to the zero-order-hold integral of instant power,
``E(t) = v_a + (v_{a+1} - v_a) * I(tau_a, t) / I(tau_a, tau_{a+1})`` (linearly in time when that
integral is zero). Before the first / after the last anchor, ``E`` follows the instant-power
integral. A window's energy is ``E(t1) - E(t0)`` summed over GPUs, so windows are additive, a
window between two anchors gets their exact counter delta, and the partial ticks at its edges are
filled with the instant-power shape. When no anchor lies inside the window, its energy is the
interval's counter delta split by instant power (``METHOD_SPLIT``).

A counter that goes backwards between readings overlapping the window is a reset: the window's
energy is NaN and ``counter_reset`` is set.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from .power_trace import PowerTrace

#: A tick bracketed this tightly (last reading of the old value to first of the new) is located.
PRECISE_BRACKET_S = 0.03
#: An unlocated anchor read this close before a located one is dropped; also how close a located
#: tick must be to an edge for the edge to count as located.
TICK_GUARD_S = 0.25

METHOD_TICKS = "counter delta, edges at located ticks"
METHOD_READINGS = "counter delta, edges at counter readings"
METHOD_SPLIT = "counter interval split by instant power (no reading inside the window)"
METHOD_EXTRAPOLATED = "counter extrapolated by instant power beyond the readings"
METHOD_NONE = "no counter readings"
METHOD_RESET = "counter reset"
#: Unlocated anchors between two located ones at most this far apart are dropped: between
#: them the instant-power shape splits the exact delta better than a reading whose tick time is
#: known only to within a tick. Farther apart, readings keep the split honest against a drifting
#: instant-power bias.
BRIDGE_S = 10.0
#: Worst first: a window's method is the worst over its GPUs and edges.
_ORDER = (METHOD_RESET, METHOD_NONE, METHOD_EXTRAPOLATED, METHOD_SPLIT, METHOD_READINGS, METHOD_TICKS)


class WindowEnergy(msgspec.Struct, kw_only=True):
    """Energy of the window ``[t0_s, t1_s]``."""

    #: Summed over GPUs, J (NaN on a counter reset or without counter readings).
    energy_j: float
    #: Per GPU (in ``gpu_indices`` order), J.
    per_gpu_j: list[float]
    #: Zero-order-hold integral of instant power over the window, summed over GPUs, J.
    integral_j: float
    #: The same integral per GPU (in ``gpu_indices`` order), J.
    per_gpu_integral_j: list[float] = []
    #: A counter went backwards between readings overlapping the window.
    counter_reset: bool = False
    #: How the edges were resolved (one of the ``METHOD_*`` strings, the worst over GPUs).
    method: str = METHOD_TICKS


class Anchors(msgspec.Struct, kw_only=True):
    """One GPU's counter anchors: tick times (ascending), values (J) and whether located."""

    tau_s: list[float]
    value_j: list[float]
    located: list[bool]


# --- instant power ------------------------------------------------------------------------
class _Zoh:
    """Zero-order-hold integral of instant power of every GPU over a slice of the samples.
    Power before the first sample counts as zero; the last sample holds after it."""

    def __init__(self, t: np.ndarray, p: np.ndarray, lo_s: float, hi_s: float) -> None:
        n = len(t)
        i0 = max(0, int(np.searchsorted(t, lo_s, "right")) - 1)
        i1 = min(n, int(np.searchsorted(t, hi_s, "right")) + 1)
        self.t = t[i0:i1]
        self.p = p[:, i0:i1]
        cum = np.zeros_like(self.p)
        if self.t.size > 1:
            np.cumsum(self.p[:, :-1] * np.diff(self.t), axis=1, out=cum[:, 1:])
        self.cum = cum

    def at(self, x: np.ndarray) -> np.ndarray:
        """Integral from the slice's first sample to each ``x``, per GPU: shape (G, len(x))."""
        x = np.asarray(x, dtype=np.float64)
        if self.t.size == 0:
            return np.zeros((self.p.shape[0], x.size))
        j = np.searchsorted(self.t, x, "right") - 1
        before = j < 0
        j = np.maximum(j, 0)
        dt = np.where(before, 0.0, x - self.t[j])
        return self.cum[:, j] + self.p[:, j] * dt


def _columns(trace: PowerTrace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    g = len(trace.gpu_indices)
    t = np.asarray(trace.t_s, dtype=np.float64).reshape(-1)
    p = np.asarray(trace.instant_w, dtype=np.float64)
    if p.size == 0:
        p = np.zeros((g, 0))
        t = t[:0]
    p = p.reshape(g, -1)
    tc = np.asarray(trace.counter_t_s, dtype=np.float64).reshape(-1)
    c = np.asarray(trace.counter_j, dtype=np.float64)
    c = np.zeros((g, 0)) if c.size == 0 else c.reshape(g, -1)
    if c.shape[1] != tc.size:  # a malformed trace: no usable counter (energy NaN, method says so)
        tc, c = tc[:0], np.zeros((g, 0))
    return t, p, tc, c


# --- counter anchors ----------------------------------------------------------------------
def _anchors(tc: np.ndarray, c: np.ndarray, precise_bracket_s: float, tick_guard_s: float,
             bridge_s: float = BRIDGE_S) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ok = np.isfinite(c) & np.isfinite(tc)
    tc, c = tc[ok], c[ok]
    if tc.size == 0:
        return tc, c, np.zeros(0, dtype=bool)
    start = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    t_first = tc[start]
    t_prev = np.r_[-np.inf, tc[start[1:] - 1]]
    located = (t_first - t_prev) <= precise_bracket_s
    tau = np.where(located, 0.5 * (t_first + np.where(np.isfinite(t_prev), t_prev, t_first)), t_first)
    val = c[start]
    if located.any() and not located.all():
        loc_pos = np.flatnonzero(located)
        k = np.searchsorted(loc_pos, np.arange(len(start)), "right")  # next located anchor
        has = k < len(loc_pos)
        nxt_tau = np.full(len(start), np.inf)
        nxt_tau[has] = tau[loc_pos[k[has]]]
        j = np.searchsorted(loc_pos, np.arange(len(start)), "left") - 1  # previous located anchor
        prv_tau = np.full(len(start), -np.inf)
        prv_tau[j >= 0] = tau[loc_pos[j[j >= 0]]]
        bridged = (nxt_tau - prv_tau) <= bridge_s
        keep = located | ((nxt_tau - t_first > tick_guard_s) & ~bridged)
        tau, val, located = tau[keep], val[keep], located[keep]
    return tau, val, located


def anchors(trace: PowerTrace, gpu: int = 0, *, precise_bracket_s: float = PRECISE_BRACKET_S,
            tick_guard_s: float = TICK_GUARD_S) -> Anchors:
    """The counter anchors of GPU position ``gpu`` (for inspection and tests)."""
    _, _, tc, c = _columns(trace)
    tau, val, loc = _anchors(tc, c[gpu], precise_bracket_s, tick_guard_s)
    return Anchors(tau_s=tau.tolist(), value_j=val.tolist(), located=loc.tolist())


def _estimate(x: np.ndarray, tau: np.ndarray, val: np.ndarray, i_x: np.ndarray,
              i_tau: np.ndarray) -> np.ndarray:
    """E(x) of one GPU from its anchors, given the power integral at ``x`` and at the anchors."""
    a = np.searchsorted(tau, x, "right") - 1
    last = len(tau) - 1
    out = np.empty(x.shape)
    lo = a < 0
    hi = a >= last
    mid = ~(lo | hi)
    out[lo] = val[0] - (i_tau[0] - i_x[lo])
    out[hi & ~lo] = val[last] + (i_x[hi & ~lo] - i_tau[last])
    if mid.any():
        am = a[mid]
        den = i_tau[am + 1] - i_tau[am]
        num = i_x[mid] - i_tau[am]
        span = tau[am + 1] - tau[am]
        safe = np.where(den > 0, den, 1.0)
        frac = np.where(den > 0, num / safe, (x[mid] - tau[am]) / np.where(span > 0, span, 1.0))
        out[mid] = val[am] + (val[am + 1] - val[am]) * frac
    return out


def energy_at(trace: PowerTrace, times_s: list[float] | np.ndarray, *,
              precise_bracket_s: float = PRECISE_BRACKET_S, tick_guard_s: float = TICK_GUARD_S) -> np.ndarray:
    """Estimated cumulative energy ``E(t)`` of each GPU at ``times_s``, J, relative to that
    GPU's first counter reading: shape (G, len(times_s)); NaN for a GPU without readings."""
    t, p, tc, c = _columns(trace)
    x = np.asarray(times_s, dtype=np.float64).reshape(-1)
    g = p.shape[0]
    out = np.full((g, x.size), np.nan)
    if x.size == 0:
        return out
    per = [_anchors(tc, c[k], precise_bracket_s, tick_guard_s) for k in range(g)]
    taus = [a[0] for a in per if a[0].size]
    if not taus:
        return out
    lo = min(float(x.min()), min(float(a[0]) for a in taus))
    hi = max(float(x.max()), max(float(a[-1]) for a in taus))
    zoh = _Zoh(t, p, lo, hi)
    i_x = zoh.at(x)
    for k, (tau, val, _) in enumerate(per):
        if tau.size:
            out[k] = _estimate(x, tau, val - val[0], i_x[k], zoh.at(tau)[k])
    return out


# --- windows ------------------------------------------------------------------------------
def _edge_method(x: float, tau: np.ndarray, located: np.ndarray, tick_guard_s: float) -> str:
    if x < tau[0] or x > tau[-1]:
        return METHOD_EXTRAPOLATED
    a = int(np.searchsorted(tau, x, "right")) - 1
    near = [j for j in (a, a + 1) if j < len(tau) and located[j] and abs(tau[j] - x) <= tick_guard_s]
    return METHOD_TICKS if near else METHOD_READINGS


def _around(tau: np.ndarray, x: float) -> list[int]:
    """Indices of the anchors enclosing ``x`` (clipped to the anchors there are)."""
    a = int(np.searchsorted(tau, x, "right")) - 1
    return [min(max(j, 0), len(tau) - 1) for j in (a, a + 1)]


def window_energy_j(trace: PowerTrace, t0_s: float, t1_s: float, *,
                    precise_bracket_s: float = PRECISE_BRACKET_S,
                    tick_guard_s: float = TICK_GUARD_S) -> WindowEnergy:
    """Energy of the GPUs of ``trace`` over ``[t0_s, t1_s]`` (see the module docstring).
    Costs O(samples in the window + counter readings)."""
    t, p, tc, c = _columns(trace)
    g = p.shape[0]
    t0, t1 = float(t0_s), float(t1_s)
    per = [_anchors(tc, c[k], precise_bracket_s, tick_guard_s) for k in range(g)]
    lo, hi = min(t0, t1), max(t0, t1)
    for tau, _, _ in per:
        if tau.size:
            near = tau[_around(tau, t0) + _around(tau, t1)]
            lo, hi = min(lo, float(near.min())), max(hi, float(near.max()))
    zoh = _Zoh(t, p, lo, hi)
    edges = np.array([t0, t1])
    i_edges = zoh.at(edges)
    per_integral = [float(v) for v in (i_edges[:, 1] - i_edges[:, 0])] if g else []
    integral = float(np.sum(i_edges[:, 1] - i_edges[:, 0])) if g else 0.0
    per_gpu: list[float] = []
    methods: list[str] = []
    reset = False
    w0, w1 = min(t0, t1), max(t0, t1)
    for k, (tau, val, located) in enumerate(per):
        ok = np.isfinite(c[k])
        ck, tk = c[k][ok], tc[ok]
        back = np.flatnonzero(np.diff(ck) < 0) if ck.size > 1 else np.zeros(0, dtype=np.int64)
        if np.any((tk[back + 1] > w0) & (tk[back] < w1)):  # a reset between readings overlapping the window
            reset = True
            per_gpu.append(math.nan)
            methods.append(METHOD_RESET)
            continue
        if tau.size == 0:
            per_gpu.append(math.nan)
            methods.append(METHOD_NONE)
            continue
        e = _estimate(edges, tau, val - val[0], i_edges[k], zoh.at(tau)[k])
        per_gpu.append(float(e[1] - e[0]))
        methods += [_edge_method(t0, tau, located, tick_guard_s), _edge_method(t1, tau, located, tick_guard_s)]
        if t0 != t1 and int(np.searchsorted(tau, t0, "right")) == int(np.searchsorted(tau, t1, "right")):
            methods.append(METHOD_SPLIT)
    energy = math.fsum(per_gpu) if per_gpu and all(math.isfinite(v) for v in per_gpu) else math.nan
    method = min(methods, key=_ORDER.index) if methods else METHOD_NONE
    return WindowEnergy(energy_j=energy, per_gpu_j=per_gpu, integral_j=integral, per_gpu_integral_j=per_integral,
                        counter_reset=reset, method=method)
