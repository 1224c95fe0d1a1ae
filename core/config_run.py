"""One configuration, start to record: set the power limit (guarded), sample power, run the
runtime with a :class:`~.measure.recorder.TraceRecorder` fed through its context, freeze the
trace, analyse it (pure), write the trace and the record, restore the limit.

The live view gets typed events (power, batch, steady window, progress, log) as the
configuration runs; the record comes only from :func:`~.measure.analysis.analyse` on the
frozen trace, so ``mle-tui reanalyse`` reproduces it exactly.
"""

from __future__ import annotations

import math
import os
import threading
import time
import traceback
from collections.abc import Callable

import msgspec

from .config import Config
from .dataset_types import Request
from .errors import InputError, RunFailure
from .events import (BatchProgress, BatchSampleEvent, ConfigFinished, ConfigStarted, Event, HealthSample, LogLine,
                     PowerSample, RequestProgress, SteadyUpdate)
from .adaptive.hook import early_stop_fact, early_stop_monitor
from .adaptive.spec import AdaptiveSpec
from .gpu_setup import GpuSetup, guard_for, hardware
from .measure.analysis import analyse
from .measure.live import LiveSteady
from .measure.phases import mark_hook
from .measure.sampler import PowerSampler
from .measure.recorder import TraceRecorder
from .measure.trace import encode_trace, pack_us
from .power.base import PowerReading
from .power.gpu_lock import neighbour_lines
from .power.health import StrangerLog, process_tree, read_health
from .power.limits import PowerLimitGuard
from .profile import Profile
from .records import BatchRow, Record, RequestRow
from .runtimes.base import BatchSample, Runtime, RuntimeContext, RuntimeResult
from .store import RunStore, atomic_write, encode_record

#: Power and batch events go to live.jsonl at most this often (run-clock seconds apart).
LIVE_MIN_INTERVAL_S = 0.25
#: Progress events at most this often (run-clock seconds apart), plus the last one.
PROGRESS_MIN_INTERVAL_S = 0.25
#: Power fields are sampled at this period, s.
SAMPLE_PERIOD_S = 0.1
#: A utilisation reading counts only if the run clock moved less than this while it was read, s.
UTIL_STAMP_TOLERANCE_S = 0.25
#: The node's GPUs outside the configuration are sampled at this period, s.
IDLE_SAMPLE_PERIOD_S = 1.0


class Flags:
    """The sweep's stop and skip requests, shared with the runner (thread-safe)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.skip = threading.Event()
        self.cancel: threading.Event | None = None

    def request_skip(self) -> None:
        """End the running configuration as skipped (it runs again on resume), go on."""
        self.skip.set()
        if self.cancel is not None:
            self.cancel.set()

    def request_stop(self, runtime: object = None) -> None:
        """End the running configuration and the sweep. The runtime's child processes are
        killed at once (``kill_children`` where it has one): a stopped configuration writes no
        record, so nothing of it is kept anyway."""
        self.stop.set()
        if self.cancel is not None:
            self.cancel.set()
            kill = getattr(runtime, "kill_children", None)
            if kill is not None:
                try:
                    kill()
                except Exception:  # noqa: BLE001 - best effort; the runtime also reacts to cancel
                    pass


def trace_relpath(key: str) -> str:
    return f"traces/{key}.msgpack.gz"


class HealthWatch:
    """GPU health of the configuration's GPUs about once a second (wall clock) in its own
    thread: a HealthSample event each time, and the other processes seen on those GPUs."""

    PERIOD_S = 1.0

    def __init__(self, kind: str, indices: list[int], sim_gpus: list | None, clock, emit,  # noqa: ANN001
                 on_utilisation=None) -> None:  # noqa: ANN001
        self.kind, self.indices, self.sim_gpus, self.clock, self._emit = kind, indices, sim_gpus, clock, emit
        self._on_utilisation = on_utilisation
        self._own: set[int] = set()
        self.strangers = StrangerLog()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpu-health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                # Every process that was ever ours during the configuration stays ours: a
                # server's workers outlive their parent for a moment when it shuts down.
                self._own |= process_tree(os.getpid())
                t0_s = self.clock.now_s()
                readings = read_health(self.kind, self.indices, sim_gpus=self.sim_gpus, own_pids=self._own)
                self.strangers.add(readings)
                t_s = self.clock.now_s()
                # A reading is placed on the run clock only when the clock barely moved while it
                # was taken (a virtual clock can jump seconds meanwhile).
                if self._on_utilisation is not None and t_s - t0_s <= UTIL_STAMP_TOLERANCE_S:
                    by_index = {r.index: r.utilisation_pct for r in readings}
                    self._on_utilisation(t_s, [by_index.get(i) for i in self.indices])
                self._emit(HealthSample(t_s=t_s, gpus=readings))
            except Exception:  # noqa: BLE001 - health is a view; it must not stop a measurement
                pass
            self._stop.wait(self.PERIOD_S)


class ConfigRun:
    def __init__(self, *, profile: Profile, cfg: Config, index: int, total: int, next_cfg: Config | None,
                 requests: list[Request], indices: list[int], gpus: GpuSetup, runtime: Runtime,
                 store: RunStore, run_id: str, flags: Flags, emit: Callable[[Event, bool], None],
                 profile_path: str = "", adaptive: "AdaptiveSpec | None" = None) -> None:
        self.profile, self.cfg, self.index, self.total, self.next_cfg = profile, cfg, index, total, next_cfg
        self.requests, self.indices, self.gpus, self.runtime = requests, indices, gpus, runtime
        self.store, self.run_id, self.flags, self._emit = store, run_id, flags, emit
        self.profile_path = profile_path
        self.adaptive = adaptive  # early stopping on (adaptive sweep) when set
        self.early = None
        self.rec = TraceRecorder()
        self._measured: list[BatchRow] = []
        self.health: HealthWatch | None = None
        self._last_power = self._last_batch = self._last_progress = -math.inf

    def emit(self, event: Event, live: bool = True) -> None:
        self._emit(event, live)

    # -- what the runtime and the sampler call -----------------------------------------------
    def _on_power(self, r: PowerReading) -> None:
        live = r.t_s - self._last_power >= LIVE_MIN_INTERVAL_S
        if live:
            self._last_power = r.t_s
        self.emit(PowerSample(t_s=r.t_s, per_gpu_w=list(r.instant_w), total_w=math.fsum(r.instant_w),
                              memory_w=None if r.memory_w is None else math.fsum(r.memory_w),
                              average_w=None if r.average_w is None else math.fsum(r.average_w)), live)

    def _on_batch(self, s: BatchSample) -> None:
        self.rec.batch(s.t_s, s.running, s.waiting, s.kv_cache_usage, s.preemptions_total,
                       s.generation_tokens_total, s.itl_sum_s, s.itl_count)
        live = s.t_s - self._last_batch >= LIVE_MIN_INTERVAL_S
        if live:
            self._last_batch = s.t_s
        self.emit(BatchSampleEvent(t_s=s.t_s, running=s.running, waiting=s.waiting,
                                   kv_cache_usage=s.kv_cache_usage), live)
        if self.steady is not None:
            self.steady.on_batch(s.t_s, s.running, s.waiting, s.generation_tokens_total)
            if self.early is not None:
                self.early.on_batch(s.t_s, s.running, s.generation_tokens_total, *self.steady.current())

    def _on_first_token(self, rid: int, t_s: float) -> None:
        self.rec.first_token(t_s)
        if self.steady is not None:
            self.steady.on_first_token(t_s)

    def _on_request(self, row: RequestRow) -> None:
        done = self.rec.request(row)
        if row.end_s is not None and self.steady is not None:
            self.steady.on_finished(row.end_s)
        total = len(self.requests)
        t = row.end_s if row.end_s is not None else self._last_progress
        if done >= total or t - self._last_progress >= PROGRESS_MIN_INTERVAL_S:
            self._last_progress = t
            self.emit(RequestProgress(done=done, total=total, t_s=t))

    def _on_batch_done(self, row: BatchRow) -> None:
        self.rec.batch_done(row)
        tag = " (warm-up)" if row.warmup else ""
        self.emit(LogLine(line=f"batch {row.index}{tag}: {row.latency_s:.2f} s, {row.energy_j:.0f} J"))
        if not row.warmup:
            self._measured.append(row)
            images = sum(b.batch_size for b in self._measured)
            energy = math.fsum(b.energy_j for b in self._measured)
            self.emit(BatchProgress(done=len(self._measured), total=self.profile.load.batches,
                                    batch_size=row.batch_size, t_s=row.end_s,
                                    energy_per_image_j=energy / images if images and math.isfinite(energy) else None))

    def _on_log(self, line: str) -> None:
        self.rec.log_line(line)
        self.emit(LogLine(line=line))

    # -- the configuration -------------------------------------------------------------------
    def run(self) -> Record | None:
        """Run it and write its trace and record. Returns the record, or None when the sweep
        was stopped during it (nothing written: it runs again on resume)."""
        cfg, key, gpus, flags = self.cfg, self.cfg.key(), self.gpus, self.flags
        clock = gpus.clock_factory()
        use_clock = getattr(gpus.source, "use_clock", None)
        if use_clock is not None:
            use_clock(clock)
        sim_gpus = [gpus.sim_gpus[i] for i in self.indices] if gpus.sim_gpus is not None else None
        self.steady = (LiveSteady(self.profile.steady_state, cfg.batch, len(self.requests),
                                  lambda ev: self.emit(ev), None) if self.profile.is_llm else None)
        cancel = threading.Event()
        flags.cancel = cancel
        flags.skip.clear()
        if flags.stop.is_set():
            cancel.set()
        started_unix = time.time()
        result: RuntimeResult | None = None
        failure: tuple[str, list[str]] | None = None
        sampler: PowerSampler | None = None
        idle_sampler: PowerSampler | None = None
        neighbours: list[str] = []
        guard = guard_for(gpus, self.indices, cfg.power_limit_w, self.store.root, self.profile_path)
        end_s = 0.0
        try:
            with guard:
                self.emit(ConfigStarted(key=key, index=self.index, total=self.total, config=cfg, label=cfg.label(),
                                        num_requests=len(self.requests), power_limit_w=list(guard.enforced_w),
                                        gpu_indices=list(self.indices)))
                if cfg.power_limit_w is not None:
                    self.emit(LogLine(line=f"{key}: power limit {cfg.power_limit_w} W requested, "
                                           f"enforced {guard.enforced_w} W (was {guard.original_w} W)"))
                for note in getattr(guard, "notes", []):
                    self.emit(LogLine(line=f"{key}: {note}"))
                sampler = PowerSampler(gpus.source, self.indices, clock, SAMPLE_PERIOD_S, listener=self._on_power)
                if self.steady is not None:
                    self.steady._energy_between = sampler.energy_between
                ctx = RuntimeContext(
                    profile=self.profile, config=cfg, requests=self.requests, clock=clock, gpu_indices=self.indices,
                    run_dir=self.store.root, log_path=self.store.log_path(key), cancel=cancel, sim_gpus=sim_gpus,
                    next_config=self.next_cfg, on_batch=self._on_batch, on_first_token=self._on_first_token,
                    on_request=self._on_request, on_batch_done=self._on_batch_done, on_log=self._on_log,
                    energy_between=sampler.energy_between, mark_energy=sampler.mark_now,
                    on_mark=mark_hook(self.rec, self.emit),
                )
                self.early = early_stop_monitor(
                    self.adaptive, profile=self.profile, cfg=cfg, runtime=self.runtime,
                    energy_between=sampler.energy_between, stop_event=ctx.stop_early, mark=self.rec.mark, emit=self.emit)
                sampler.start()
                idle_sampler = self._idle_sampler(clock)
                neighbours = self._neighbours()
                self.rec.mark(clock.now_s(), "start")
                self.health = HealthWatch(gpus.kind, self.indices, sim_gpus, clock, self.emit,
                                          on_utilisation=self.rec.utilisation)
                self.health.start()
                try:
                    result = self.runtime.run(ctx)
                    if cancel.is_set() and (flags.stop.is_set() or flags.skip.is_set()):
                        raise RunFailure("cancelled")
                except RunFailure as exc:
                    reason = str(exc.args[0]) if exc.args else "run failure"
                    tail = exc.args[1] if len(exc.args) > 1 else self.rec.log_tail()
                    if isinstance(tail, str):
                        tail = tail.splitlines()
                    failure = (reason, [str(x) for x in tail][-50:])
                except (InputError, KeyboardInterrupt, SystemExit):
                    raise
                except Exception as exc:  # noqa: BLE001 - a runtime bug must not end the sweep
                    tb = traceback.format_exc().splitlines()
                    failure = (f"runtime error: {type(exc).__name__}: {exc}", (self.rec.log_tail() + tb)[-50:])
                finally:
                    self.health.stop()
                    sampler.stop()
                    if idle_sampler is not None:
                        idle_sampler.stop()
                    neighbours += [n for n in self._neighbours() if n not in neighbours]
                    end_s = clock.now_s()
                    self.rec.mark(end_s, "end")
                    for g in sim_gpus or []:
                        g.set_load(0.0)
        finally:
            flags.cancel = None
        if flags.stop.is_set():
            self.emit(LogLine(line=f"{key}: stopped; no record written (it runs again on resume)"))
            return None
        kind = None
        if failure is not None:
            kind = "skipped" if flags.skip.is_set() else "failed"
            if kind == "skipped":
                failure = ("skipped by user (runs again on resume)", failure[1])
        trace = self._freeze(result, failure, kind, guard, sampler, started_unix, end_s)
        if idle_sampler is not None and len(idle_sampler):
            trace.idle_power = idle_sampler.trace()
        trace.neighbours = neighbours
        return self._write(trace)

    def _neighbours(self) -> list[str]:
        """Other mle-tui sweeps holding GPUs of this host now (their measurements and ours
        interfere: shared power delivery, cooling, PCIe/host): recorded with the record."""
        claim = self.gpus.claim
        if claim is None or not claim.locks:
            return []
        own = {lock.gid for lock in claim.locks.values()}
        try:
            return neighbour_lines(next(iter(claim.locks.values())).state_dir, own)
        except Exception:  # noqa: BLE001 - a view; it must not stop a measurement
            return []

    def _idle_sampler(self, clock) -> PowerSampler | None:  # noqa: ANN001
        """The node's GPUs outside this configuration, sampled once a second beside it (a
        provisioning view for the record; they are read, never changed). None without any."""
        try:
            others = [g.index for g in self.gpus.source.gpus() if g.index not in set(self.indices)]
        except Exception:  # noqa: BLE001 - the view is optional
            return None
        if not others:
            return None
        s = PowerSampler(self.gpus.source, others, clock, IDLE_SAMPLE_PERIOD_S)
        try:
            s.start()
        except Exception as exc:  # noqa: BLE001
            self.emit(LogLine(line=f"{self.cfg.key()}: the node's other GPUs are not sampled: {exc}"))
            return None
        return s

    def _freeze(self, result: RuntimeResult | None, failure: tuple[str, list[str]] | None, kind: str | None,
                guard: PowerLimitGuard, sampler: PowerSampler | None, started_unix: float, end_s: float):  # noqa: ANN202
        p, cfg = self.profile, self.cfg
        res = result or RuntimeResult()
        return self.rec.freeze(
            run_id=self.run_id, config_key=cfg.key(), config=cfg, task=p.task,
            runtime=getattr(self.runtime, "name", p.runtime), model=p.model.id, weights=p.model.weights,
            latency_metric=p.latency_metric(), is_llm=p.is_llm, simulated=self.gpus.simulated or res.simulated,
            hardware=hardware(self.gpus, self.indices, guard), started_unix_s=started_unix, end_s=end_s,
            num_requests=len(self.requests), steady=p.steady_state, cost=p.cost,
            power=sampler.trace() if sampler is not None and len(sampler) else None,
            batch_source=res.batch_source, itl_gaps_us=pack_us(res.itl_gaps_s), token_times_s=res.token_times_s,
            token_counts=res.token_counts, token_counts_exact=getattr(res, "token_counts_exact", False),
            aborted_tokens_in_timeline=getattr(res, "aborted_tokens_in_timeline", False),
            server_output_tokens=res.server_output_tokens,
            requests=list(res.requests), batches=list(res.batches),
            log_tail=list(failure[1]) if failure is not None else list(res.log_tail),
            failure=failure[0] if failure is not None else None, failure_kind=kind,
            warnings=[w for w in [self.health.strangers.reason() if self.health else None] if w],
            early_stop=early_stop_fact(self.early, failure is None, self.requests, exact_lengths=(
                p.model.weights == "dummy" or getattr(self.runtime, "name", "") == "sim")),
            server_mode=res.server_mode,
        )

    def _write(self, trace) -> Record:  # noqa: ANN001
        key = self.cfg.key()
        rel = trace_relpath(key)
        record = analyse(trace, source="live", trace_file=rel)
        try:
            path_t = self.store.root / rel
            path_t.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path_t, encode_trace(trace))
        except OSError as exc:
            self.emit(LogLine(line=f"{key}: trace not written: {exc}"))
            record.analysis = msgspec.structs.replace(record.analysis, trace=None)  # type: ignore[arg-type]
        if record.status == "skipped":
            path = self.store.skipped_record_path(key)
            atomic_write(path, encode_record(record, "json"))
        else:
            try:
                path = self.store.write_record(record)
            except FileExistsError as exc:
                self.emit(LogLine(line=str(exc)))
                path = self.store.find_record(key) or self.store.record_path(key)
            self.store.skipped_record_path(key).unlink(missing_ok=True)
        ss = record.steady_state
        if record.status in ("ok", "invalid"):
            self.emit(SteadyUpdate(start_s=ss.start_s if ss else 0.0, end_s=ss.end_s if ss else None,
                                   mean_batch=ss.mean_batch if ss else None,
                                   energy_per_token_j=record.energy_per_token_j,
                                   gates={g.name: g.ok for g in (ss.gates if ss else [])}))
        self.emit(ConfigFinished(key=key, status=record.status, reasons=list(record.reasons),
                                 energy_per_request_j=record.energy_per_request_j,
                                 latency_value_s=record.latency_value_s, record_path=str(path)))
        return record
