"""Sweep orchestration: one configuration after another, a record written as each ends.

The runner prepares the sweep (power source and checks in :mod:`.gpu_setup`, the workload,
``run.json`` from :mod:`.manifest`), then hands each configuration its plan yields (the grid, or
the adaptive search of :mod:`.adaptive.plan`, which also stops configurations early) to
:class:`.config_run.ConfigRun` (limit, sampler, runtime, trace, analysis, record). A RunFailure
(crashed server, OOM) becomes a ``failed`` record and the sweep goes on; a skip gives a
``skipped`` record that runs again on resume; a drain lets the running configuration finish and
starts no other (the rest resume later). SIGINT/SIGTERM/SIGHUP: the current configuration
is stopped, limits restored, child process groups killed, finished records kept.

Every configuration runs on a fresh clock whose zero is the configuration's start; the power
source is moved onto it (``use_clock``), so all times in a record are relative to its start.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from .clock import Clock
from .config import Config
from .adaptive.plan import AdaptivePlan, Plan
from .adaptive.verify import VERIFY_DIR, relaunch_profile, verify_reuse
from .config_run import ConfigRun, Flags
from .dataset_types import Request
from .errors import Cancelled, InputError
from .event_sink import EventSink
from .events import Event, LogLine, RunFinished, RunStarted
from .gpu_setup import GpuSetup, check, gpu_pool, open_gpus
from .manifest import build_manifest
from .power.base import PowerLimiter, PowerSource
from .profile import Profile
from .resume_check import check_resume_hardware
from .runtimes.base import Runtime
from .runtimes.server_reuse import shared_batch
from .store import RunStore
from .sweep_prep import load_workload, open_run_dir, request_count, requests_for


class RunSummary(msgspec.Struct, kw_only=True):
    run_dir: str
    completed: int
    failed: int
    invalid: int
    skipped: int  # already done before this run (resume)
    stopped: bool  # stopped early by request_stop, a signal, or request_drain with configurations left


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
        requests: list[Request] | None = None,
        limits_state_path: Path | None = None,
        sim_gpus: list[Any] | None = None,
        strategy: str | None = None,
    ) -> None:
        """Defaults: power source/limiter chosen by ``power.select`` (NVML via Zeus, else the
        simulated GPU when the profile or ``allow_simulated`` allows it, else InputError);
        runtime from ``profile.runtime``; clock: virtual for sim with ``sim.realtime = false``,
        else wall clock.

        Additions: ``requests`` (skip dataset loading), ``limits_state_path`` (where original
        power limits are kept while changed; default the per-user state directory for NVML,
        the run directory for the simulated GPU), ``sim_gpus`` (simulated GPUs, by index, that
        the runtime should drive when ``power_source`` is injected), ``strategy`` ("grid" or
        "adaptive"; default the profile's ``sweep.strategy``)."""
        self.profile = profile
        self.out_dir = Path(out_dir)
        self.profile_path = profile_path
        self._events = EventSink(listener)
        self.store = RunStore(self.out_dir, record_format)
        self._power_source = power_source
        self._limiter = limiter
        self._runtime = runtime
        self._clock_factory = clock_factory
        self._allow_simulated = allow_simulated
        self._requests = requests
        self._limits_state_path = Path(limits_state_path) if limits_state_path is not None else None
        self._sim_gpus = sim_gpus
        self._configs = profile.configs()
        self.strategy = strategy or profile.sweep.strategy
        self.plan: Plan | None = None
        self._flags = Flags()
        self._drain = threading.Event()
        self._gpus: GpuSetup | None = None
        self._lock: Any = None
        self._notes: list[str] = []
        self._prepared = False
        self.power_message = ""
        self.power_kind = ""
        self.simulated = False
        self.run_id = ""
        self._signal_count = 0

    # -- public API ----------------------------------------------------------------------------
    @property
    def source(self) -> PowerSource | None:
        """The power source in use (after :meth:`prepare`)."""
        return self._gpus.source if self._gpus is not None else self._power_source

    @property
    def runtime(self) -> Runtime | None:
        return self._runtime

    @property
    def requests(self) -> list[Request] | None:
        """The workload (after :meth:`prepare`)."""
        return self._requests

    def configs(self) -> list[Config]:
        """Every configuration of the sweep, in run order."""
        return list(self._configs)

    def pending(self) -> list[Config]:
        """Configurations without a record in the run directory yet (skipped ones included)."""
        done = self.store.completed_keys()
        return [c for c in self._configs if c.key() not in done]

    def request_skip(self, key: str | None = None) -> None:
        """Stop the current configuration (record ``skipped``; it runs again on resume), go on
        with the next. Thread-safe. ``key`` (a cluster run's target, see
        :meth:`.cluster.driver.ClusterRunner.request_skip`) is not needed here: one host runs one
        configuration at a time, and only a cluster run's app sends one."""
        self._flags.request_skip()

    def request_stop(self) -> None:
        """Stop the current configuration and the sweep, cleanly. Thread-safe. The runtime's
        child processes are killed at once (``kill_children`` where the runtime has it): the
        stopped configuration writes no record, so nothing of it is kept anyway."""
        self._flags.request_stop(self._runtime)

    def request_drain(self) -> None:
        """Finish the configuration running now (written as usual), start no other, end the
        sweep: ``stopped`` when configurations are left (a later run on the same directory resumes
        them, an adaptive search included). Thread-safe."""
        if not self._drain.is_set():
            self._drain.set()
            self._emit(LogLine(line="drain requested: the running configuration finishes, then the sweep stops"))

    # -- preparation ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Open the power source, check GPUs and limits, load the workload, write the manifest.
        Raises InputError (nothing changed) on bad input. Called by :meth:`run` if needed."""
        if self._prepared:
            return
        fresh = not self.out_dir.exists()
        try:
            self._prepare()
        except (InputError, Cancelled):
            if fresh:  # a failed validation leaves no empty run directory behind
                self._release()
                self.store.remove_if_unused()
            raise

    def _release(self) -> None:
        if self._gpus is not None:
            self._gpus.release()
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def _prepare(self) -> None:
        profile = self.profile
        src = self.profile_path or ""
        if self._lock is None:
            # Two runs into one directory would mix records: the second is refused, naming
            # the holder. Held until this process ends the run (or exits).
            lock = self.store.lock()
            lock.__enter__()
            self._lock = lock
        manifest = open_run_dir(self.store, profile)
        gpus = open_gpus(profile, power_source=self._power_source, limiter=self._limiter,
                         clock_factory=self._clock_factory, allow_simulated=self._allow_simulated,
                         sim_gpus=self._sim_gpus, limits_state_path=self._limits_state_path, profile_path=src)
        self._gpus = gpus
        self.power_message, self.power_kind, self.simulated = gpus.message, gpus.kind, gpus.simulated
        if manifest is not None:  # a resume: the same GPU model and power source, or refused
            self._notes += check_resume_hardware(manifest, gpus.kind, socket.gethostname(), gpus.source.gpus(),
                                                 gpu_pool(profile, gpus.source), str(self.store.manifest_path))
        if self._runtime is None:
            from .runtimes import get_runtime

            self._runtime = get_runtime(profile.runtime, source=src)
        check(profile, self._configs, gpus, self.out_dir, src)
        self._notes += gpus.notes
        if self._requests is None:
            self._requests = self._load_requests()
        if not self._requests:
            raise InputError(self.profile_path or "", "dataset", "the dataset produced no requests")
        self.run_id = manifest.run_id if manifest is not None else uuid.uuid4().hex[:12]
        self._write_manifest(created=manifest.created_unix_s if manifest else time.time(), finished=False)
        self._prepared = True

    def _load_requests(self) -> list[Request]:
        return load_workload(self.profile, self.profile_path, self._runtime, self._notes.append,
                             cancel=self._flags.stop)

    def _write_manifest(self, *, created: float, finished: bool) -> None:
        assert self._gpus is not None
        self.store.write_manifest(build_manifest(
            run_id=self.run_id, created_unix_s=created, profile=self.profile, profile_path=self.profile_path,
            configs=self._configs, source=self._gpus.source, power_kind=self.power_kind, finished=finished))

    # -- events --------------------------------------------------------------------------------
    def _emit(self, event: Event, live: bool = True) -> None:
        self._events.emit(event, live)

    @property
    def listener_errors(self) -> int:
        """Listener exceptions swallowed (a broken UI must not stop a measurement)."""
        return self._events.listener_errors

    # -- signals -------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._signal_count += 1
        self.request_stop()
        if self._signal_count >= 2:
            raise KeyboardInterrupt

    def _install_signals(self) -> dict[int, Any]:
        old: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return old
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is not None:
                old[sig] = signal.signal(sig, self._on_signal)
        return old

    # -- the sweep -----------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run every pending configuration. Blocking; call from a worker thread in the UI."""
        old_handlers = self._install_signals()
        try:
            try:
                self.prepare()
            except Cancelled:  # stopped while the workload was prepared: nothing ran
                return RunSummary(run_dir=str(self.out_dir), completed=0, failed=0, invalid=0,
                                  skipped=len(self.store.completed_keys()), stopped=True)
            return self._run()
        finally:
            self._release()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)

    def _run(self) -> RunSummary:
        done_before = self.store.completed_keys()
        keys = [c.key() for c in self._configs]
        skipped = [k for k in keys if k in done_before]
        counts = {"ok": 0, "failed": 0, "invalid": 0, "skipped": 0}
        try:
            self._events.open(self.store.live_path())
        except OSError:
            pass  # no live.jsonl: the listener still gets every event
        try:
            self._emit(RunStarted(run_id=self.run_id, run_dir=str(self.out_dir), configs=keys, skipped=skipped,
                                  power_source=self.power_kind, simulated=self.simulated))
            for line in [self.power_message, *self._notes]:
                if line:
                    self._emit(LogLine(line=line))
            self._notes = []
            total = len(self._configs)
            index_of = {c.key(): i for i, c in enumerate(self._configs)}
            plan = self.plan = self._plan()
            if plan.strategy == "adaptive":  # a resumed search's pruned rows and ETA, before its first configuration
                self._emit(plan.event())
            pool = gpu_pool(self.profile, self._gpus.source)  # type: ignore[union-attr]
            drained = False  # a configuration was left for a later run by request_drain
            for cfg in plan:
                if self._flags.stop.is_set():
                    break
                if self._drain.is_set():
                    drained = True
                    self._emit(LogLine(line="drained: the sweep stops here; the configurations left "
                                            "resume on a later run of this directory"))
                    break
                if self.store.find_record(cfg.key()) is not None:
                    plan.already_done(cfg)  # written meanwhile (or unreadable): never proposed again
                    continue
                record = ConfigRun(
                    profile=self.profile, cfg=cfg, index=index_of[cfg.key()], total=total,
                    next_cfg=plan.next_hint(cfg),
                    requests=self._requests_for(cfg), indices=pool[: cfg.num_gpus], gpus=self._gpus,  # type: ignore[arg-type]
                    runtime=self._runtime, store=self.store, run_id=self.run_id,  # type: ignore[arg-type]
                    flags=self._flags, emit=self._emit, profile_path=self.profile_path or "",
                    adaptive=plan.early_stop,
                ).run()
                if record is None:  # stopped
                    break
                counts[record.status] += 1
                plan.observe(cfg, record)
                self._emit(plan.event())
            stopped = self._flags.stop.is_set() or drained
            if not stopped and not self._drain.is_set():
                self._verify_reuse(plan, pool)
            elif not stopped and shared_batch(self.profile) is not None:  # a drain starts no measurement
                self._emit(LogLine(line="server reuse check not run (drained); a later run of this directory runs it"))
            for line in plan.finish(stopped):
                self._emit(LogLine(line=line))
            if not (set(keys) - self.store.completed_keys()) or (plan.done() and not stopped):
                self._write_manifest(created=self._manifest_created(), finished=True)
            self._emit(RunFinished(completed=counts["ok"] + counts["invalid"], failed=counts["failed"],
                                   invalid=counts["invalid"], stopped=stopped, skipped=counts["skipped"]))
        finally:
            # A runtime that keeps a server between configurations shuts it down here.
            close = getattr(self._runtime, "close", None)
            if close is not None:
                close()
            self._events.close()
        return RunSummary(run_dir=str(self.out_dir), completed=counts["ok"] + counts["invalid"],
                          failed=counts["failed"], invalid=counts["invalid"], skipped=len(skipped),
                          stopped=stopped)

    def _verify_reuse(self, plan: Plan, pool: list[int]) -> None:
        """With one server shared across max_num_seqs: measure the recommendation again on a
        relaunched server (``verify/``) and say whether the two agree."""
        shared, key = shared_batch(self.profile), plan.recommended()
        if shared is None:
            return
        if key is None or plan.records[key].config.batch >= shared:  # where the cap matters: a smaller B
            below = [r for r in plan.records.values() if r.status in ("ok", "invalid") and r.config.batch < shared
                     and r.energy_per_request_j is not None]
            key = min(below, key=lambda r: (r.status != "ok", r.energy_per_request_j)).config_key if below else key
        if key is None:
            return
        cfg = next(c for c in self._configs if c.key() == key)
        if (self.out_dir / VERIFY_DIR / "records").is_dir() and RunStore(self.out_dir / VERIFY_DIR).find_record(key):
            return  # already checked (a resumed run)

        def run_one(c: Config, where: Path):  # noqa: ANN202
            store = RunStore(where, self.store.fmt)
            store.ensure()
            return ConfigRun(profile=relaunch_profile(self.profile), cfg=c, index=self._configs.index(c),
                             total=len(self._configs), next_cfg=None, requests=self._requests_for(c),
                             indices=pool[: c.num_gpus], gpus=self._gpus, runtime=self._runtime,  # type: ignore[arg-type]
                             store=store, run_id=self.run_id, flags=self._flags, emit=self._emit,
                             profile_path=self.profile_path or "", adaptive=plan.early_stop).run()

        self._emit(LogLine(line=f"server reuse check: measuring {key} again on a relaunched server"))
        check = verify_reuse(self.out_dir, plan.records[key], cfg, run_one)
        if check is not None:
            self._emit(LogLine(line=check.line))

    def _plan(self) -> Plan:
        """The grid, or the adaptive search, over the configurations without a record yet."""
        existing = self.store.scan({c.key() for c in self._configs}, heads=True).records
        kw = dict(n_requests=lambda c: request_count(self.profile, len(self._requests or []), c),
                  batches=self.profile.load.batches,
                  target_s=self.profile.target.value_s())
        if self.strategy == "adaptive":
            return AdaptivePlan(self._configs, existing, spec=self.profile.adaptive, run_dir=self.out_dir, **kw)
        return Plan(self._configs, existing, **kw)

    def _manifest_created(self) -> float:
        m = self.store.read_manifest()
        return m.created_unix_s if m is not None else time.time()

    def _requests_for(self, cfg: Config) -> list[Request]:
        return requests_for(self.profile, self._requests or [], cfg)
