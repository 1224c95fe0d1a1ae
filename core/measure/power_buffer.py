"""The power sampler's storage: power fields and counter readings per GPU at full resolution,
in growable arrays, bounded (old power samples merged in pairs, old counter readings thinned).
Not thread-safe: the sampler holds its lock around every call."""

from __future__ import annotations

import numpy as np

from ..power.base import EnergyReading, PowerFields
from .power_trace import PowerTrace

#: Readings closer than this are the same instant (a final read right after a periodic one).
SAME_INSTANT_S = 1e-6


class _Grid:
    """A growable (rows x n) float64 buffer, appended column by column."""

    def __init__(self, rows: int, cap: int = 1024) -> None:
        self.buf = np.empty((rows, cap))
        self.n = 0

    def append(self, col: list[float] | float) -> None:
        if self.n == self.buf.shape[1]:
            grown = np.empty((self.buf.shape[0], max(16, self.n * 3 // 2)))
            grown[:, : self.n] = self.buf[:, : self.n]
            self.buf = grown
        self.buf[:, self.n] = col
        self.n += 1

    def set_last(self, col: list[float] | float) -> None:
        self.buf[:, self.n - 1] = col

    def view(self) -> np.ndarray:
        return self.buf[:, : self.n]

    def reset_to(self, arr: np.ndarray) -> None:
        self.buf = np.array(arr, dtype=np.float64, ndmin=2, copy=True)
        self.n = self.buf.shape[1]


class PowerBuffer:
    """Power samples (time, instant / 1-s average / memory power per GPU) and counter readings
    (time, counter per GPU) on their own axes. Beyond ``max_samples`` power samples the oldest
    are merged in pairs (time-weighted, so the instant-power integral at kept samples is
    preserved); beyond ``max_counter_readings`` every other old counter reading is dropped."""

    def __init__(self, num_gpus: int, max_samples: int, max_counter_readings: int) -> None:
        g = int(num_gpus)
        self.max_samples = max(16, int(max_samples))
        self.max_counter_readings = max(16, int(max_counter_readings))
        self._t = _Grid(1)
        self._wt = _Grid(1)  # raw readings each stored power sample stands for
        self._inst = _Grid(g)
        self._avg: _Grid | None = _Grid(g)
        self._mem: _Grid | None = _Grid(g)
        self._ct = _Grid(1)
        self._cj = _Grid(g)
        #: The newest counter reading stored.
        self.last_energy: EnergyReading | None = None

    def __len__(self) -> int:
        return self._t.n

    def store_energy(self, e: EnergyReading) -> None:
        n = self._ct.n
        if n and e.t_s <= self._ct.buf[0, n - 1] + SAME_INSTANT_S:
            if e.t_s < self._ct.buf[0, n - 1] - SAME_INSTANT_S:
                return  # out of order: ignore
            self._cj.set_last(e.energy_j)
        else:
            self._ct.append(e.t_s)
            self._cj.append(e.energy_j)
            if self._ct.n > self.max_counter_readings:
                self._thin_counter()
        if self.last_energy is None or e.t_s >= self.last_energy.t_s:
            self.last_energy = e

    def store_power(self, p: PowerFields) -> None:
        n = self._t.n
        if n and p.t_s <= self._t.buf[0, n - 1] + SAME_INSTANT_S:
            if p.t_s < self._t.buf[0, n - 1] - SAME_INSTANT_S:
                return  # out of order: ignore
            # Same instant (up to float error): the newer reading replaces the last one.
            self._inst.set_last(p.instant_w)
            self._set_optional(p, replace=True)
            return
        self._t.append(p.t_s)
        self._wt.append(1.0)
        self._inst.append(p.instant_w)
        self._set_optional(p, replace=False)
        if self._t.n > self.max_samples:
            self._decimate()

    def _set_optional(self, p: PowerFields, replace: bool) -> None:
        for name, vals in (("_avg", p.average_w), ("_mem", p.memory_w)):
            grid = getattr(self, name)
            if grid is None:
                continue
            if vals is None:
                setattr(self, name, None)  # the source stopped reporting it: drop the field
            elif replace:
                grid.set_last(vals)
            else:
                grid.append(vals)

    def _thin_counter(self) -> None:
        """Drop every other counter reading of the oldest half (values stay exact readings)."""
        n = self._ct.n
        keep = np.ones(n, dtype=bool)
        keep[1 : n // 2 : 2] = False
        self._ct.reset_to(self._ct.view()[:, keep])
        self._cj.reset_to(self._cj.view()[:, keep])

    def _decimate(self) -> None:
        """Remove a quarter of the power samples by merging adjacent pairs of the finest
        resolution in the older three quarters, oldest first (the newest quarter stays raw)."""
        n = self._t.n
        old_end = n - n // 4  # samples [0, old_end) may merge; t[old_end] exists
        need = n // 4
        t = self._t.view()[0].copy()
        w = self._wt.view()[0].copy()
        cols = {"inst": self._inst.view().copy()}
        if self._avg is not None:
            cols["avg"] = self._avg.view().copy()
        if self._mem is not None:
            cols["mem"] = self._mem.view().copy()
        thr = float(w[:old_end].min()) if old_end else 0.0
        while need > 0 and old_end >= 2:
            idx = np.flatnonzero(w[:old_end] <= thr)
            a = np.empty(0, dtype=np.int64)
            if len(idx) >= 2:
                brk = np.flatnonzero(np.diff(idx) != 1) + 1
                run_start = np.repeat(idx[np.r_[0, brk]], np.diff(np.r_[0, brk, len(idx)]))
                nxt_ok = np.zeros(len(idx), dtype=bool)
                nxt_ok[:-1] = np.diff(idx) == 1
                a = idx[((idx - run_start) % 2 == 0) & nxt_ok]
            if not len(a):
                coarser = w[:old_end][w[:old_end] > thr]
                if not len(coarser):
                    break
                thr = float(coarser.min())  # no adjacent pair left: allow the next level
                continue
            a = a[:need]
            d0 = t[a + 1] - t[a]
            d1 = t[a + 2] - t[a + 1]
            dd = d0 + d1
            safe = np.where(dd > 0, dd, 1.0)
            for v in cols.values():
                v[:, a] = np.where(dd > 0, (v[:, a] * d0 + v[:, a + 1] * d1) / safe, v[:, a])
            w[a] += w[a + 1]
            keep = np.ones(len(t), dtype=bool)
            keep[a + 1] = False
            t, w = t[keep], w[keep]
            cols = {k: v[:, keep] for k, v in cols.items()}
            old_end -= len(a)
            need -= len(a)
        self._t.reset_to(t)
        self._wt.reset_to(w)
        self._inst.reset_to(cols["inst"])
        if self._avg is not None:
            self._avg.reset_to(cols["avg"])
        if self._mem is not None:
            self._mem.reset_to(cols["mem"])

    def view(self, gpu_indices: list[int], period_s: float) -> PowerTrace:
        """The stored data as arrays, without copying (valid until the next store)."""
        return PowerTrace(
            gpu_indices=list(gpu_indices), period_s=period_s,
            t_s=self._t.view()[0], instant_w=self._inst.view(),  # type: ignore[arg-type]
            average_w=None if self._avg is None else self._avg.view(),  # type: ignore[arg-type]
            memory_w=None if self._mem is None else self._mem.view(),  # type: ignore[arg-type]
            counter_t_s=self._ct.view()[0], counter_j=self._cj.view(),  # type: ignore[arg-type]
        )

