"""The power sampler: power fields at 10 Hz, the energy counter at >= 1 Hz and at marks, kept at
full resolution as a :class:`~.power_trace.PowerTrace`; window energy through the pure
:func:`~.energy.window_energy_j` (the same function offline analysis calls)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import msgspec
import numpy as np

from ..clock import Clock
from ..power.base import EnergyReading, PowerFields, PowerReading, PowerSource
from ..records import PowerTimeline
from .energy import WindowEnergy, energy_at, window_energy_j
from .power_trace import PowerTrace

#: Readings closer than this are the same instant (a final read right after a periodic one).
SAME_INSTANT_S = 1e-6
#: After a mark the counter is re-read this often until every GPU's counter has ticked, so
#: the tick after the mark is located to within this (see :mod:`.energy`).
EDGE_PROBE_S = 0.005
#: ... for at most this long after the mark (covers counters ticking up to every ~0.25 s).
EDGE_PROBE_MAX_S = 0.3


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


class _Probe(msgspec.Struct):
    mark_t_s: float
    until_s: float
    next_s: float
    prev: EnergyReading
    prev_stored: bool
    pending: set[int]


class PowerSampler:
    """Reads the power fields of ``source`` every ``period_s`` (a thread on the wall clock,
    ``clock.every`` on a virtual clock) and the cumulative energy counter every
    ``counter_period_s`` (counted from the last counter read of any kind), and at marks
    (:meth:`mark_now`: the counter now, then every ``edge_probe_s`` until each GPU's counter has
    ticked, so the tick after the mark is located). Keeps everything at full resolution (a
    :class:`PowerTrace`: :meth:`trace`); beyond ``max_samples`` power samples, the oldest are
    merged in pairs (time-weighted, so the instant-power integral at kept samples is preserved),
    beyond ``max_counter_readings`` every other old counter reading is dropped. ``listener`` is
    called with each power sample (with the latest counter reading, ``energy_t_s``).
    """

    def __init__(self, source: PowerSource, indices: list[int], clock: Clock, period_s: float = 0.1,
                 listener: Callable[[PowerReading], None] | None = None, max_samples: int = 200_000,
                 counter_period_s: float = 1.0, edge_probe_s: float = EDGE_PROBE_S,
                 edge_probe_max_s: float = EDGE_PROBE_MAX_S, max_counter_readings: int = 200_000) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be positive")
        if not 0 < counter_period_s <= 1.0:
            raise ValueError("counter_period_s must be in (0, 1] (the counter is read at >= 1 Hz)")
        if not indices:
            raise ValueError("indices must name at least one GPU")
        self.source = source
        self.indices = list(indices)
        self.clock = clock
        self.period_s = float(period_s)
        self.counter_period_s = float(counter_period_s)
        self.edge_probe_s = float(edge_probe_s)
        self.edge_probe_max_s = float(edge_probe_max_s)
        self.listener = listener
        self.max_samples = max(16, int(max_samples))
        self.max_counter_readings = max(16, int(max_counter_readings))
        self._split = callable(getattr(source, "read_power", None)) and callable(getattr(source, "read_energy", None))
        g = len(self.indices)
        self._lock = threading.RLock()
        self._done = threading.Condition(self._lock)
        self._io = threading.Lock()  # one source read (and its storing) at a time, in time order
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: int | None = None
        self._probe_handle: int | None = None
        self._probe: _Probe | None = None
        self._running = False
        self._t = _Grid(1)
        self._wt = _Grid(1)  # raw readings each stored power sample stands for
        self._inst = _Grid(g)
        self._avg: _Grid | None = _Grid(g)
        self._mem: _Grid | None = _Grid(g)
        self._ct = _Grid(1)
        self._cj = _Grid(g)
        self._last_energy: EnergyReading | None = None
        #: Power-field readings taken (before decimation).
        self.num_readings = 0
        #: Counter reads taken (periodic, marks and probes).
        self.num_counter_reads = 0
        #: Readings that raised; the sampler keeps going.
        self.errors = 0
        self.last_error: str | None = None
        self.start_s: float | None = None

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start sampling with a reading of counter and power (not a mark: see :meth:`mark_now`)."""
        if self._running:
            return
        self._stop.clear()
        self.start_s = self.read_now().t_s
        self._running = True
        every = getattr(self.clock, "every", None)
        if self.clock.virtual and every is not None:
            self._handle = every(self.period_s, self._tick, first_s=self.start_s + self.period_s)
        else:
            self._thread = threading.Thread(target=self._loop, args=(self.start_s,), name="power-sampler",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop sampling (promptly) and take a final reading of counter and power."""
        if not self._running:
            return
        self._running = False
        self._stop.set()
        self._wake.set()
        for h in (self._handle, self._probe_handle):
            if h is not None:
                self.clock.cancel(h)  # type: ignore[attr-defined]
        self._handle = self._probe_handle = None
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        with self._lock:
            self._probe = None
            self._done.notify_all()
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
            self._wake.clear()
            due = t0 + k * self.period_s
            with self._lock:
                probe_due = self._probe.next_s if self._probe is not None else math.inf
            now = self.clock.now_s()
            if min(due, probe_due) > now:
                self.clock.sleep(min(due, probe_due) - now, cancel=self._wake)
                continue
            if probe_due <= now:
                self._probe_tick(now)
            if due <= now:
                if now - due > self.period_s:  # fell behind: skip missed slots
                    k = int((now - t0) / self.period_s)
                k += 1
                self._tick(due)

    def _note_error(self, e: Exception) -> None:
        self.errors += 1
        self.last_error = f"{type(e).__name__}: {e}"

    # --- reading ----------------------------------------------------------------------------
    def _read(self, counter: bool) -> tuple[PowerFields, EnergyReading | None]:
        """Read (counter first, so its time is the event's) and store; caller holds ``_io``."""
        if self._split:
            e = self.source.read_energy(self.indices) if counter else None  # type: ignore[attr-defined]
            p = self.source.read_power(self.indices)  # type: ignore[attr-defined]
        else:
            r = self.source.read(self.indices)
            e = EnergyReading(t_s=r.t_s, energy_j=list(r.energy_j))
            p = PowerFields(t_s=r.t_s, instant_w=r.instant_w, average_w=r.average_w, memory_w=r.memory_w)
        with self._lock:
            if e is not None:
                self._store_energy(e)
            self._store_power(p)
        return p, e

    def _notify(self, p: PowerFields) -> None:
        if self.listener is None:
            return
        last = self._last_energy
        r = PowerReading(t_s=p.t_s, energy_j=[] if last is None else list(last.energy_j), instant_w=p.instant_w,
                         average_w=p.average_w, memory_w=p.memory_w,
                         energy_t_s=None if last is None or last.t_s == p.t_s else last.t_s)
        try:
            self.listener(r)
        except Exception as ex:  # noqa: BLE001 - a UI listener must not stop sampling
            self._note_error(ex)

    def _tick(self, _t: float) -> None:
        try:
            with self._io:
                last = self._last_energy
                stale = last is None or self.clock.now_s() - last.t_s >= self.counter_period_s - self.period_s / 2
                p, _ = self._read(counter=stale)
            self._notify(p)
        except Exception as e:  # noqa: BLE001
            self._note_error(e)

    def read_now(self) -> PowerReading:
        """Read counter and power immediately (stored like any reading)."""
        with self._io:
            p, e = self._read(counter=True)
        self._notify(p)
        assert e is not None
        return PowerReading(t_s=p.t_s, energy_j=e.energy_j, instant_w=p.instant_w, average_w=p.average_w,
                            memory_w=p.memory_w, energy_t_s=None if e.t_s == p.t_s else e.t_s)

    def mark_now(self) -> float:
        """Read the counter (then the power fields) now, and locate the counter's next tick by
        re-reading it every ``edge_probe_s`` while sampling. Returns the counter read's time on
        the run clock (an event's exact time: call it right after a CUDA synchronise)."""
        with self._io:
            p, e = self._read(counter=True)
            assert e is not None
            if self._running:
                with self._lock:
                    self._probe = _Probe(mark_t_s=e.t_s, until_s=e.t_s + self.edge_probe_max_s,
                                         next_s=e.t_s + self.edge_probe_s, prev=e, prev_stored=True,
                                         pending=set(range(len(self.indices))))
        if self._running:
            every = getattr(self.clock, "every", None)
            if self.clock.virtual and every is not None:
                if self._probe_handle is None:
                    self._probe_handle = every(self.edge_probe_s, self._probe_tick, first_s=e.t_s + self.edge_probe_s)
            else:
                self._wake.set()
        self._notify(p)
        return e.t_s

    def _probe_tick(self, _t: float) -> None:
        try:
            with self._io:
                with self._lock:
                    probe = self._probe
                if probe is None:
                    self._end_probe(None)
                    return
                if self._split:
                    e = self.source.read_energy(self.indices)  # type: ignore[attr-defined]
                else:
                    r = self.source.read(self.indices)
                    e = EnergyReading(t_s=r.t_s, energy_j=list(r.energy_j))
                with self._lock:
                    if self._probe is not probe:
                        return
                    self.num_counter_reads += 1
                    moved = {g for g in probe.pending if e.energy_j[g] != probe.prev.energy_j[g]}
                    if moved:
                        if not probe.prev_stored:
                            self._store_energy(probe.prev, count=False)
                        self._store_energy(e, count=False)
                    probe.prev, probe.prev_stored = e, bool(moved)
                    probe.pending -= moved
                    probe.next_s = e.t_s + self.edge_probe_s
                    if not probe.pending or e.t_s >= probe.until_s:
                        self._end_probe(probe)
        except Exception as ex:  # noqa: BLE001
            self._note_error(ex)
            self._end_probe(None)

    def _end_probe(self, probe: _Probe | None) -> None:
        with self._lock:
            if probe is None or self._probe is probe:
                self._probe = None
                self._done.notify_all()
            h, self._probe_handle = self._probe_handle, None
        if h is not None:
            self.clock.cancel(h)  # type: ignore[attr-defined]

    # --- storing (caller holds _lock) -------------------------------------------------------
    def _store_energy(self, e: EnergyReading, count: bool = True) -> None:
        if count:
            self.num_counter_reads += 1
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
        if self._last_energy is None or e.t_s >= self._last_energy.t_s:
            self._last_energy = e

    def _store_power(self, p: PowerFields) -> None:
        self.num_readings += 1
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

    def __len__(self) -> int:
        return self._t.n

    # --- the trace --------------------------------------------------------------------------
    def _view(self) -> PowerTrace:
        """The stored data as arrays, without copying (caller holds ``_lock``)."""
        return PowerTrace(
            gpu_indices=list(self.indices), period_s=self.period_s,
            t_s=self._t.view()[0], instant_w=self._inst.view(),  # type: ignore[arg-type]
            average_w=None if self._avg is None else self._avg.view(),  # type: ignore[arg-type]
            memory_w=None if self._mem is None else self._mem.view(),  # type: ignore[arg-type]
            counter_t_s=self._ct.view()[0], counter_j=self._cj.view(),  # type: ignore[arg-type]
        )

    def trace(self) -> PowerTrace:
        """A consistent snapshot of everything read so far (plain lists)."""
        with self._lock:
            v = self._view()
            return PowerTrace(
                gpu_indices=list(self.indices), period_s=self.period_s,
                t_s=v.t_s.tolist(), instant_w=v.instant_w.tolist(),  # type: ignore[attr-defined]
                average_w=None if v.average_w is None else v.average_w.tolist(),  # type: ignore[attr-defined]
                memory_w=None if v.memory_w is None else v.memory_w.tolist(),  # type: ignore[attr-defined]
                counter_t_s=v.counter_t_s.tolist(), counter_j=v.counter_j.tolist(),  # type: ignore[attr-defined]
            )

    # --- energy -----------------------------------------------------------------------------
    def _settle(self, t1_s: float) -> None:
        """Make the data cover ``t1``: read now if the last counter read is stale (sampling
        stopped) and, on a wall clock, wait for a mark's tick search that started before ``t1``."""
        with self._lock:
            last = self._last_energy.t_s if self._last_energy is not None else -math.inf
        if t1_s > last + self.counter_period_s or (t1_s > last and not self._running):
            try:
                self.read_now()
            except Exception as e:  # noqa: BLE001
                self._note_error(e)
        if self.clock.virtual or threading.current_thread() is self._thread:
            return
        with self._lock:
            self._done.wait_for(lambda: self._probe is None or self._probe.mark_t_s > t1_s,
                                timeout=self.edge_probe_max_s + 0.5)

    def window(self, t0_s: float, t1_s: float) -> WindowEnergy:
        """:func:`~.energy.window_energy_j` over everything read so far."""
        self._settle(t1_s)
        with self._lock:
            return window_energy_j(self._view(), t0_s, t1_s)

    def energy_between(self, t0_s: float, t1_s: float) -> float:
        """Energy over [t0, t1] summed over GPUs, J (see :mod:`.energy`; NaN on a reset)."""
        if not len(self):
            return math.nan
        return self.window(t0_s, t1_s).energy_j

    def integral_between(self, t0_s: float, t1_s: float) -> float:
        """Integral of instant power (zero-order hold) over [t0, t1], summed over GPUs, J.
        Nothing is counted before the first reading; the last reading holds after it."""
        if not len(self):
            return math.nan
        return self.window(t0_s, t1_s).integral_j

    # --- timeline ---------------------------------------------------------------------------
    def timeline(self, max_points: int = 6000) -> PowerTimeline:
        """The configuration's power timeline for the record, decimated to <= max_points.

        Times are as read on the run clock (whose zero is the configuration start). A point
        standing for several samples carries their time-weighted mean power; ``energy_j`` is the
        estimated cumulative energy (:func:`~.energy.energy_at`, summed over GPUs) at the point's
        time, relative to the first sample."""
        with self._lock:
            n = len(self)
            if n == 0:
                return PowerTimeline(period_s=self.period_s)
            v = self._view()
            t = np.array(v.t_s)
            per = np.array(v.instant_w)
            avg = None if v.average_w is None else np.array(v.average_w).sum(axis=0)
            mem = None if v.memory_w is None else np.array(v.memory_w).sum(axis=0)
            raw = self.num_readings
            step = max(1, math.ceil(n / max(1, max_points)))
            starts = np.arange(0, n, step)
            e_at = energy_at(v, t[starts]).sum(axis=0)
        tot = per.sum(axis=0)
        if step > 1:
            nxt = np.empty_like(t)
            nxt[:-1] = t[1:]
            nxt[-1] = t[-1] + (float(np.median(np.diff(t))) if n > 1 else self.period_s)
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
            t_s=t.tolist(),
            total_w=tot.tolist(),
            per_gpu_w={str(idx): row.tolist() for idx, row in zip(self.indices, per)},
            average_w=None if avg is None else avg.tolist(),
            memory_w=None if mem is None else mem.tolist(),
            energy_j=energy,
            period_s=self.period_s,
            decimation=max(1, round(raw / len(t))),
        )
