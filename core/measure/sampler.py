"""The 10 Hz power sampler and the energy of arbitrary windows."""

from __future__ import annotations

import bisect
import math
import threading
from array import array
from collections.abc import Callable

import numpy as np

from ..clock import Clock
from ..power.base import PowerReading, PowerSource
from ..records import PowerTimeline


#: Readings closer than this are the same instant (a final read right after a periodic one).
SAME_INSTANT_S = 1e-6


class PowerSampler:
    """Reads ``source`` every ``period_s`` (a thread on the wall clock, ``clock.every`` on a
    virtual clock), keeps every reading of the configuration (bounded: older samples are
    decimated beyond ``max_samples``), and calls ``listener`` with each reading.

    Storage is columnar (``array('d')``): time, counter energy summed over GPUs, instant power
    per GPU, 1-s average and memory power summed over GPUs, and the running zero-order-hold
    integral of instant power. Decimation merges pairs of the oldest half of the samples; the
    counter and the running integral stay exact at every kept sample, and a merged sample's
    power is the time-weighted mean of the pair (so integrals are preserved). Times are kept
    as read, on the run clock.
    """

    def __init__(self, source: PowerSource, indices: list[int], clock: Clock, period_s: float = 0.1,
                 listener: Callable[[PowerReading], None] | None = None, max_samples: int = 200_000) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be positive")
        if not indices:
            raise ValueError("indices must name at least one GPU")
        self.source = source
        self.indices = list(indices)
        self.clock = clock
        self.period_s = float(period_s)
        self.listener = listener
        self.max_samples = max(16, int(max_samples))
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: int | None = None
        self._running = False
        self._t = array("d")
        self._e = array("d")  # counter summed over GPUs
        self._p = [array("d") for _ in self.indices]  # instant per GPU
        self._ptot = array("d")  # instant summed over GPUs
        self._cum = array("d")  # ZOH integral of _ptot from the first sample to each sample
        self._w = array("d")  # raw readings each stored sample stands for
        self._avg: array | None = array("d")
        self._mem: array | None = array("d")
        #: Readings taken (before decimation).
        self.num_readings = 0
        #: Readings that raised; the sampler keeps going.
        self.errors = 0
        self.last_error: str | None = None
        self.start_s: float | None = None

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._stop.clear()
        first = self.read_now()
        self.start_s = first.t_s
        every = getattr(self.clock, "every", None)
        if self.clock.virtual and every is not None:
            self._handle = every(self.period_s, self._tick, first_s=first.t_s + self.period_s)
        else:
            self._thread = threading.Thread(target=self._loop, args=(first.t_s,), name="power-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop sampling (promptly) and take a final reading."""
        if not self._running:
            return
        self._running = False
        self._stop.set()
        if self._handle is not None:
            self.clock.cancel(self._handle)  # type: ignore[attr-defined]
            self._handle = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        try:
            self.read_now()
        except Exception as e:  # noqa: BLE001 - a source that died must not hide the run
            self._note_error(e)

    @property
    def running(self) -> bool:
        return self._running

    def _loop(self, t0: float) -> None:
        k = 1
        while not self._stop.is_set():
            due = t0 + k * self.period_s
            now = self.clock.now_s()
            if due > now:
                if not self.clock.sleep(due - now, cancel=self._stop):
                    return
            else:  # fell behind: skip missed slots
                k = int((now - t0) / self.period_s)
            k += 1
            self._tick(due)

    def _tick(self, _t: float) -> None:
        try:
            self.read_now()
        except Exception as e:  # noqa: BLE001
            self._note_error(e)

    def _note_error(self, e: Exception) -> None:
        self.errors += 1
        self.last_error = f"{type(e).__name__}: {e}"

    # --- readings ---------------------------------------------------------------------------
    def read_now(self) -> PowerReading:
        """Read immediately (also appended to the timeline)."""
        r = self.source.read(self.indices)
        self._append(r)
        if self.listener is not None:
            try:
                self.listener(r)
            except Exception as e:  # noqa: BLE001 - a UI listener must not stop sampling
                self._note_error(e)
        return r

    def _append(self, r: PowerReading) -> None:
        e = math.fsum(r.energy_j)
        ptot = math.fsum(r.instant_w)
        with self._lock:
            self.num_readings += 1
            n = len(self._t)
            if n and r.t_s <= self._t[-1] + SAME_INSTANT_S:
                if r.t_s < self._t[-1] - SAME_INSTANT_S:
                    return  # out of order: ignore
                # Same instant (up to float error): the newer reading replaces the last one.
                self._e[-1] = e
                for col, v in zip(self._p, r.instant_w):
                    col[-1] = v
                self._ptot[-1] = ptot
                self._set_optional(r, replace=True)
                return
            self._cum.append(0.0 if n == 0 else self._cum[-1] + self._ptot[-1] * (r.t_s - self._t[-1]))
            self._t.append(r.t_s)
            self._w.append(1.0)
            self._e.append(e)
            for col, v in zip(self._p, r.instant_w):
                col.append(v)
            self._ptot.append(ptot)
            self._set_optional(r, replace=False)
            if len(self._t) > self.max_samples:
                self._decimate()

    def _set_optional(self, r: PowerReading, replace: bool) -> None:
        for name, vals in (("_avg", r.average_w), ("_mem", r.memory_w)):
            col = getattr(self, name)
            if col is None:
                continue
            if vals is None:
                setattr(self, name, None)  # the source stopped reporting it: drop the column
                continue
            v = math.fsum(vals)
            if replace:
                col[-1] = v
            else:
                col.append(v)

    def _decimate(self) -> None:
        """Remove a quarter of the samples by merging adjacent pairs of the finest resolution
        in the older three quarters, oldest first (the newest quarter stays raw). Repeated
        rounds coarsen old data evenly rather than exponentially by age."""
        n = len(self._t)
        old_end = n - n // 4  # samples [0, old_end) may merge; t[old_end] exists
        need = n // 4
        t = np.frombuffer(self._t, dtype=np.float64).copy()
        w = np.frombuffer(self._w, dtype=np.float64).copy()
        cols = {"ptot": np.frombuffer(self._ptot, dtype=np.float64).copy()}
        for j, c in enumerate(self._p):
            cols[f"p{j}"] = np.frombuffer(c, dtype=np.float64).copy()
        if self._avg is not None:
            cols["avg"] = np.frombuffer(self._avg, dtype=np.float64).copy()
        if self._mem is not None:
            cols["mem"] = np.frombuffer(self._mem, dtype=np.float64).copy()
        e = np.frombuffer(self._e, dtype=np.float64).copy()
        cum = np.frombuffer(self._cum, dtype=np.float64).copy()
        thr = float(w[:old_end].min()) if old_end else 0.0
        while need > 0 and old_end >= 2:
            # Pair consecutive samples of weight <= thr greedily from the start of each run.
            idx = np.flatnonzero(w[:old_end] <= thr)
            a = np.empty(0, dtype=np.int64)
            if len(idx) >= 2:
                brk = np.flatnonzero(np.diff(idx) != 1) + 1
                run_start = np.repeat(idx[np.r_[0, brk]], np.diff(np.r_[0, brk, len(idx)]))
                pos = idx - run_start
                nxt_ok = np.zeros(len(idx), dtype=bool)
                nxt_ok[:-1] = np.diff(idx) == 1
                a = idx[(pos % 2 == 0) & nxt_ok]
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
            for k, v in cols.items():
                v[a] = np.where(dd > 0, (v[a] * d0 + v[a + 1] * d1) / safe, v[a])
            w[a] += w[a + 1]
            drop = np.ones(len(t), dtype=bool)
            drop[a + 1] = False
            t, w, e, cum = t[drop], w[drop], e[drop], cum[drop]
            cols = {k: v[drop] for k, v in cols.items()}
            old_end -= len(a)
            need -= len(a)

        def arr(v: np.ndarray) -> array:
            return array("d", v.tobytes())

        self._t, self._w, self._e, self._cum = arr(t), arr(w), arr(e), arr(cum)
        self._ptot = arr(cols["ptot"])
        self._p = [arr(cols[f"p{j}"]) for j in range(len(self._p))]
        if self._avg is not None:
            self._avg = arr(cols["avg"])
        if self._mem is not None:
            self._mem = arr(cols["mem"])

    def __len__(self) -> int:
        return len(self._t)

    # --- energy -----------------------------------------------------------------------------
    def _refresh_for(self, t1_s: float) -> None:
        """If ``t1`` is after the last reading, read now (when the source can be read)."""
        with self._lock:
            last = self._t[-1] if len(self._t) else -math.inf
        if t1_s > last:
            try:
                self.read_now()
            except Exception as e:  # noqa: BLE001
                self._note_error(e)

    def _interp(self, col: array, t_s: float) -> float:
        t = self._t
        n = len(t)
        if t_s <= t[0]:
            return col[0]
        if t_s >= t[n - 1]:
            return col[n - 1]
        i = bisect.bisect_right(t, t_s)  # t[i-1] <= t_s < t[i]
        t0, t1 = t[i - 1], t[i]
        return col[i - 1] + (col[i] - col[i - 1]) * (t_s - t0) / (t1 - t0)

    def energy_between(self, t0_s: float, t1_s: float) -> float:
        """Energy over [t0, t1] from the cumulative counters, summed over GPUs, linearly
        interpolated between the nearest readings (clamped to the first/last reading), J."""
        self._refresh_for(t1_s)
        with self._lock:
            if not len(self._t):
                return math.nan
            return self._interp(self._e, t1_s) - self._interp(self._e, t0_s)

    def _zoh_integral_at(self, t_s: float) -> float:
        t = self._t
        if t_s <= t[0]:
            return 0.0
        i = bisect.bisect_right(t, t_s) - 1
        return self._cum[i] + self._ptot[i] * (t_s - t[i])

    def integral_between(self, t0_s: float, t1_s: float) -> float:
        """Integral of instant power (zero-order hold) over [t0, t1], summed over GPUs, J.
        Nothing is counted before the first reading; the last reading holds after it."""
        self._refresh_for(t1_s)
        with self._lock:
            if not len(self._t):
                return math.nan
            return self._zoh_integral_at(t1_s) - self._zoh_integral_at(t0_s)

    # --- timeline ---------------------------------------------------------------------------
    def timeline(self, max_points: int = 6000) -> PowerTimeline:
        """The configuration's power timeline for the record, decimated to <= max_points.

        Times are as read on the run clock (whose zero is the configuration start). A point
        standing for several samples carries their time-weighted mean power and the counter
        at its first sample; ``energy_j`` is relative to the first sample."""
        with self._lock:
            n = len(self._t)
            if n == 0:
                return PowerTimeline(period_s=self.period_s)
            t = np.frombuffer(self._t, dtype=np.float64).copy()
            e = np.frombuffer(self._e, dtype=np.float64).copy()
            per = [np.frombuffer(c, dtype=np.float64).copy() for c in self._p]
            tot = np.frombuffer(self._ptot, dtype=np.float64).copy()
            avg = None if self._avg is None else np.frombuffer(self._avg, dtype=np.float64).copy()
            mem = None if self._mem is None else np.frombuffer(self._mem, dtype=np.float64).copy()
            raw = self.num_readings
        step = max(1, math.ceil(n / max(1, max_points)))
        if step > 1:
            starts = np.arange(0, n, step)
            # Hold durations (the last sample is given the median period).
            nxt = np.empty_like(t)
            nxt[:-1] = t[1:]
            nxt[-1] = t[-1] + (float(np.median(np.diff(t))) if n > 1 else self.period_s)
            dur = nxt - t

            def reduce(v: np.ndarray) -> np.ndarray:
                num = np.add.reduceat(v * dur, starts)
                den = np.add.reduceat(dur, starts)
                first = v[starts]
                with np.errstate(invalid="ignore", divide="ignore"):
                    return np.where(den > 0, num / np.where(den > 0, den, 1.0), first)

            per = [reduce(v) for v in per]
            tot = reduce(tot)
            avg = None if avg is None else reduce(avg)
            mem = None if mem is None else reduce(mem)
            t = t[starts]
            e = e[starts]
        return PowerTimeline(
            t_s=t.tolist(),
            total_w=tot.tolist(),
            per_gpu_w={str(idx): v.tolist() for idx, v in zip(self.indices, per)},
            average_w=None if avg is None else avg.tolist(),
            memory_w=None if mem is None else mem.tolist(),
            energy_j=(e - e[0]).tolist(),
            period_s=self.period_s,
            decimation=max(1, round(raw / len(t))),
        )

    # --- trace (provisional: summed columns booked on the first GPU) ------------------------
    def trace(self):  # noqa: ANN201
        from .power_trace import PowerTrace

        with self._lock:
            t = list(self._t)
            zeros = [0.0] * len(t)
            rest = [list(zeros) for _ in self.indices[1:]]
            return PowerTrace(
                gpu_indices=list(self.indices), period_s=self.period_s, t_s=t,
                instant_w=[list(c) for c in self._p],
                average_w=None if self._avg is None else [list(self._avg)] + rest,
                memory_w=None if self._mem is None else [list(self._mem)] + rest,
                counter_t_s=list(t), counter_j=[list(self._e)] + rest,
            )
