"""Bounded time series for live charts: fixed memory however long a run lasts.

A :class:`DecimatingSeries` keeps at most ``capacity`` points per channel. When full it halves
itself by averaging neighbouring pairs (mean power over a bucket keeps the energy) and from then
on averages every ``stride`` incoming samples into one point, so an hour of 10 Hz samples is
always drawn whole, at uniform resolution, in O(capacity) memory.
"""

from __future__ import annotations

import math

import numpy as np


class DecimatingSeries:
    """Samples ``(t, values[channels])`` with bounded memory. Not thread-safe (UI thread only)."""

    def __init__(self, channels: int, capacity: int = 4096) -> None:
        if capacity < 4 or capacity % 2:
            raise ValueError("capacity must be an even number >= 4")
        self.channels = channels
        self.capacity = capacity
        self._t = np.empty(capacity, dtype=np.float64)
        self._v = np.empty((channels, capacity), dtype=np.float64)
        self._n = 0
        self.stride = 1
        self._acc_t = 0.0
        self._acc_v = np.zeros(channels, dtype=np.float64)
        self._acc_n = 0
        #: Samples appended since creation (before decimation).
        self.count = 0

    def __len__(self) -> int:
        return self._n

    def append(self, t_s: float, values: list[float] | tuple[float, ...]) -> None:
        self.count += 1
        if self.stride == 1:
            self._push(t_s, values)
            return
        if self._acc_n == 0:
            self._acc_t = t_s
        self._acc_v += np.asarray(values, dtype=np.float64)
        self._acc_n += 1
        if self._acc_n >= self.stride:
            self._push(self._acc_t, self._acc_v / self._acc_n)
            self._acc_v[:] = 0.0
            self._acc_n = 0

    def _push(self, t_s: float, values) -> None:
        if self._n == self.capacity:
            half = self.capacity // 2
            self._t[:half] = self._t[0::2]
            self._v[:, :half] = 0.5 * (self._v[:, 0::2] + self._v[:, 1::2])
            self._n = half
            self.stride *= 2
        self._t[self._n] = t_s
        self._v[:, self._n] = values
        self._n += 1

    def last_t(self) -> float | None:
        if self._acc_n:
            return self._acc_t
        return float(self._t[self._n - 1]) if self._n else None

    def first_t(self) -> float | None:
        return float(self._t[0]) if self._n else None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Views (t, values[channels, n]) of the stored points; do not modify."""
        return self._t[: self._n], self._v[:, : self._n]

    def view(self, max_points: int) -> tuple[np.ndarray, np.ndarray]:
        """At most ``max_points`` points, bucket-averaged (the last partial bucket included)."""
        t, v = self.arrays()
        return decimate(t, v, max_points)

    def nbytes(self) -> int:
        return self._t.nbytes + self._v.nbytes + self._acc_v.nbytes


def decimate(t: np.ndarray, v: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket means so that at most ``max_points`` points remain (t takes each bucket's start)."""
    n = t.shape[0]
    if max_points <= 0 or n <= max_points:
        return t, v
    k = math.ceil(n / max_points)
    full = (n // k) * k
    tt = t[:full:k]
    vv = v[:, :full].reshape(v.shape[0], -1, k).mean(axis=2)
    if full < n:
        tt = np.append(tt, t[full])
        vv = np.concatenate([vv, v[:, full:].mean(axis=1, keepdims=True)], axis=1)
    return tt, vv


def steps(t: np.ndarray, y: np.ndarray, t_end: float | None = None,
          quantum: float = 0.0) -> tuple[list[float], list[float]]:
    """Zero-order hold: each value is held until the next sample (power is plotted as steps).

    With ``quantum`` > 0 values are rounded to it (the chart's vertical resolution) and runs of
    equal values collapse into one step, so flat stretches cost the plot nothing."""
    n = t.shape[0]
    if n == 0:
        return [], []
    end = float(t[-1]) if t_end is None else max(t_end, float(t[-1]))
    if quantum > 0:
        y = np.round(y / quantum) * quantum
        keep = np.ones(n, dtype=bool)
        keep[1:] = y[1:] != y[:-1]
        t, y = t[keep], y[keep]
        n = t.shape[0]
    xs = np.empty(2 * n, dtype=np.float64)
    ys = np.empty(2 * n, dtype=np.float64)
    xs[0::2] = t
    xs[1:-1:2] = t[1:]
    xs[-1] = end
    ys[0::2] = y
    ys[1::2] = y
    return xs.tolist(), ys.tolist()
