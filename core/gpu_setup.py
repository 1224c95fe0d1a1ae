"""GPU set-up for a sweep: the power source and limiter (NVML or the simulated GPU), the clock
each configuration runs on, the checks made before anything changes (GPUs present, limits in
range and settable, limits left by a killed run restored), and a configuration's hardware facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .clock import Clock, VirtualClock, WallClock
from .config import Config
from .errors import InputError
from .power.base import PowerLimiter, PowerSource
from .power.gpu_lock import GpuClaim, host_name
from .power.limits import PowerLimitGuard, claim_sweep_gpus, state_dir_for, validate_limit
from .profile import Profile
from .records import Hardware


@dataclass
class GpuSetup:
    source: PowerSource
    limiter: PowerLimiter
    kind: str
    #: Simulated GPUs by index (the runtime drives them), or None on real GPUs.
    sim_gpus: list | None
    clock_factory: Callable[[], Clock]
    message: str
    simulated: bool
    #: Where per-GPU limit state and locks live (None: the default for the source's kind).
    state_dir: Path | None
    #: Lines for the run log (limits restored from a killed run, ...).
    notes: list[str] = field(default_factory=list)
    #: The sweep's GPU pool, locked for the whole sweep (after :func:`check`).
    claim: GpuClaim | None = None
    #: Cluster runs: the node's name in the cluster (records carry it).
    node: str | None = None

    def release(self) -> None:
        if self.claim is not None:
            self.claim.release()
            self.claim = None


def default_clock_factory(profile: Profile, virtual: bool) -> Callable[[], Clock]:
    if virtual:
        return VirtualClock
    scale = profile.sim.time_scale if profile.runtime == "sim" else 1.0
    return lambda: WallClock(scale)


def open_gpus(profile: Profile, *, power_source: PowerSource | None, limiter: PowerLimiter | None,
              clock_factory: Callable[[], Clock] | None, allow_simulated: bool | None,
              sim_gpus: list | None, limits_state_path: Path | None, profile_path: str = "") -> GpuSetup:
    """Open the power source (an injected one, or ``power.select``) and pick the clock: virtual
    for the sim runtime with ``sim.realtime = false``, but real GPUs always run on real time."""
    want_virtual = profile.runtime == "sim" and not profile.sim.realtime
    factory = clock_factory or default_clock_factory(profile, want_virtual)
    clock = factory()
    if power_source is not None:
        source = power_source
        lim = limiter if limiter is not None else source  # type: ignore[assignment]
        kind = getattr(source, "kind", "simulated")
        message = f"power source: {kind} (injected)"
        if sim_gpus is None and hasattr(source, "sim_gpus") and kind == "simulated":
            sim_gpus = source.sim_gpus(list(range(len(source.gpus()))))  # type: ignore[attr-defined]
    else:
        from .power.select import open_power

        setup = open_power(profile, allow_simulated, clock, source=profile_path)
        source, kind, message = setup.source, setup.kind, setup.message
        lim = limiter if limiter is not None else setup.limiter
        sim_gpus = sim_gpus if sim_gpus is not None else setup.sim_gpus
    if kind == "nvml" and getattr(clock, "virtual", False) and clock_factory is None:
        factory = default_clock_factory(profile, False)
    return GpuSetup(source=source, limiter=lim, kind=kind, sim_gpus=sim_gpus, clock_factory=factory,
                    message=message, simulated=kind == "simulated" or profile.runtime == "sim",
                    state_dir=None if limits_state_path is None else state_dir_for(limits_state_path))


def gpu_pool(profile: Profile, source: PowerSource) -> list[int]:
    if profile.gpu.indices:
        return list(profile.gpu.indices)
    return [g.index for g in source.gpus()]


def check(profile: Profile, configs: list[Config], gpus: GpuSetup, run_dir: Path, profile_path: str) -> None:
    """Before anything changes: GPUs present, every configuration's GPUs available and its
    limit in range, (NVML) the privilege to set limits, then limits left by a killed run
    restored and the sweep's GPU pool locked for the whole sweep (``gpus.claim``; a second
    sweep on one of these GPUs is refused naming the holder). Raises InputError naming the
    profile field."""
    pool = gpu_pool(profile, gpus.source)
    visible = {g.index for g in gpus.source.gpus()}
    missing = [i for i in pool if i not in visible]
    if missing:
        raise InputError(profile_path, "gpu.indices", f"GPU {missing[0]} not found (visible: {sorted(visible)})")
    need_set = False
    for cfg in configs:
        if cfg.num_gpus > len(pool):
            raise InputError(profile_path, "sweep.tensor_parallel",
                             f"configuration {cfg.key()} needs {cfg.num_gpus} GPUs; {len(pool)} available")
        if cfg.power_limit_w is not None:
            need_set = True
            for i in pool[: cfg.num_gpus]:
                try:
                    validate_limit(gpus.limiter, i, float(cfg.power_limit_w))
                except InputError as exc:
                    raise InputError(profile_path, exc.field, exc.problem) from None
    if need_set and gpus.kind == "nvml":
        # Setting the current value is a no-op that still needs the privilege.
        for i in sorted({i for c in configs if c.power_limit_w is not None for i in pool[: c.num_gpus]}):
            try:
                gpus.limiter.set_limit_w(i, gpus.limiter.get_limit_w(i))
            except Exception as exc:  # noqa: BLE001
                raise InputError(profile_path, "sweep.power_limit_w", f"cannot set GPU power limits: {exc}") from None
    used = sorted({i for c in configs for i in pool[: c.num_gpus]})
    gpus.claim, notes = claim_sweep_gpus(gpus.limiter, gpus.source, used, gpus.kind, run_dir, profile_path,
                                         state_dir=gpus.state_dir)
    gpus.notes += notes


def guard_for(gpus: GpuSetup, indices: list[int], limit_w: float | None, run_dir: Path,
              profile_path: str) -> PowerLimitGuard:
    """The limit guard of one configuration, under the sweep's claim."""
    return PowerLimitGuard(gpus.limiter, indices, limit_w, claim=gpus.claim, run_dir=run_dir, source=profile_path)


def hardware(gpus: GpuSetup, indices: list[int], guard: PowerLimitGuard) -> Hardware:
    try:
        infos = {g.index: g for g in gpus.source.gpus()}
    except Exception:  # noqa: BLE001
        infos = {}
    names = [infos[i].name if i in infos else f"GPU {i}" for i in indices]
    try:
        tdp = float(gpus.source.tdp_w(indices[0]))
    except Exception:  # noqa: BLE001
        tdp = float("nan")
    return Hardware(power_source=gpus.kind, gpu_names=names, gpu_indices=list(indices), tdp_w=tdp,  # type: ignore[arg-type]
                    power_limit_w=list(guard.enforced_w) or None,
                    original_power_limit_w=list(guard.original_w) or None, host=host_name(),
                    gpu_uuids=_uuids([infos.get(i) for i in indices]), node=gpus.node)


def _uuids(infos: list) -> list[str | None] | None:
    uuids = [getattr(g, "uuid", None) for g in infos]
    return uuids if any(uuids) else None
