"""Choose the power source: NVML through Zeus where a GPU can be read, else the simulated GPU
where the profile or a flag allows it, else a one-line InputError. Never 0 J as a measurement."""

from __future__ import annotations

from dataclasses import dataclass

from ..clock import Clock
from ..errors import InputError
from ..profile import Profile
from ..records import PowerSourceKind
from .base import PowerLimiter, PowerSource


@dataclass
class PowerSetup:
    source: PowerSource
    limiter: PowerLimiter
    #: The simulated GPUs (by index) when the source is simulated, else None.
    sim_gpus: list | None
    kind: PowerSourceKind
    #: One line for the user, e.g. why the simulated GPU is in use.
    message: str

    @property
    def simulated(self) -> bool:
        return self.kind == "simulated"


def gpus_needed(profile: Profile) -> int:
    """How many GPU indices the sweep touches (largest TP x PP, or the profile's index list)."""
    need = max((c.num_gpus for c in profile.configs()), default=1)
    if profile.gpu.indices:
        need = max(need, max(profile.gpu.indices) + 1)
    if profile.sim.num_gpus is not None:
        need = max(need, profile.sim.num_gpus)
    return max(1, need)


def simulated_setup(profile: Profile, clock: Clock, message: str) -> PowerSetup:
    from .simulated import SimulatedPowerSource

    s = profile.sim
    source = SimulatedPowerSource(clock, gpus_needed(profile), name=s.gpu_name, tdp_w=s.tdp_w,
                                  idle_w=s.idle_w, seed=s.seed)
    return PowerSetup(source=source, limiter=source, sim_gpus=source.sim_gpus(list(range(gpus_needed(profile)))),
                      kind="simulated", message=message)


def open_power(profile: Profile, allow_simulated: bool | None, clock: Clock, source: str = "") -> PowerSetup:
    """``allow_simulated`` None defers to ``profile.gpu.allow_simulated``; a profile with
    ``gpu.simulated = true`` always gets the simulated GPU. ``source``: the profile's path, the
    FILE part of the error when no GPU can be read."""
    if profile.gpu.simulated:
        return simulated_setup(profile, clock, "SIMULATED GPU (profile sets gpu.simulated = true)")
    from .nvml import NvmlLimiter, NvmlPowerSource, NvmlUnavailable

    try:
        source = NvmlPowerSource(clock)
        limiter = NvmlLimiter()
    except NvmlUnavailable as exc:
        reason = str(exc)
        allowed = profile.gpu.allow_simulated if allow_simulated is None else allow_simulated
        if allowed:
            return simulated_setup(profile, clock, f"no NVIDIA GPU readable (NVML: {reason}); using the SIMULATED GPU")
        raise InputError(source, "gpu", f"no NVIDIA GPU can be read ({reason}); "
                                    "pass --simulate or set gpu.allow_simulated = true") from None
    names = sorted({g.name for g in source.gpus()})
    return PowerSetup(source=source, limiter=limiter, sim_gpus=None, kind="nvml",
                      message=f"NVML via Zeus: {len(source.gpus())} GPU(s) ({', '.join(names)})")
