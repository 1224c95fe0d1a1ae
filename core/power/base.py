"""The power-source interface shared by NVML (through Zeus) and the simulated GPU."""

from __future__ import annotations

from typing import Protocol

import msgspec

from ..records import GpuInfo, PowerSourceKind


class PowerReading(msgspec.Struct, kw_only=True):
    """One read of every GPU of a configuration, at ``t_s`` on the run's clock."""

    t_s: float
    #: Cumulative energy counter per GPU, J (NVML's counter advances in ~100 ms ticks).
    energy_j: list[float]
    #: Instant power per GPU, W.
    instant_w: list[float]
    #: 1-s average power per GPU, W, where supported.
    average_w: list[float] | None = None
    #: HBM power per GPU, W, where supported.
    memory_w: list[float] | None = None


class PowerSource(Protocol):
    kind: PowerSourceKind

    def gpus(self) -> list[GpuInfo]:
        """All GPUs this source can see."""
        ...

    def read(self, indices: list[int]) -> PowerReading:
        """Read counters and power of ``indices`` now."""
        ...

    def tdp_w(self, index: int) -> float:
        """Thermal design power (default power limit) of a GPU, W."""
        ...

    def close(self) -> None: ...


class PowerLimiter(Protocol):
    """Set and read back GPU power limits. Implementations: NVML/Zeus, simulated, fakes in tests."""

    def get_limit_w(self, index: int) -> float: ...

    def set_limit_w(self, index: int, limit_w: float) -> None: ...

    def limit_range_w(self, index: int) -> tuple[float, float]: ...
