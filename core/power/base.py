"""The power-source interface shared by NVML (through Zeus) and the simulated GPU."""

from __future__ import annotations

from typing import Protocol

import msgspec

from ..records import GpuInfo, PowerSourceKind


class PowerFields(msgspec.Struct, kw_only=True):
    """The cheap power fields of every GPU of a configuration, read at ``t_s`` (run clock)."""

    t_s: float
    #: Instant power per GPU, W.
    instant_w: list[float]
    #: 1-s average power per GPU, W, where supported.
    average_w: list[float] | None = None
    #: HBM power per GPU, W, where supported.
    memory_w: list[float] | None = None


class EnergyReading(msgspec.Struct, kw_only=True):
    """The cumulative energy counter of every GPU of a configuration, read at ``t_s``."""

    t_s: float
    #: Cumulative energy counter per GPU, J (NVML's counter advances in ~100 ms ticks).
    energy_j: list[float]


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
    #: When the counter in ``energy_j`` was read, if not at ``t_s`` (the sampler reads power
    #: fields at 10 Hz and the counter less often: its listener gets the latest counter).
    energy_t_s: float | None = None


class PowerSource(Protocol):
    kind: PowerSourceKind

    def gpus(self) -> list[GpuInfo]:
        """All GPUs this source can see."""
        ...

    def read(self, indices: list[int]) -> PowerReading:
        """Read counters and power of ``indices`` now."""
        ...

    # Sources may also offer split reads (NVML and the simulated GPU do; the sampler falls back
    # to ``read`` for sources that do not):
    #   read_power(indices) -> PowerFields     instant, 1-s average, memory power (cheap)
    #   read_energy(indices) -> EnergyReading  the cumulative counter (~4 ms per GPU on NVML)

    def tdp_w(self, index: int) -> float:
        """Thermal design power (default power limit) of a GPU, W."""
        ...

    def close(self) -> None: ...


class PowerLimiter(Protocol):
    """Set and read back GPU power limits. Implementations: NVML/Zeus, simulated, fakes in tests."""

    def get_limit_w(self, index: int) -> float: ...

    def set_limit_w(self, index: int, limit_w: float) -> None: ...

    def limit_range_w(self, index: int) -> tuple[float, float]: ...
