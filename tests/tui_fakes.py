"""Seeded fakes for the TUI tests and benchmark: a runner that emits a realistic event stream
(ramp-up, saturated steady state, ramp-down) and writes real records, a fake power limiter,
and a GPU probe. Not a simulation of anything: shapes only, deterministic for a seed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import msgspec

from mle_tui.core.config import Config
from mle_tui.core.events import (
    BatchSampleEvent, ConfigFinished, ConfigStarted, LogLine, PowerSample, RequestProgress,
    RunFinished, RunStarted, SteadyUpdate, encode_event,
)
from mle_tui.core.profile import Profile
from mle_tui.core.toml_text import struct_to_toml
from mle_tui.core.records import (
    Accounting, BatchTimeline, Gate, GpuInfo, Hardware, Latency, LatencyStats, Manifest, PowerTimeline,
    Record, SteadyState, Throughput,
)
from mle_tui.core.runner import RunSummary
from mle_tui.tui.gpus import GpuProbe

DEMO_TOML = """\
name = "tui-demo"
description = "Fake sweep for the TUI tests"
task = "chat"
runtime = "sim"

[model]
id = "sim/llama-3.1-8b"
weights = "dummy"

[dataset]
name = "synthetic"
num_requests = 96

[sweep]
max_num_seqs = "8..32 x2"
power_limit_w = [400, 700]

[steady_state]
min_window_s = 5

[target]
value = "30ms"

[gpu]
simulated = true
"""

DIFFUSION_TOML = """\
name = "tui-diffusion"
task = "text-to-image"
runtime = "sim"

[model]
id = "sim/sd-2.1"
weights = "dummy"

[dataset]
name = "synthetic"
num_requests = 32

[sweep]
batch_size = "1..4 x2"
num_inference_steps = 25

[gpu]
simulated = true
"""


def write_profile(tmp: Path, text: str = DEMO_TOML, name: str = "tui-demo.toml") -> Path:
    p = Path(tmp) / name
    p.write_text(text)
    return p


def no_gpu_probe() -> GpuProbe:
    return GpuProbe(error="NVML Shared Library Not Found")


def h100_probe() -> GpuProbe:
    gpus = [GpuInfo(index=i, name="NVIDIA H100 80GB HBM3", power_limit_w=700.0, min_power_limit_w=200.0,
                    max_power_limit_w=700.0, default_power_limit_w=700.0, memory_total_mib=81559.0)
            for i in range(2)]
    return GpuProbe(gpus=gpus, driver_version="570.86.15")


class FrozenClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeLimiter:
    """Power limiter double; optionally mirrors its state into a file (for subprocess tests)."""

    def __init__(self, original_w: float = 700.0, state_file: Path | None = None) -> None:
        self.original_w = original_w
        self.limits: dict[int, float] = {}
        self.state_file = state_file
        self.history: list[tuple[int, float]] = []

    def get_limit_w(self, index: int) -> float:
        return self.limits.get(index, self.original_w)

    def set_limit_w(self, index: int, limit_w: float) -> None:
        self.limits[index] = float(limit_w)
        self.history.append((index, float(limit_w)))
        if self.state_file is not None:
            tmp = self.state_file.with_suffix(".tmp")  # another process reads it: never half-written
            tmp.write_text(f"{limit_w}\n")
            tmp.replace(self.state_file)

    def limit_range_w(self, index: int) -> tuple[float, float]:
        return 200.0, 700.0


class FakeRunner:
    """Runner double with the SweepRunner API (run / request_skip / request_stop / configs)."""

    def __init__(self, profile: Profile, out_dir: Path, listener=None, profile_path: str | None = None, *,
                 seed: int = 0, sample_delay_s: float = 0.0, pause_at_steady: threading.Event | None = None,
                 spawn_child: bool = False, limiter: FakeLimiter | None = None, gpus: int = 1,
                 max_samples: int = 600, memory_power: bool = True, log_every: int = 25,
                 write_live: bool = True, finish_manifest: bool = True,
                 pause_at: tuple[int, float] | None = None) -> None:
        self.profile = profile
        self.out_dir = Path(out_dir)
        self.listener = listener or (lambda e: None)
        self.profile_path = profile_path
        self.rng = random.Random(seed)
        self.sample_delay_s = sample_delay_s
        self.pause_at_steady = pause_at_steady
        self.spawn_child = spawn_child
        self.limiter = limiter
        self.gpus = gpus
        self.max_samples = max_samples
        self.memory_power = memory_power
        self.log_every = log_every
        self.write_live = write_live
        self.finish_manifest = finish_manifest
        self._stop = threading.Event()
        self._skip = threading.Event()
        #: Block at (configuration index, run-clock t_s) until ``resume`` is set.
        self.pause_at = pause_at
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.child: subprocess.Popen | None = None
        self.child_pgids: list[int] = []
        self.steady_reached = threading.Event()
        self.started = threading.Event()
        self._live = None
        self.run_id = f"{profile.name}-fake"

    # -- API ------------------------------------------------------------------------------
    def configs(self) -> list[Config]:
        return self.profile.configs()

    def pending(self) -> list[Config]:
        done = {p.stem for p in (self.out_dir / "records").glob("*.json")} if (self.out_dir / "records").is_dir() else set()
        return [c for c in self.configs() if c.key() not in done]

    def request_skip(self, key: str | None = None) -> None:
        self._skip.set()

    def request_stop(self) -> None:
        self._stop.set()
        self.resume.set()
        if self.pause_at_steady is not None:
            self.pause_at_steady.set()

    # -- run --------------------------------------------------------------------------------
    def _emit(self, event) -> None:
        if self._live is not None:
            self._live.write(encode_event(event) + b"\n")
            self._live.flush()
        self.listener(event)

    def run(self) -> RunSummary:
        (self.out_dir / "records").mkdir(parents=True, exist_ok=True)
        configs = self.configs()
        done = {c.key() for c in configs} - {c.key() for c in self.pending()}
        manifest = Manifest(run_id=self.run_id, created_unix_s=1_700_000_000.0, host="fakehost",
                            power_source="simulated",
                            gpus=[GpuInfo(index=i, name="Simulated H100 SXM", power_limit_w=700.0,
                                          min_power_limit_w=200.0, max_power_limit_w=700.0) for i in range(self.gpus)],
                            profile_path=self.profile_path, profile_toml=struct_to_toml(self.profile),
                            configs=[c.key() for c in configs], pid=os.getpid())
        (self.out_dir / "run.json").write_bytes(msgspec.json.encode(manifest))
        self._live = open(self.out_dir / "live.jsonl", "ab") if self.write_live else None
        counts = {"ok": 0, "failed": 0, "invalid": 0}
        try:
            self.started.set()
            self._emit(RunStarted(run_id=self.run_id, run_dir=str(self.out_dir), configs=[c.key() for c in configs],
                                  skipped=sorted(done), power_source="simulated", simulated=True))
            for i, c in enumerate(configs):
                if c.key() in done:
                    continue
                if self._stop.is_set():
                    break
                status = self._run_config(i, len(configs), c)
                if status is None:
                    break
                counts[status] += 1
        finally:
            self._cleanup()
            stopped = self._stop.is_set()
            self._emit(RunFinished(completed=counts["ok"] + counts["invalid"], failed=counts["failed"],
                                   invalid=counts["invalid"],
                                   stopped=stopped))
            if self._live is not None:
                self._live.close()
            if self.finish_manifest:
                manifest.finished = True
                (self.out_dir / "run.json").write_bytes(msgspec.json.encode(manifest))
        return RunSummary(run_dir=str(self.out_dir), completed=counts["ok"] + counts["invalid"],
                          failed=counts["failed"],
                          invalid=counts["invalid"], skipped=len(done), stopped=self._stop.is_set())

    def _cleanup(self) -> None:
        if self.child is not None:
            try:
                os.killpg(self.child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.child.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.child.pid, signal.SIGKILL)
                self.child.wait()
            self.child = None
        if self.limiter is not None:
            for idx in list(self.limiter.limits):
                self.limiter.set_limit_w(idx, self.limiter.original_w)

    def _model(self, c: Config):
        B = c.batch
        pl = float(c.power_limit_w or 700)
        slow = (700.0 / pl) ** 0.35
        tpot = (0.010 + 0.00025 * B) * slow
        p_sat = min(pl, 75.0 + 625.0 * (0.45 + 0.55 * min(1.0, B / 96.0)))
        return B, pl, tpot, p_sat

    def _run_config(self, index: int, total: int, c: Config) -> str | None:
        self._skip.clear()
        rng = self.rng
        B, pl, tpot, p_sat = self._model(c)
        n_req = self.profile.dataset.num_requests * self.profile.dataset.repeats
        out_tokens = 200
        if self.limiter is not None and c.power_limit_w is not None:
            for g in range(self.gpus):
                self.limiter.set_limit_w(g, c.power_limit_w)
        if self.spawn_child:
            self.child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
            self.child_pgids.append(self.child.pid)
        self._emit(ConfigStarted(key=c.key(), index=index, total=total, config=c, label=c.label(),
                                 num_requests=n_req, power_limit_w=[pl] * self.gpus))
        # Timeline shape (seconds): ramp-up, saturated, drain.
        ramp = 2.0
        sat = max(3.0, (n_req - B) * out_tokens * tpot / B)
        drain = out_tokens * tpot
        total_s = ramp + sat + drain
        dt = 0.1
        n = min(self.max_samples, int(total_s / dt) + 1)
        dt = total_s / (n - 1)
        t_s, tot, run_l, wait_l, per = [], [], [], [], []
        steady_start = None
        steady_end = None
        energy = 0.0
        st_energy, st_tokens, st_batch = 0.0, 0.0, []
        done_req = 0
        for k in range(n):
            t = k * dt
            if t < ramp:
                running = B * t / ramp
            elif t < ramp + sat:
                running = float(B)
            else:
                running = B * max(0.0, 1 - (t - ramp - sat) / drain)
            waiting = max(0.0, (n_req - B) * (1 - min(1.0, max(0.0, (t - ramp) / sat))))
            util = running / B
            p = 75.0 + (p_sat - 75.0) * util + rng.gauss(0, 6)
            pg = [p / self.gpus + rng.gauss(0, 2) for _ in range(self.gpus)]
            total_w = sum(pg)
            mem = 43.0 + 47.0 * util if self.memory_power else None
            energy += total_w * dt
            t_s.append(t); tot.append(total_w); run_l.append(running); wait_l.append(waiting); per.append(pg)
            self._emit(PowerSample(t_s=t, per_gpu_w=pg, total_w=total_w, memory_w=mem,
                                   average_w=total_w))
            self._emit(BatchSampleEvent(t_s=t, running=running, waiting=waiting, kv_cache_usage=util * 0.8))
            if steady_start is None and running >= B - 1e-9:
                steady_start = t
                self._emit(SteadyUpdate(start_s=t, end_s=None))
                self.steady_reached.set()
                if self.pause_at_steady is not None:
                    self.pause_at_steady.wait()
            if steady_start is not None and steady_end is None:
                if running >= B - 1e-9:
                    st_energy += total_w * dt
                    st_tokens += running / tpot * dt
                    st_batch.append(running)
                    if k % 20 == 0:
                        self._emit(SteadyUpdate(start_s=steady_start, end_s=None,
                                                mean_batch=sum(st_batch) / len(st_batch),
                                                energy_per_token_j=st_energy / max(st_tokens, 1e-9),
                                                gates={"window": t - steady_start >= self.profile.steady_state.min_window_s,
                                                       "batch": True, "energy": True}))
                else:
                    steady_end = t
            new_done = int(n_req * max(0.0, min(1.0, (t - ramp * 0.5) / (total_s - ramp * 0.5))))
            if new_done != done_req:
                done_req = new_done
                self._emit(RequestProgress(done=done_req, total=n_req, t_s=t))
            if self.log_every and k % self.log_every == 0:
                self._emit(LogLine(line=f"[fake] t={t:6.1f}s running={running:5.1f} waiting={waiting:6.1f} "
                                        f"power={total_w:6.1f} W"))
            if self.pause_at is not None and self.pause_at[0] == index and t >= self.pause_at[1] \
                    and not self.paused.is_set():
                self.paused.set()
                self.resume.wait()
            if self.sample_delay_s:
                self._stop.wait(self.sample_delay_s)
            if self._stop.is_set() or self._skip.is_set():
                reason = "stopped by user" if self._stop.is_set() else "skipped by user"
                self._emit(ConfigFinished(key=c.key(), status="failed", reasons=[reason],
                                          energy_per_request_j=None, latency_value_s=None, record_path=""))
                self._write_record(c, "failed", [reason], t_s, tot, run_l, wait_l, per, None, energy, tpot,
                                   out_tokens, n_req)
                if self.child is not None:
                    self._cleanup_child()
                return None if self._stop.is_set() else "failed"
        if steady_end is None:
            steady_end = t_s[-1]
        window = steady_end - steady_start
        mean_b = sum(st_batch) / max(1, len(st_batch))
        ept = st_energy / max(st_tokens, 1e-9)
        gates = [
            Gate(name="window", ok=window >= self.profile.steady_state.min_window_s, value=window,
                 threshold=self.profile.steady_state.min_window_s, message=f"steady window {window:.1f} s"),
            Gate(name="batch", ok=mean_b >= 0.85 * B, value=mean_b, threshold=0.85 * B,
                 message=f"mean batch {mean_b:.1f}"),
            Gate(name="energy", ok=0 < ept <= 100, value=ept, threshold=100.0, message=f"{ept:.3f} J/token"),
        ]
        status = "ok" if all(g.ok for g in gates) else "invalid"
        reasons = [g.message + " below threshold" for g in gates if not g.ok]
        self._emit(SteadyUpdate(start_s=steady_start, end_s=steady_end, mean_batch=mean_b, energy_per_token_j=ept,
                                gates={g.name: g.ok for g in gates}))
        steady = SteadyState(rule="saturation", start_s=steady_start, end_s=steady_end, energy_j=st_energy,
                             tokens=int(st_tokens), mean_batch=mean_b, gates=gates)
        path = self._write_record(c, status, reasons, t_s, tot, run_l, wait_l, per, steady, energy, tpot,
                                  out_tokens, n_req)
        e_req = ept * out_tokens
        self._emit(ConfigFinished(key=c.key(), status=status, reasons=reasons, energy_per_request_j=e_req,
                                  latency_value_s=tpot, record_path=str(path)))
        self._cleanup_child()
        return status

    def _cleanup_child(self) -> None:
        if self.child is not None:
            try:
                os.killpg(self.child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self.child.wait()
            self.child = None

    def _write_record(self, c, status, reasons, t_s, tot, run_l, wait_l, per, steady, energy, tpot, out_tokens,
                      n_req) -> Path:
        ept = steady.energy_j / max(steady.tokens, 1) if steady else None
        e_req = ept * out_tokens if ept else None
        dur = t_s[-1] if t_s else 0.0
        avg_w = energy / dur if dur else None
        tdp = 700.0 * self.gpus * (steady.duration_s if steady else dur)
        price, carbon = self.profile.cost.electricity_usd_per_kwh, self.profile.cost.carbon_g_per_kwh
        acc = Accounting(price_usd_per_kwh=price, carbon_g_per_kwh=carbon,
                         cost_per_1k_requests_usd=e_req * 1000 / 3.6e6 * price if e_req else None,
                         carbon_per_1k_requests_g=e_req * 1000 / 3.6e6 * carbon if e_req else None)
        stats = LatencyStats(mean_s=tpot, p50_s=tpot, p90_s=tpot * 1.1, p99_s=tpot * 1.3, count=n_req,
                             formula="tpot")
        rec = Record(
            run_id=self.run_id, config_key=c.key(), config=c, status=status, reasons=list(reasons), simulated=True,
            task=self.profile.task, runtime=self.profile.runtime, model=self.profile.model.id,
            weights=self.profile.model.weights,
            hardware=Hardware(power_source="simulated", gpu_names=["Simulated H100 SXM"] * self.gpus,
                              gpu_indices=list(range(self.gpus)), tdp_w=700.0,
                              power_limit_w=[float(c.power_limit_w or 700)] * self.gpus,
                              original_power_limit_w=[700.0] * self.gpus),
            started_unix_s=1_700_000_000.0, duration_s=dur, num_requests=n_req, steady_state=steady,
            total_energy_j=energy, energy_per_request_j=e_req, energy_per_token_j=ept, avg_power_w=avg_w,
            latency=Latency(tpot=stats, ttft=LatencyStats(mean_s=0.05, p50_s=0.05, p90_s=0.08, p99_s=0.1,
                                                          count=n_req, formula="ttft")),
            latency_metric="tpot", latency_value_s=tpot if status != "failed" else None,
            throughput=Throughput(requests_per_s=c.batch / (tpot * out_tokens),
                                  output_tokens_per_s=c.batch / tpot),
            mean_output_tokens=float(out_tokens),
            tdp_estimate_j=tdp if steady else None,
            tdp_overestimation=tdp / steady.energy_j if steady and steady.energy_j else None,
            accounting=acc,
            power_timeline=PowerTimeline(t_s=list(t_s), total_w=list(tot),
                                         per_gpu_w={str(g): [p[g] for p in per] for g in range(self.gpus)}),
            batch_timeline=BatchTimeline(t_s=list(t_s), running=list(run_l), waiting=list(wait_l), source="fake"),
            per_gpu=_fake_per_gpu(per, self.gpus, dur) if self.gpus > 1 and per else [],
        )
        path = self.out_dir / "records" / f"{c.key()}.json"
        path.write_bytes(msgspec.json.encode(rec))
        return path


def _fake_per_gpu(per, gpus: int, dur: float) -> list:
    from mle_tui.core.records import GpuEnergy

    means = [sum(p[g] for p in per) / len(per) for g in range(gpus)]
    total = sum(means) or 1.0
    return [GpuEnergy(index=g, energy_j=m * dur, avg_power_w=m, share=m / total, utilisation_pct=97.0)
            for g, m in enumerate(means)]


def fake_factory(**kw):
    """A runner factory for MleApp that builds FakeRunners and remembers them."""
    made: list[FakeRunner] = []

    def factory(profile, out_dir, listener, profile_path):
        r = FakeRunner(profile, out_dir, listener, profile_path, **kw)
        made.append(r)
        return r

    factory.made = made  # type: ignore[attr-defined]
    return factory


async def wait_for(pilot, cond, timeout_s: float = 20.0, step_s: float = 0.05) -> None:  # noqa: ANN001
    """Let a Textual pilot run until ``cond()`` holds; AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {cond}")
        await pilot.pause(step_s)
