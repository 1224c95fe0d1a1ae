"""The power sampler: power fields at 10 Hz, the energy counter at >= 1 Hz and at marks, kept at
full resolution as a :class:`~.power_trace.PowerTrace`; window energy through the pure
:func:`~.energy.window_energy_j` (the same function offline analysis calls)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import msgspec

from ..clock import Clock
from ..power.base import EnergyReading, PowerFields, PowerReading, PowerSource
from ..records import PowerTimeline
from .energy import PRECISE_BRACKET_S, WindowEnergy, window_energy_j
from .power_buffer import SAME_INSTANT_S, PowerBuffer  # noqa: F401  (re-exported)
from .tick_tracker import TickTracker
from .power_trace import PowerTrace
from .timelines import power_timeline

#: After a mark the counter is re-read this often until every GPU's counter has ticked, so
#: the tick after the mark is located to within this (see :mod:`.energy`). Once the tick
#: period is learned (the first mark probes ``LEARN_TICKS`` ticks), probing starts just before
#: the predicted tick: ~3 reads per mark instead of ~10.
EDGE_PROBE_S = 0.005
#: ... for at most this long per tick sought (covers counters ticking up to every ~0.25 s).
EDGE_PROBE_MAX_S = 0.3


#: Located ticks the first mark collects per GPU to learn the tick period.
LEARN_TICKS = 8


class _Probe(msgspec.Struct):
    mark_t_s: float
    until_s: float
    next_s: float
    prev: EnergyReading
    prev_stored: bool
    #: GPU position -> located ticks still wanted.
    need: dict[int, int]


class PowerSampler:
    """Reads the power fields of ``source`` every ``period_s`` (a thread on the wall clock,
    ``clock.every`` on a virtual clock) and the cumulative energy counter every
    ``counter_period_s`` (counted from the last counter read of any kind), and at marks
    (:meth:`mark_now`: the counter now, then every ``edge_probe_s`` until each GPU's counter has
    ticked, so the tick after the mark is located; from just before the predicted tick once the
    tick period is learned). Keeps everything at full resolution (a :class:`PowerTrace`:
    :meth:`trace`; 200,000 power samples = 5.5 h at 10 Hz); beyond ``max_samples`` the oldest are
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
        self._buf = PowerBuffer(g, max_samples, max_counter_readings)
        self._ticks = [TickTracker() for _ in range(g)]
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
                self.num_counter_reads += 1
                self._buf.store_energy(e)
            self.num_readings += 1
            self._buf.store_power(p)
        return p, e

    def _notify(self, p: PowerFields) -> None:
        if self.listener is None:
            return
        last = self._buf.last_energy
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
                last = self._buf.last_energy
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
        probe = None
        with self._io:
            p, e = self._read(counter=True)
            assert e is not None
            if self._running:
                with self._lock:
                    # Probe densely from just after the mark, or from just before the predicted
                    # tick where the tick period is known well enough.
                    first = e.t_s + self.edge_probe_s
                    starts = []
                    for tr in self._ticks:
                        w = tr.window_after(first)
                        starts.append(first if w is None else max(first, w[0] - w[1] - self.edge_probe_s))
                    first = min(starts)
                    need = {g: 1 if tr.period_s is not None else LEARN_TICKS for g, tr in enumerate(self._ticks)}
                    until = first + self.edge_probe_max_s * max(need.values())
                    probe = self._probe = _Probe(mark_t_s=e.t_s, until_s=until, next_s=first, prev=e,
                                                 prev_stored=True, need=need)
        if probe is not None:
            every = getattr(self.clock, "every", None)
            if self.clock.virtual and every is not None:
                if self._probe_handle is not None:
                    self.clock.cancel(self._probe_handle)  # type: ignore[attr-defined]
                self._probe_handle = every(self.edge_probe_s, self._probe_tick, first_s=probe.next_s)
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
                if self.clock.now_s() < probe.next_s - SAME_INSTANT_S:
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
                    moved = [g for g in probe.need if e.energy_j[g] != probe.prev.energy_j[g]]
                    if moved:
                        if not probe.prev_stored:
                            self._buf.store_energy(probe.prev)
                        self._buf.store_energy(e)
                    tight = e.t_s - probe.prev.t_s <= PRECISE_BRACKET_S
                    for g in moved:
                        if tight:
                            self._ticks[g].located(0.5 * (e.t_s + probe.prev.t_s), 0.5 * (e.t_s - probe.prev.t_s))
                            probe.need[g] -= 1
                            if probe.need[g] <= 0:
                                del probe.need[g]
                        else:  # a late probe, or a tick before the predicted window: probe on densely
                            w = self._ticks[g].window_after(probe.prev.t_s)
                            if w is None or not probe.prev.t_s - w[1] < w[0] <= e.t_s + w[1]:
                                self._ticks[g].missed()
                            probe.until_s = max(probe.until_s, e.t_s + self.edge_probe_max_s)
                    probe.prev, probe.prev_stored = e, bool(moved)
                    probe.next_s = e.t_s + self.edge_probe_s
                    if not probe.need or e.t_s >= probe.until_s:
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

    def __len__(self) -> int:
        return len(self._buf)

    # --- the trace --------------------------------------------------------------------------
    def _view(self) -> PowerTrace:
        """The stored data as arrays, without copying (caller holds ``_lock``)."""
        return self._buf.view(self.indices, self.period_s)

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
            last = self._buf.last_energy.t_s if self._buf.last_energy is not None else -math.inf
        if t1_s > last + self.counter_period_s or (t1_s > last and not self._running):
            try:
                self.read_now()
            except Exception as e:  # noqa: BLE001
                self._note_error(e)
        if self.clock.virtual or threading.current_thread() is self._thread:
            return
        with self._lock:
            probe = self._probe
            if probe is not None and probe.mark_t_s <= t1_s:
                self._done.wait_for(lambda: self._probe is not probe,
                                    timeout=max(0.0, probe.until_s - self.clock.now_s()) + 0.5)

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
        """The configuration's power timeline, decimated to <= max_points
        (:func:`.timelines.power_timeline` of everything read so far)."""
        with self._lock:
            return power_timeline(self._view(), max_points, readings=self.num_readings)
