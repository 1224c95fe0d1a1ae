"""A simulated GPU behind the :class:`~.base.PowerSource` interface: a test double and a demo.

Model (one :class:`SimulatedGPU` per index, on a :class:`~..clock.Clock`):

- True power is piecewise constant. ``set_load(u)`` sets, from the clock's current time,
  ``demand = idle_w + (0.95 * tdp_w - idle_w) * u ** 0.8`` and true power
  ``P = min(demand, power limit)``. Changing the limit re-clamps from that moment.
- ``speed_factor(u) = (limit / demand) ** 0.6`` when the limit clamps demand, else 1.0.
- The cumulative energy counter advances only in ticks of ``tick_s`` (default 0.1 s) at a seeded
  random phase; its value is a seeded offset plus the exact integral of true power up to the
  last tick, floored to 1 mJ (NVML reports mJ).
- Instant power = true power + gaussian jitter (``jitter`` x true power, default 2 %), drawn per
  20 ms slot from a hash of (seed, index, slot): the same time always reads the same value.
- ``average_w`` = 1-s boxcar of true power (exact).
- ``memory_w`` (HBM domain) = ``0.55 * idle_w + 0.075 * (average_w - idle_w)``, from the H200
  figures of the design brief (≈ 43 W idle, ≈ 90 W busy).
- :meth:`SimulatedGPU.true_energy_j` is the analytic ground truth for tests.

Before its creation a GPU is assumed to have drawn idle power. Everything is deterministic under
the seed.
"""

from __future__ import annotations

import bisect
import math
import random
import threading
import time

from ..clock import Clock
from ..records import GpuInfo
from .base import EnergyReading, PowerFields, PowerReading

#: Utilisation -> fraction of the dynamic power range (concave: memory-bound work at low
#: utilisation already draws a good share).
UTIL_EXPONENT = 0.8
#: Full load draws this fraction of TDP when unconstrained.
FULL_LOAD_TDP_FRACTION = 0.95
#: Throughput sensitivity to the power limit: speed = (limit / demand) ** SPEED_EXPONENT.
SPEED_EXPONENT = 0.6
#: HBM power model (see module docstring).
MEMORY_IDLE_FRACTION = 0.55
MEMORY_DYNAMIC_FRACTION = 0.075
#: Instant-power jitter slot, s.
JITTER_SLOT_S = 0.02


def _burn_cpu(seconds: float) -> None:
    """Busy-wait ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


class SimulatedGPU:
    """One simulated GPU. Thread-safe."""

    def __init__(
        self,
        clock: Clock,
        index: int = 0,
        *,
        name: str = "Simulated H100 SXM",
        tdp_w: float = 700.0,
        idle_w: float = 75.0,
        min_limit_w: float = 200.0,
        seed: int = 0,
        tick_s: float = 0.1,
        jitter: float = 0.02,
        memory_total_mib: float = 81_559.0,
    ) -> None:
        if not 0 < idle_w < tdp_w:
            raise ValueError("need 0 < idle_w < tdp_w")
        self.index = index
        self.name = name
        self.tdp_w = float(tdp_w)
        self.idle_w = float(idle_w)
        self.min_limit_w = float(min(min_limit_w, tdp_w))
        self.tick_s = float(tick_s)
        self.jitter = float(jitter)
        self.memory_total_mib = memory_total_mib
        self._clock = clock
        self._offset_s = 0.0  # internal time = clock.now_s() + offset
        self._lock = threading.RLock()
        rng = random.Random(f"mle-tui-sim-{seed}-{index}")
        self._seed_key = (int(seed) * 1_000_003 + index) & 0xFFFFFFFF
        self._tick_phase_s = rng.uniform(0.0, self.tick_s)
        self._counter_offset_j = rng.uniform(1e5, 1e6)
        self._limit_w = self.tdp_w
        self._util = 0.0
        t = self._now()
        # Breakpoints of the piecewise-constant true power (internal time), power after each,
        # and the exact energy integral at each breakpoint.
        self._seg_t: list[float] = [t]
        self._seg_p: list[float] = [self.idle_w]
        self._seg_e: list[float] = [0.0]

    # --- time -------------------------------------------------------------------------------
    def _now(self) -> float:
        return self._clock.now_s() + self._offset_s

    def use_clock(self, clock: Clock) -> None:
        """Switch to another clock (e.g. a fresh per-configuration clock whose zero is the
        configuration start); the GPU's history continues without a jump."""
        with self._lock:
            internal = self._now()
            self._clock = clock
            self._offset_s = internal - clock.now_s()

    # --- load and limit ---------------------------------------------------------------------
    def demand_w(self, utilisation: float) -> float:
        """Unconstrained power at ``utilisation`` in [0, 1], W."""
        u = min(1.0, max(0.0, float(utilisation)))
        return self.idle_w + (self.tdp_w * FULL_LOAD_TDP_FRACTION - self.idle_w) * u ** UTIL_EXPONENT

    def set_load(self, utilisation: float) -> None:
        """Set the utilisation in [0, 1] from the clock's current time on."""
        with self._lock:
            self._util = min(1.0, max(0.0, float(utilisation)))
            self._set_power(min(self.demand_w(self._util), self._limit_w))

    def speed_factor(self, utilisation: float) -> float:
        """Work rate relative to unthrottled (1.0) under the current power limit."""
        demand = self.demand_w(utilisation)
        with self._lock:
            limit = self._limit_w
        return 1.0 if demand <= limit else (limit / demand) ** SPEED_EXPONENT

    def get_limit_w(self) -> float:
        with self._lock:
            return self._limit_w

    def set_limit_w(self, limit_w: float) -> None:
        if not self.min_limit_w <= limit_w <= self.tdp_w:
            raise ValueError(f"power limit {limit_w} W outside [{self.min_limit_w}, {self.tdp_w}] W")
        with self._lock:
            self._limit_w = float(limit_w)
            self._set_power(min(self.demand_w(self._util), self._limit_w))

    def limit_range_w(self) -> tuple[float, float]:
        return (self.min_limit_w, self.tdp_w)

    def _set_power(self, p_w: float) -> None:
        t = self._now()
        last_t = self._seg_t[-1]
        if p_w == self._seg_p[-1]:
            return
        if t <= last_t:  # same instant (or a clock that did not move): replace the last segment
            self._seg_p[-1] = p_w
            return
        self._seg_e.append(self._seg_e[-1] + self._seg_p[-1] * (t - last_t))
        self._seg_t.append(t)
        self._seg_p.append(p_w)

    # --- ground truth -----------------------------------------------------------------------
    def _integral(self, t: float) -> float:
        """Exact energy from the first breakpoint to internal time ``t`` (negative before)."""
        i = bisect.bisect_right(self._seg_t, t) - 1
        if i < 0:  # before the GPU's creation: idle (not the first segment's power, which a
            return (t - self._seg_t[0]) * self.idle_w  # load set at creation may replace)
        return self._seg_e[i] + self._seg_p[i] * (t - self._seg_t[i])

    def true_power_w(self, t_s: float | None = None) -> float:
        """True power at clock time ``t_s`` (default now), W."""
        with self._lock:
            t = self._now() if t_s is None else t_s + self._offset_s
            i = bisect.bisect_right(self._seg_t, t) - 1
            return self._seg_p[max(i, 0)]

    def true_energy_j(self, t0_s: float, t1_s: float) -> float:
        """Exact energy drawn over [t0, t1] (clock times), J. Assumes the current power holds
        after the last change when ``t1`` is in the future."""
        with self._lock:
            return self._integral(t1_s + self._offset_s) - self._integral(t0_s + self._offset_s)

    @property
    def num_segments(self) -> int:
        return len(self._seg_t)

    # --- what NVML would report -------------------------------------------------------------
    def _counter_at(self, t: float) -> float:
        k = math.floor((t - self._tick_phase_s) / self.tick_s)
        tick_t = self._tick_phase_s + k * self.tick_s
        return math.floor((self._counter_offset_j + self._integral(tick_t)) * 1000.0) / 1000.0

    def _instant_at(self, t: float, p: float) -> float:
        slot = math.floor(t / JITTER_SLOT_S)
        g = random.Random((self._seed_key << 40) ^ (slot & 0xFFFFFFFFFF)).gauss(0.0, 1.0)
        return max(0.0, p * (1.0 + self.jitter * g))

    def read(self) -> tuple[float, float, float, float, float]:
        """(t_s on the clock, counter J, instant W, 1-s average W, memory W) now."""
        with self._lock:
            t_s, instant, avg, mem = self.read_power()
            return (t_s, self._counter_at(t_s + self._offset_s), instant, avg, mem)

    def read_power(self) -> tuple[float, float, float, float]:
        """(t_s on the clock, instant W, 1-s average W, memory W) now."""
        with self._lock:
            t = self._now()
            i = bisect.bisect_right(self._seg_t, t) - 1
            p = self._seg_p[max(i, 0)]
            avg = self._integral(t) - self._integral(t - 1.0)
            mem = MEMORY_IDLE_FRACTION * self.idle_w + MEMORY_DYNAMIC_FRACTION * (avg - self.idle_w)
            return (t - self._offset_s, self._instant_at(t, p), avg, mem)

    def read_counter(self) -> tuple[float, float]:
        """(t_s on the clock, counter J) now."""
        with self._lock:
            t = self._now()
            return (t - self._offset_s, self._counter_at(t))

    def tick_times_s(self, t0_s: float, t1_s: float) -> list[float]:
        """Clock times of the counter's ticks in ``[t0_s, t1_s]`` (for tests)."""
        with self._lock:
            lo = t0_s + self._offset_s
            k = math.ceil((lo - self._tick_phase_s) / self.tick_s)
            out = []
            while True:
                tick = self._tick_phase_s + k * self.tick_s - self._offset_s
                if tick > t1_s:
                    return out
                out.append(tick)
                k += 1

    def info(self) -> GpuInfo:
        return GpuInfo(
            index=self.index,
            name=self.name,
            power_limit_w=self.get_limit_w(),
            min_power_limit_w=self.min_limit_w,
            max_power_limit_w=self.tdp_w,
            default_power_limit_w=self.tdp_w,
            memory_total_mib=self.memory_total_mib,
        )


class SimulatedPowerSource:
    """``PowerSource`` and ``PowerLimiter`` over ``num_gpus`` :class:`SimulatedGPU` objects."""

    kind = "simulated"

    def __init__(
        self,
        clock: Clock,
        num_gpus: int = 1,
        *,
        name: str = "Simulated H100 SXM",
        tdp_w: float = 700.0,
        idle_w: float = 75.0,
        min_limit_w: float = 200.0,
        seed: int = 0,
        tick_s: float = 0.1,
        jitter: float = 0.02,
        energy_read_cpu_s: float = 0.0,
    ) -> None:
        if num_gpus < 1:
            raise ValueError("num_gpus must be >= 1")
        self._gpus = [
            SimulatedGPU(clock, i, name=name, tdp_w=tdp_w, idle_w=idle_w, min_limit_w=min_limit_w,
                         seed=seed, tick_s=tick_s, jitter=jitter)
            for i in range(num_gpus)
        ]
        self._clock = clock
        #: CPU time each counter read burns per GPU (busy wait), to model NVML's ~4 ms read in
        #: benchmarks of the sampler's cost. 0: free.
        self.energy_read_cpu_s = float(energy_read_cpu_s)

    @property
    def name(self) -> str:
        return self._gpus[0].name

    @property
    def clock(self) -> Clock:
        return self._clock

    def use_clock(self, clock: Clock) -> None:
        """Put every GPU on ``clock`` (see :meth:`SimulatedGPU.use_clock`)."""
        self._clock = clock
        for g in self._gpus:
            g.use_clock(clock)

    def gpu(self, index: int) -> SimulatedGPU:
        try:
            return self._gpus[index]
        except IndexError:
            raise ValueError(f"no simulated GPU {index} (have {len(self._gpus)})") from None

    def sim_gpus(self, indices: list[int]) -> list[SimulatedGPU]:
        return [self.gpu(i) for i in indices]

    # PowerSource
    def gpus(self) -> list[GpuInfo]:
        return [g.info() for g in self._gpus]

    def read(self, indices: list[int]) -> PowerReading:
        rows = [self.gpu(i).read() for i in indices]
        return PowerReading(
            t_s=self._clock.now_s(),
            energy_j=[r[1] for r in rows],
            instant_w=[r[2] for r in rows],
            average_w=[r[3] for r in rows],
            memory_w=[r[4] for r in rows],
        )

    def read_power(self, indices: list[int]) -> PowerFields:
        rows = [self.gpu(i).read_power() for i in indices]
        return PowerFields(
            t_s=self._clock.now_s(),
            instant_w=[r[1] for r in rows],
            average_w=[r[2] for r in rows],
            memory_w=[r[3] for r in rows],
        )

    def read_energy(self, indices: list[int]) -> EnergyReading:
        t = self._clock.now_s()
        out = []
        for i in indices:
            out.append(self.gpu(i).read_counter()[1])
            if self.energy_read_cpu_s > 0:
                _burn_cpu(self.energy_read_cpu_s)
        return EnergyReading(t_s=t, energy_j=out)

    def tdp_w(self, index: int) -> float:
        return self.gpu(index).tdp_w

    def close(self) -> None:
        pass

    # PowerLimiter
    def get_limit_w(self, index: int) -> float:
        return self.gpu(index).get_limit_w()

    def set_limit_w(self, index: int, limit_w: float) -> None:
        self.gpu(index).set_limit_w(limit_w)

    def limit_range_w(self, index: int) -> tuple[float, float]:
        return self.gpu(index).limit_range_w()

    # Ground truth
    def true_energy_j(self, indices: list[int], t0_s: float, t1_s: float) -> float:
        """Exact energy of ``indices`` over [t0, t1] on the clock, J."""
        return sum(self.gpu(i).true_energy_j(t0_s, t1_s) for i in indices)
