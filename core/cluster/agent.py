"""The node agent: one per cluster node (a Ray actor pinned to it by the driver), owner of
everything that touches hardware there — the power source (NVML, or the simulated GPU with its
node-local device file), the power-limit guard with its node-local state and locks, the runtime
and the load generator. It runs one configuration at a time with
:class:`~..config_run.ConfigRun` against a node-local scratch run directory and hands back the
files written (record, trace, log) and the events emitted; the driver writes the run directory.

On start it restores power limits a killed agent left on the node (state files) and locks the
node's GPUs for the sweep. A lease: the driver polls at least every ``lease_s`` seconds; when it
stops polling (driver dead), the agent stops the configuration (limits restored), releases the
node and exits. This class is plain Python (tests use it without Ray)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ..config import Config
from ..config_run import ConfigRun, Flags
from ..dataset_types import Request
from ..events import Event, encode_event
from ..gpu_setup import GpuSetup, check, gpu_pool, open_gpus
from ..power.gpu_lock import host_name
from ..power.select import open_power
from ..power.visible import indices_of
from ..profile import Profile
from ..store import RunStore
from ..sweep_prep import requests_for
from .sim_device import PersistentSimLimiter

#: Events kept for the driver beyond this many are dropped when not for live.jsonl.
MAX_BUFFERED_EVENTS = 50_000
#: After the lease ran out, wait at most this long for the configuration to stop, s.
STOP_GRACE_S = 60.0


def assigned_gpu_indices(infos: list) -> list[int]:
    """Our indices (:mod:`..power.visible`) of the GPUs Ray assigned to this actor
    (``ray.get_gpu_ids()``: entries of the raylet's CUDA_VISIBLE_DEVICES, which Ray also sets
    for the actor); [] outside Ray or without an assignment."""
    try:
        import ray

        ids = [str(i) for i in ray.get_gpu_ids()] if ray.is_initialized() else []
    except Exception:  # noqa: BLE001 - not in a Ray worker
        return []
    by_uuid = {str(g.uuid): g.index for g in infos if getattr(g, "uuid", None)}
    return indices_of(ids, by_uuid)


def profile_for(profile: Profile, cfg: Config) -> Profile:
    """The profile a configuration runs with on a node: vLLM with more than one GPU inside a
    Ray actor uses its multiprocessing executor (``--distributed-executor-backend mp``), not Ray."""
    args = profile.server.extra_args
    if profile.runtime != "vllm" or cfg.num_gpus <= 1 or any(a.startswith("--distributed-executor-backend")
                                                             for a in args):
        return profile
    server = msgspec.structs.replace(profile.server, extra_args=[*args, "--distributed-executor-backend", "mp"])
    return msgspec.structs.replace(profile, server=server)


def default_node_dir(node: str) -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state"))
    return base / "mle-tui" / "cluster" / node


class NodeAgent:
    def __init__(self, profile: Profile, *, node: str, run_id: str, configs: list[Config],
                 requests: list[Request], profile_path: str = "", node_dir: str | None = None,
                 node_id: str = "", lease_s: float = 30.0, allow_simulated: bool | None = None,
                 runtime_factory: Callable[[], Any] | None = None,
                 exit_fn: Callable[[], None] | None = None) -> None:
        self.profile, self.node, self.run_id, self.node_id = profile, node, run_id, node_id
        self.profile_path = profile_path
        self.node_dir = Path(node_dir) if node_dir else default_node_dir(node)
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self.scratch = RunStore(self.node_dir / "scratch" / run_id)
        self.scratch.ensure()
        self._requests = requests
        self._flags = Flags()
        self._events: list[tuple[bool, bytes]] = []
        self._events_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._running: str | None = None  # the key of the configuration running here
        self._closed = False
        self._close_lock = threading.Lock()
        self._exit_fn = exit_fn or (lambda: os._exit(0))
        self.gpus = self._open(allow_simulated)
        self.gpus.node = node
        if self.gpus.kind == "nvml":
            # Only the GPUs Ray gave this agent (two raylets on one host each get their own).
            assigned = assigned_gpu_indices(self.gpus.source.gpus())
            if assigned:
                self.profile = profile = msgspec.structs.replace(
                    profile, gpu=msgspec.structs.replace(profile.gpu, indices=assigned))
        try:
            check(profile, configs, self.gpus, self.scratch.root, profile_path)
        except BaseException:
            self.gpus.release()
            raise
        self._pool = gpu_pool(profile, self.gpus.source)
        if runtime_factory is not None:
            self.runtime = runtime_factory()
        else:
            from ..runtimes import get_runtime

            self.runtime = get_runtime(profile.runtime, source=profile_path)
        if profile_path and hasattr(self.runtime, "profile_dir"):
            # Relative model paths: the scratch run directory has no manifest to find them by.
            self.runtime.profile_dir = Path(profile_path).resolve().parent
        self.lease_s = float(lease_s)
        self._last_poll = time.monotonic()
        if self.lease_s > 0:
            threading.Thread(target=self._watch_lease, name="agent-lease", daemon=True).start()

    def _open(self, allow_simulated: bool | None) -> GpuSetup:
        """The node's GPUs: NVML (limits kept in the per-host state dir), or the simulated GPU
        whose limits persist in the node's device file, its state beside it."""
        from ..gpu_setup import default_clock_factory

        clock = default_clock_factory(self.profile, False)()
        setup = open_power(self.profile, allow_simulated, clock, source=self.profile_path)
        if setup.kind == "simulated":
            state = self.node_dir / "power-limits"
            state.mkdir(parents=True, exist_ok=True)
            gpus = open_gpus(self.profile, power_source=setup.source,
                             limiter=PersistentSimLimiter(setup.source, self.node_dir),  # type: ignore[arg-type]
                             clock_factory=None, allow_simulated=allow_simulated, sim_gpus=setup.sim_gpus,
                             limits_state_path=state, profile_path=self.profile_path)
        else:
            gpus = open_gpus(self.profile, power_source=setup.source, limiter=setup.limiter, clock_factory=None,
                             allow_simulated=allow_simulated, sim_gpus=None, limits_state_path=None,
                             profile_path=self.profile_path)
        gpus.message = setup.message
        return gpus

    # -- what the driver calls -----------------------------------------------------------------
    def info(self) -> dict:
        """Who and what this node is, and the lines its start produced (limits restored)."""
        self._last_poll = time.monotonic()
        return {"node": self.node, "host": host_name(), "node_id": self.node_id, "kind": self.gpus.kind,
                "simulated": self.gpus.simulated, "message": self.gpus.message, "notes": list(self.gpus.notes),
                "gpus": list(self.gpus.source.gpus()), "pool": list(self._pool)}

    def poll(self) -> list[tuple[bool, bytes]]:
        """The events emitted since the last poll (live flag, JSON); renews the lease."""
        self._last_poll = time.monotonic()
        with self._events_lock:
            out, self._events = self._events, []
        return out

    def run_config(self, cfg: Config, index: int, total: int, next_cfg: Config | None = None) -> dict:
        """Run one configuration on this node (``next_cfg``: the one the driver gives this node
        next, so a server can stay up for it). Returns ``status`` (a record's, or ``stopped``)
        and ``files``: run-directory-relative path -> bytes of what it wrote."""
        self._idle.clear()
        self._running = cfg.key()
        try:
            if self._closed:
                return {"status": "stopped", "files": {}}
            record = ConfigRun(
                profile=profile_for(self.profile, cfg), cfg=cfg, index=index, total=total, next_cfg=next_cfg,
                requests=requests_for(self.profile, self._requests, cfg), indices=self._pool[: cfg.num_gpus],
                gpus=self.gpus, runtime=self.runtime, store=self.scratch, run_id=self.run_id,  # type: ignore[arg-type]
                flags=self._flags, emit=self._emit, profile_path=self.profile_path,
            ).run()
            return {"status": record.status if record is not None else "stopped", "files": self._collect(cfg.key())}
        finally:
            self._running = None
            self._idle.set()

    def skip(self, key: str | None = None) -> bool:
        """Skip the configuration running here (``key``: only if it is that one: a request that
        arrives after it ended never skips the next). True when asked to skip."""
        running = self._running
        if running is None or (key is not None and key != running):
            return False
        self._flags.request_skip()
        return True

    def stop(self) -> None:
        """Stop the configuration running here; no further one starts."""
        self._flags.request_stop(self.runtime)

    def shutdown(self, wait_s: float = STOP_GRACE_S) -> bool:
        """Stop, wait for the configuration to end (its limits restored), close the runtime,
        release the node's GPUs, remove the scratch directory. Idempotent. True when idle."""
        self.stop()
        idle = self._idle.wait(wait_s)
        with self._close_lock:
            if self._closed:
                return idle
            self._closed = True
            close = getattr(self.runtime, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    pass
            self.gpus.release()
            shutil.rmtree(self.scratch.root, ignore_errors=True)
        return idle

    # -- inside ----------------------------------------------------------------------------------
    def _emit(self, event: Event, live: bool = True) -> None:
        data = encode_event(event)
        with self._events_lock:
            if live or len(self._events) < MAX_BUFFERED_EVENTS:
                self._events.append((live, data))

    def _collect(self, key: str) -> dict[str, bytes]:
        """Every file the configuration left in the scratch directory (record, trace, log,
        media), removed from it: one configuration at a time runs here."""
        root = self.scratch.root
        out: dict[str, bytes] = {}
        for p in sorted(root.rglob("*")):
            if p.is_file() and not p.name.startswith("."):
                out[p.relative_to(root).as_posix()] = p.read_bytes()
                p.unlink()
        return out

    def _watch_lease(self) -> None:
        period = min(1.0, self.lease_s / 4)
        while not self._closed:
            time.sleep(period)
            if time.monotonic() - self._last_poll > self.lease_s:
                self.shutdown()
                self._exit_fn()
                return
