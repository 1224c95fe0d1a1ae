"""GPU detection for the setup screen: NVML through ``pynvml`` only (never Zeus, whose import
takes seconds). Called from a worker thread so the first frame never waits on the driver."""

from __future__ import annotations

import msgspec

from ..core.records import GpuInfo


class GpuProbe(msgspec.Struct, kw_only=True):
    gpus: list[GpuInfo] = []
    driver_version: str | None = None
    #: Why no GPU could be read (None when NVML answered).
    error: str | None = None

    def summary(self) -> str:
        if not self.gpus:
            return f"No NVIDIA GPU detected ({self.error or 'NVML reported none'})."
        names = collections_counter(g.name for g in self.gpus)
        lo = [g.min_power_limit_w for g in self.gpus if g.min_power_limit_w is not None]
        hi = [g.max_power_limit_w for g in self.gpus if g.max_power_limit_w is not None]
        now = [g.power_limit_w for g in self.gpus if g.power_limit_w is not None]
        text = ", ".join(f"{n} × {name}" for name, n in names.items())
        if lo and hi:
            text += f" · power limit {min(lo):.0f}–{max(hi):.0f} W"
        if now:
            vals = sorted({round(v) for v in now})
            text += " (now " + "/".join(f"{v:.0f}" for v in vals) + " W)"
        return text


def collections_counter(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def probe_gpus() -> GpuProbe:
    """Read every NVIDIA GPU NVML can see. Never raises."""
    try:
        import pynvml
    except Exception as exc:  # pragma: no cover - nvidia-ml-py is a dependency
        return GpuProbe(error=f"pynvml unavailable: {exc}")
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return GpuProbe(error=f"NVML: {exc}")
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            name = name.decode() if isinstance(name, bytes) else str(name)
            info = GpuInfo(index=i, name=name)
            try:
                lo, hi = pynvml.nvmlDeviceGetPowerManagementLimitConstraints(h)
                info.min_power_limit_w, info.max_power_limit_w = lo / 1000.0, hi / 1000.0
            except Exception:
                pass
            try:
                info.power_limit_w = pynvml.nvmlDeviceGetPowerManagementLimit(h) / 1000.0
            except Exception:
                pass
            try:
                info.default_power_limit_w = pynvml.nvmlDeviceGetPowerManagementDefaultLimit(h) / 1000.0
            except Exception:
                pass
            try:
                info.memory_total_mib = pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**20
            except Exception:
                pass
            gpus.append(info)
        try:
            drv = pynvml.nvmlSystemGetDriverVersion()
            drv = drv.decode() if isinstance(drv, bytes) else str(drv)
        except Exception:
            drv = None
        return GpuProbe(gpus=gpus, driver_version=drv, error=None if gpus else "NVML reported no GPU")
    except Exception as exc:
        return GpuProbe(error=f"NVML: {exc}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass
