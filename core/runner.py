"""Sweep orchestration: one configuration after another, records written as each ends.
CONTRACT STUB: the public API below is fixed; bodies to be implemented.

For each pending configuration the runner: sets the power limit (and reads it back), starts the
10 Hz power sampler, runs the runtime, feeds the online steady-state detector with the batch
trace and request events, computes the accounting, writes the record atomically, restores the
power limit. A RunFailure (crashed server, OOM) becomes a ``failed`` record and the sweep goes
on. SIGINT/SIGTERM/SIGHUP: the current configuration is stopped, limits restored, child process
groups killed, finished records kept.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from .clock import Clock
from .config import Config
from .events import Event
from .power.base import PowerLimiter, PowerSource
from .profile import Profile
from .runtimes.base import Runtime


class RunSummary(msgspec.Struct, kw_only=True):
    run_dir: str
    completed: int
    failed: int
    invalid: int
    skipped: int  # already done before this run (resume)
    stopped: bool  # stopped early by request_stop or a signal


class SweepRunner:
    def __init__(
        self,
        profile: Profile,
        out_dir: Path,
        *,
        profile_path: str | None = None,
        listener: Callable[[Event], None] | None = None,
        power_source: PowerSource | None = None,
        limiter: PowerLimiter | None = None,
        runtime: Runtime | None = None,
        clock_factory: Callable[[], Clock] | None = None,
        allow_simulated: bool | None = None,
        record_format: str = "json",
    ) -> None:
        """Defaults: power source/limiter chosen by ``power.select`` (NVML via Zeus, else the
        simulated GPU when the profile or ``allow_simulated`` allows it, else InputError);
        runtime from ``profile.runtime``; clock: virtual for sim with ``sim.realtime = false``,
        else wall clock."""
        raise NotImplementedError

    def configs(self) -> list[Config]:
        """Every configuration of the sweep, in run order."""
        raise NotImplementedError

    def pending(self) -> list[Config]:
        """Configurations without a record in the run directory yet."""
        raise NotImplementedError

    def run(self) -> RunSummary:
        """Run every pending configuration. Blocking; call from a worker thread in the UI."""
        raise NotImplementedError

    def request_skip(self) -> None:
        """Stop the current configuration (record ``failed`` with reason "skipped by user"),
        go on with the next. Thread-safe."""
        raise NotImplementedError

    def request_stop(self) -> None:
        """Stop the current configuration and the sweep, cleanly. Thread-safe."""
        raise NotImplementedError
