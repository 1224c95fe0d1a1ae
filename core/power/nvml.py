"""NVML through Zeus: the cumulative energy counter, 10 Hz power fields, and power limits.

Zeus's device layer (``zeus.device.get_gpus()``) is imported lazily: it initialises NVML and
maps ``CUDA_VISIBLE_DEVICES``. Power comes from ``nvmlDeviceGetFieldValues`` (instant, 1-s
average, and the memory-scope average where the GPU supports it); a field the device rejects is
dropped for the rest of the session instead of failing every read.
"""

from __future__ import annotations

from typing import Any

from ..clock import Clock
from ..records import GpuInfo, PowerSourceKind
from .base import EnergyReading, PowerFields, PowerReading


class NvmlUnavailable(RuntimeError):
    """No NVIDIA GPU can be read; the message says why (for the user)."""


def _gpus() -> Any:
    try:
        from zeus.device import get_gpus
    except Exception as exc:  # noqa: BLE001 - zeus missing or broken
        raise NvmlUnavailable(f"zeus device layer unavailable: {exc}") from None
    try:
        gpus = get_gpus()
    except Exception as exc:  # noqa: BLE001 - ZeusGPUInitError and friends
        raise NvmlUnavailable(" ".join(str(exc).split()) or type(exc).__name__) from None
    if len(gpus) == 0:
        raise NvmlUnavailable("NVML found no GPU")
    if type(gpus).__name__ != "NVIDIAGPUs":
        raise NvmlUnavailable(f"only NVIDIA GPUs are supported (found {type(gpus).__name__})")
    return gpus


def _field_value(v: Any) -> float | None:
    import pynvml

    if v.nvmlReturn != pynvml.NVML_SUCCESS:
        return None
    t = v.valueType
    val = v.value
    if t == pynvml.NVML_VALUE_TYPE_DOUBLE:
        return float(val.dVal)
    if t == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT:
        return float(val.uiVal)
    if t == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG:
        return float(val.ulVal)
    if t == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG:
        return float(val.ullVal)
    if t == pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG:
        return float(val.sllVal)
    return float(val.uiVal)


def nvml_uuid(pynvml: Any, handle: Any) -> str | None:
    """The GPU's NVML UUID (``GPU-…``): the id of its power-limit state and lock, the same
    whatever CUDA_VISIBLE_DEVICES this process has (indices are not)."""
    try:
        raw = pynvml.nvmlDeviceGetUUID(handle)
    except Exception:  # noqa: BLE001 - an old driver: index-based ids then
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class NvmlPowerSource:
    """Energy counter (Zeus, mJ -> J) and power fields (pynvml, mW -> W) of NVIDIA GPUs.

    Readings are stamped with ``clock.now_s()``. Raises :class:`NvmlUnavailable` on
    construction when no GPU can be read."""

    kind: PowerSourceKind = "nvml"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._gpus = _gpus()
        import pynvml

        self._pynvml = pynvml
        self._fields: list[Any] = [
            pynvml.NVML_FI_DEV_POWER_INSTANT,
            pynvml.NVML_FI_DEV_POWER_AVERAGE,
            (pynvml.NVML_FI_DEV_POWER_AVERAGE, pynvml.NVML_POWER_SCOPE_MEMORY),
        ]
        #: Field positions the device rejected (dropped after the first failure).
        self._supported = [True, True, True]
        self._counter_ok: dict[int, bool] = {}

    def use_clock(self, clock: Clock) -> None:
        """Stamp readings with ``clock`` from now on (a per-configuration clock)."""
        self.clock = clock

    def _handle(self, index: int) -> Any:
        return self._gpus.gpus[index].handle

    def gpus(self) -> list[GpuInfo]:
        out = []
        pynvml = self._pynvml
        for i in range(len(self._gpus)):
            info = GpuInfo(index=i, name=str(self._gpus.get_name(i)), uuid=nvml_uuid(pynvml, self._handle(i)))
            try:
                info.power_limit_w = self._gpus.get_power_management_limit(i) / 1000.0
                lo, hi = self._gpus.get_power_management_limit_constraints(i)
                info.min_power_limit_w, info.max_power_limit_w = lo / 1000.0, hi / 1000.0
                info.default_power_limit_w = pynvml.nvmlDeviceGetPowerManagementDefaultLimit(self._handle(i)) / 1000.0
                info.memory_total_mib = pynvml.nvmlDeviceGetMemoryInfo(self._handle(i)).total / 2**20
            except Exception:  # noqa: BLE001 - partial info is still useful
                pass
            out.append(info)
        return out

    def supports_counter(self, index: int) -> bool:
        if index not in self._counter_ok:
            try:
                self._counter_ok[index] = bool(self._gpus.supports_get_total_energy_consumption(index))
            except Exception:  # noqa: BLE001
                self._counter_ok[index] = False
        return self._counter_ok[index]

    def _power(self, index: int) -> tuple[float, float | None, float | None]:
        fields = [f for f, ok in zip(self._fields, self._supported) if ok]
        values: list[float | None] = [None, None, None]
        if fields:
            try:
                raw = self._pynvml.nvmlDeviceGetFieldValues(self._handle(index), fields)
                got = iter(_field_value(v) for v in raw)
                for pos, ok in enumerate(self._supported):
                    if ok:
                        values[pos] = next(got)
                for pos in range(3):
                    if self._supported[pos] and values[pos] is None and pos > 0:
                        self._supported[pos] = False
            except Exception:  # noqa: BLE001 - old driver without field values
                self._supported = [False, False, False]
        instant = values[0]
        if instant is None:
            instant = float(self._gpus.get_instant_power_usage(index))
        return instant / 1000.0, (None if values[1] is None else values[1] / 1000.0), (
            None if values[2] is None else values[2] / 1000.0)

    def read_power(self, indices: list[int]) -> PowerFields:
        """Instant, 1-s average and memory power of ``indices`` (one field-values call each)."""
        t = self.clock.now_s()
        instant, average, memory = [], [], []
        for i in indices:
            p, a, m = self._power(i)
            instant.append(p)
            average.append(a)
            memory.append(m)
        return PowerFields(
            t_s=t,
            instant_w=instant,
            average_w=None if any(a is None for a in average) else [float(a) for a in average],  # type: ignore[arg-type]
            memory_w=None if any(m is None for m in memory) else [float(m) for m in memory],  # type: ignore[arg-type]
        )

    def read_energy(self, indices: list[int]) -> EnergyReading:
        """The cumulative energy counters of ``indices`` (~4 ms per GPU), stamped before the reads."""
        t = self.clock.now_s()
        energy = []
        for i in indices:
            if not self.supports_counter(i):
                raise NvmlUnavailable(f"GPU {i} has no cumulative energy counter (needs Volta or newer)")
            energy.append(self._gpus.get_total_energy_consumption(i) / 1000.0)
        return EnergyReading(t_s=t, energy_j=energy)

    def read(self, indices: list[int]) -> PowerReading:
        e = self.read_energy(indices)
        p = self.read_power(indices)
        return PowerReading(t_s=e.t_s, energy_j=e.energy_j, instant_w=p.instant_w, average_w=p.average_w,
                            memory_w=p.memory_w)

    def tdp_w(self, index: int) -> float:
        try:
            return self._pynvml.nvmlDeviceGetPowerManagementDefaultLimit(self._handle(index)) / 1000.0
        except Exception:  # noqa: BLE001
            return self._gpus.get_power_management_limit_constraints(index)[1] / 1000.0

    def versions(self) -> dict[str, str | None]:
        """Driver, NVML and CUDA driver versions for the manifest."""
        pynvml = self._pynvml
        out: dict[str, str | None] = {"driver": None, "nvml": None, "cuda": None}
        for key, fn in (("driver", "nvmlSystemGetDriverVersion"), ("nvml", "nvmlSystemGetNVMLVersion")):
            try:
                v = getattr(pynvml, fn)()
                out[key] = v.decode() if isinstance(v, bytes) else str(v)
            except Exception:  # noqa: BLE001
                pass
        try:
            c = int(pynvml.nvmlSystemGetCudaDriverVersion())
            out["cuda"] = f"{c // 1000}.{(c % 1000) // 10}"
        except Exception:  # noqa: BLE001
            pass
        return out

    def close(self) -> None:
        pass


class NvmlLimiter:
    """Power limits through Zeus's device layer (NVML; setting needs root/CAP_SYS_ADMIN or
    Zeus's ``zeusd``)."""

    def __init__(self) -> None:
        self._gpus = _gpus()

    def gpu_uuid(self, index: int) -> str | None:
        import pynvml

        return nvml_uuid(pynvml, self._gpus.gpus[index].handle)

    def get_limit_w(self, index: int) -> float:
        return self._gpus.get_power_management_limit(index) / 1000.0

    def set_limit_w(self, index: int, limit_w: float) -> None:
        try:
            self._gpus.set_power_management_limit(index, int(round(limit_w * 1000)), block=True)
        except Exception as exc:  # noqa: BLE001
            name = type(exc).__name__
            hint = " (setting a power limit needs root or CAP_SYS_ADMIN)" if "Permission" in name else ""
            raise RuntimeError(f"GPU {index}: cannot set power limit {limit_w:g} W: {exc}{hint}") from exc

    def limit_range_w(self, index: int) -> tuple[float, float]:
        lo, hi = self._gpus.get_power_management_limit_constraints(index)
        return lo / 1000.0, hi / 1000.0
