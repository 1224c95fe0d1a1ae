"""GPU health beside power: temperature, SM clock, utilisation, throttle reasons and the other
processes on the measured GPUs.

``read_health("nvml", [0, 1])`` reads NVML through pynvml directly (any failing call leaves its
field None, nothing raises); ``read_health("simulated", [0], sim_gpus=...)`` derives the same
fields from the simulated GPU's public state (a test double, labelled as such by the caller).

A *stranger* is a process on a measured GPU that is not ours (``own_pids``: the runner and its
children, e.g. the vLLM server): its work would be measured as ours.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import msgspec

from .visible import nvml_device

#: NVML clocks-event (throttle) reason bits -> short names (nvml.h, ``nvmlClocksEventReason*``).
THROTTLE_BITS: dict[int, str] = {
    0x1: "idle",
    0x2: "app clocks",
    0x4: "power cap",
    0x8: "hw slowdown",
    0x10: "sync boost",
    0x20: "sw thermal",
    0x40: "hw thermal",
    0x80: "power brake",
    0x100: "display clock",
}
#: Reasons that are normal operation, not a warning.
BENIGN_THROTTLE = frozenset({"idle", "app clocks", "sync boost", "display clock"})

#: Simulated GPU health model (a test double, not a physical model).
SIM_AMBIENT_C = 30.0
SIM_HOT_C = 75.0
SIM_MAX_SM_MHZ = 1980.0


class GpuProcess(msgspec.Struct, kw_only=True, frozen=True):
    pid: int
    name: str = ""
    used_memory_mib: float | None = None


class HealthReading(msgspec.Struct, kw_only=True):
    """One GPU's health at one moment; None where the source could not say."""

    index: int
    temperature_c: float | None = None
    sm_clock_mhz: float | None = None
    utilisation_pct: float | None = None
    #: Active throttle (clocks-event) reasons, short names; None if unreadable.
    throttle: list[str] | None = None
    processes: list[GpuProcess] | None = None
    #: Processes on this GPU that are not ours (``own_pids``); None when unknown.
    strangers: list[GpuProcess] | None = None

    @property
    def warnings(self) -> list[str]:
        out = [t for t in (self.throttle or []) if t not in BENIGN_THROTTLE]
        if self.strangers:
            out.append(f"{len(self.strangers)} other process{'es' * (len(self.strangers) != 1)}")
        return out


def throttle_names(mask: int) -> list[str]:
    return [name for bit, name in THROTTLE_BITS.items() if mask & bit]


def process_tree(root_pid: int) -> set[int]:
    """``root_pid`` and its descendants (Linux /proc; just the root where /proc is unreadable)."""
    parents: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {root_pid}
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        try:
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(name))
    out, todo = set(), [root_pid]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo.extend(parents.get(pid, []))
    return out


def _strangers(procs: list[GpuProcess] | None, own_pids: Iterable[int] | None) -> list[GpuProcess] | None:
    if procs is None or own_pids is None:
        return None
    own = set(own_pids)
    return [p for p in procs if p.pid not in own]


def read_health(source_kind: str, indices: list[int], *, sim_gpus: list | None = None,
                own_pids: Iterable[int] | None = None) -> list[HealthReading]:
    """Health of the GPUs ``indices`` from the ``nvml`` or ``simulated`` source. Never raises:
    what cannot be read is None (no NVML at all: every field None)."""
    own = None if own_pids is None else set(own_pids)
    if source_kind == "simulated":
        return _read_simulated(indices, sim_gpus, own)
    if source_kind == "nvml":
        return _read_nvml(indices, own)
    return [HealthReading(index=i) for i in indices]


# -- simulated ------------------------------------------------------------------------------
def _read_simulated(indices: list[int], sim_gpus: list | None, own: set[int] | None) -> list[HealthReading]:
    by_index = {getattr(g, "index", n): g for n, g in enumerate(sim_gpus or [])}
    out = []
    for i in indices:
        g = by_index.get(i)
        if g is None:
            out.append(HealthReading(index=i))
            continue
        try:
            p = float(g.true_power_w())
            limit = float(g.get_limit_w())
        except Exception:  # noqa: BLE001 - a double that misbehaves reads as unknown
            out.append(HealthReading(index=i))
            continue
        capped = p >= limit - 1e-6 and limit < g.demand_w(1.0)
        if capped:
            # Clamped by the limit: busy, clocks lowered as the simulator slows the work.
            util, clock = 100.0, SIM_MAX_SM_MHZ * g.speed_factor(1.0)
        else:
            span = max(1e-9, g.demand_w(1.0) - g.idle_w)
            frac = min(1.0, max(0.0, (p - g.idle_w) / span))
            util, clock = frac ** (1 / 0.8) * 100.0, SIM_MAX_SM_MHZ
        throttle = ["power cap"] if capped else ([] if util > 0 else ["idle"])
        out.append(HealthReading(
            index=i, temperature_c=round(SIM_AMBIENT_C + (SIM_HOT_C - SIM_AMBIENT_C) * p / g.tdp_w, 1),
            sm_clock_mhz=round(clock), utilisation_pct=round(util, 1), throttle=throttle,
            processes=[], strangers=[] if own is not None else None))
    return out


# -- NVML -----------------------------------------------------------------------------------
_nvml_ready: bool | None = None


def _nvml():
    """pynvml, initialised once; None where it cannot be."""
    global _nvml_ready
    try:
        import pynvml
    except Exception:  # noqa: BLE001 - not installed or broken
        return None
    if _nvml_ready is None:
        try:
            pynvml.nvmlInit()
            _nvml_ready = True
        except Exception:  # noqa: BLE001 - no driver / no GPU
            _nvml_ready = False
    return pynvml if _nvml_ready else None


def _try(fn, *args):
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported and friends -> unknown
        return None


def _processes(nv, h) -> list[GpuProcess] | None:
    found: dict[int, GpuProcess] = {}
    ok = False
    for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
        f = getattr(nv, fn, None)
        procs = _try(f, h) if f else None
        if procs is None:
            continue
        ok = True
        for p in procs:
            mem = getattr(p, "usedGpuMemory", None)
            found[int(p.pid)] = GpuProcess(pid=int(p.pid), name=_proc_name(int(p.pid)),
                                           used_memory_mib=None if mem is None else mem / 2**20)
    return sorted(found.values(), key=lambda p: p.pid) if ok else None


def _proc_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _read_nvml(indices: list[int], own: set[int] | None) -> list[HealthReading]:
    nv = _nvml()
    if nv is None:
        return [HealthReading(index=i) for i in indices]
    out = []
    reasons_fn = (getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
                  or getattr(nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None))
    for i in indices:
        dev = nvml_device(i)  # our index counts the GPUs CUDA_VISIBLE_DEVICES shows (as Zeus does)
        h = None if dev is None else _try(nv.nvmlDeviceGetHandleByIndex if isinstance(dev, int)
                                          else nv.nvmlDeviceGetHandleByUUID, dev)
        if h is None:
            out.append(HealthReading(index=i))
            continue
        temp = _try(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
        clock = _try(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM)
        util = _try(nv.nvmlDeviceGetUtilizationRates, h)
        mask = _try(reasons_fn, h) if reasons_fn else None
        procs = _processes(nv, h)
        out.append(HealthReading(
            index=i,
            temperature_c=None if temp is None else float(temp),
            sm_clock_mhz=None if clock is None else float(clock),
            utilisation_pct=None if util is None else float(util.gpu),
            throttle=None if mask is None else throttle_names(int(mask)),
            processes=procs, strangers=_strangers(procs, own)))
    return out


class StrangerLog:
    """Other processes seen on the measured GPUs during one configuration (for the record):
    feed it every health reading; :meth:`reason` is the line to flag the record with."""

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], GpuProcess] = {}

    def add(self, readings: list[HealthReading]) -> None:
        for r in readings:
            for p in r.strangers or []:
                self.seen.setdefault((r.index, p.pid), p)

    def reason(self) -> str | None:
        if not self.seen:
            return None
        parts = [f"pid {pid}{f' ({p.name})' if p.name else ''} on GPU {index}"
                 for (index, pid), p in sorted(self.seen.items())]
        return "other processes on the measured GPUs: " + ", ".join(parts)


def health_line(readings: list[HealthReading]) -> str:
    """One line for the run screen: ``GPU0 61°C 1980MHz 97% · GPU1 …`` with warnings."""
    parts = []
    for r in readings:
        bits = [f"GPU{r.index}"]
        bits.append("—°C" if r.temperature_c is None else f"{r.temperature_c:.0f}°C")
        bits.append("—MHz" if r.sm_clock_mhz is None else f"{r.sm_clock_mhz:.0f}MHz")
        bits.append("—%" if r.utilisation_pct is None else f"{r.utilisation_pct:.0f}%")
        warn = r.warnings
        if warn:
            bits.append("⚠ " + ", ".join(warn))
        parts.append(" ".join(bits))
    return " · ".join(parts)
