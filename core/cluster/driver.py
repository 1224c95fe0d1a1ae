"""The cluster driver: one sweep over the GPU nodes of a Ray cluster, one run directory.

Same public API as :class:`~..runner.SweepRunner` (``prepare``, ``run``, ``request_stop``,
``request_skip``, ``configs``, ``pending``), so the CLI and the app take either. It starts one
:class:`.agent.NodeAgent` per node with GPUs (a detached actor pinned to the node, holding all
of its GPUs), hands each free node the next pending configuration, forwards the agents' events
(to the listener and ``live.jsonl``) and writes what they return: it is the only writer of the
run directory.

A node lost during a configuration: a ``failed`` record ("node lost"), the configuration
requeued once on another node (the lost attempt's record is kept in ``attempts/``; the second
loss makes it final), and the node named in ``run.json``'s ``nodes_to_restore``: its agent's
next start restores the limit its state file holds. Stop: every agent stops (limits restored)
and exits. Drain: the running configurations finish and are written, no new one starts, the
rest stay pending (a later run on the same directory resumes them). A driver that dies stops
polling: every agent's lease runs out, it stops and exits.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ..config import Config
from ..dataset_types import Request
from ..errors import InputError
from ..event_sink import EventSink
from ..events import ConfigFinished, Event, LogLine, RunFinished, RunStarted, decode_event
from ..manifest import build_manifest
from ..profile import Profile
from ..records import ClusterNode
from ..resume_check import check_resume_hardware, cluster_pool_gpus
from ..runner import RunSummary
from ..store import RunStore, atomic_write, decode_record, encode_record
from ..sweep_prep import load_workload, open_run_dir, request_count
from .agents import shutdown_agents, start_agents
from .nodes import NODE_LABEL, Node, NodesSource, cluster_nodes, lost_record  # noqa: F401 - NODE_LABEL re-exported
from .queue import ConfigQueue, ServerGroups, config_work, next_for, upcoming
from .ray_env import import_ray



class ClusterRunner:
    def __init__(self, profile: Profile, out_dir: Path, *, address: str | None = None, profile_path: str | None = None,
                 listener: Callable[[Event], None] | None = None, allow_simulated: bool | None = None,
                 record_format: str = "json", requests: list[Request] | None = None, lease_s: float | None = None,
                 node_dir_base: str | None = None, runtime_factory: Callable[[], Any] | None = None,
                 poll_s: float = 0.25, max_attempts: int = 2) -> None:
        """``address``: the Ray cluster (default the profile's ``cluster.ray_address``, else
        ``auto``: the one this host belongs to; ignored when Ray is already initialised). ``node_dir_base``: where agents keep node-local state
        (default ``$XDG_STATE_HOME/mle-tui/cluster/NODE`` on each node). ``runtime_factory``:
        builds each agent's runtime (default: the profile's). ``max_attempts``: runs of one
        configuration when nodes are lost."""
        self.profile, self.out_dir = profile, Path(out_dir)
        self.address = address or profile.cluster.ray_address or "auto"
        self.profile_path = profile_path
        self._events = EventSink(listener)
        self.store = RunStore(self.out_dir, record_format)
        self._allow_simulated, self._requests = allow_simulated, requests
        self.lease_s = lease_s if lease_s is not None else profile.cluster.lease_s
        self._node_dir_base, self._runtime_factory = node_dir_base, runtime_factory
        self.poll_s, self.max_attempts = poll_s, max_attempts
        self._configs = profile.configs()
        self._group = ServerGroups(profile)
        self._stop = threading.Event()
        self._drain_req = threading.Event()
        self._queue: ConfigQueue | None = None
        self._skip: set[str | None] = set()
        self._skip_lock = threading.Lock()
        self._lock: Any = None
        self._ray: Any = None
        self.nodes: list[Node] = []
        self.lost_nodes: list[str] = []
        self._notes: list[str] = []
        self._prepared = False
        self._created = time.time()
        self.power_message = self.power_kind = self.run_id = ""
        self.simulated = False

    # -- public API (SweepRunner's) ---------------------------------------------------------------
    def configs(self) -> list[Config]:
        return list(self._configs)

    def pending(self) -> list[Config]:
        done = self.store.completed_keys()
        return [c for c in self._configs if c.key() not in done]

    def request_skip(self, key: str | None = None) -> None:
        """Skip the configuration ``key`` on whichever node runs it (recorded ``skipped``; the
        other nodes go on); None: every running one. A key that runs nowhere (unknown, queued,
        finished) is ignored with a log line. Thread-safe."""
        with self._skip_lock:
            self._skip.add(key)

    def request_stop(self) -> None:
        """Stop every node's configuration (limits restored) and the sweep. Thread-safe."""
        self._stop.set()

    def request_drain(self) -> None:
        """End the sweep after the configurations running now: they finish and are written
        as usual, no new one starts, the rest stay pending (resumed by a later run on the same
        directory); the run ends ``stopped`` when some were left. Thread-safe."""
        self._drain_req.set()

    def next_start(self, node: str) -> tuple[Config, bool] | None:
        """The configuration the node named ``node`` would start next were it free now, and
        whether that needs a new server (False: its server's promised next configuration);
        None: nothing left for it, or no sweep running. For the driver's thread (a listener's
        callback), e.g. to drain before a configuration that would not fit a time budget."""
        found = next((n for n in self.nodes if n.name == node and n.alive), None)
        if found is None or self._queue is None:
            return None
        return upcoming(self.nodes, found, self._queue, self._group)

    @property
    def requests(self) -> list[Request] | None:
        return self._requests

    # -- preparation ------------------------------------------------------------------------------
    def prepare(self) -> None:
        if self._prepared:
            return
        fresh = not self.out_dir.exists()
        try:
            self._prepare()
        except BaseException:
            self._shutdown_agents()
            self._release()
            if fresh:
                self.store.remove_if_unused()
            raise

    def _prepare(self) -> None:
        src = self.profile_path or ""
        if getattr(self.profile.sweep, "strategy", "grid") != "grid":
            raise InputError(src, "sweep.strategy", "the adaptive search runs on one host; a Ray cluster runs the "
                             "whole grid (strategy = \"grid\", no --adaptive)")
        if self._lock is None:
            lock = self.store.lock()
            lock.__enter__()
            self._lock = lock
        manifest = open_run_dir(self.store, self.profile)
        ray = self._ray = import_ray(src)
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, log_to_driver=False)
            except Exception as exc:  # noqa: BLE001 - ConnectionError and Ray's own
                raise InputError(src, "cluster.ray_address", f"cannot join Ray cluster {self.address!r}: "
                                 f"{' '.join(str(exc).split())[:200]}") from None
        found = cluster_nodes(ray)
        if not found:
            raise InputError(src, "cluster.ray_address", "the Ray cluster has no alive node with GPUs")
        if self._requests is None:
            if self._runtime_factory is not None:
                runtime = self._runtime_factory()
            else:
                from ..runtimes import get_runtime

                runtime = get_runtime(self.profile.runtime, source=src)
            self._requests = load_workload(self.profile, self.profile_path, runtime, self._notes.append)
        self.run_id = manifest.run_id if manifest is not None else uuid.uuid4().hex[:12]
        self._created = manifest.created_unix_s if manifest is not None else time.time()
        self._restore_before = list(manifest.nodes_to_restore) if manifest is not None else []
        self._start_agents(ray, found)
        # A node whose agent started again has had its limits restored (the agent's start does).
        self._restore_before = [n for n in self._restore_before if n not in {x.name for x in self.nodes}]
        first = self.nodes[0].info
        self.power_kind, self.simulated = first["kind"], any(n.info["simulated"] for n in self.nodes)
        if manifest is not None:  # a resume (also of a one-host run): the same GPU model and power source
            gpus = cluster_pool_gpus([n.info for n in self.nodes])
            self._notes += check_resume_hardware(manifest, self.power_kind, "", gpus, sorted({g.index for g in gpus}),
                                                 str(self.store.manifest_path))
        self.power_message = f"Ray cluster: {len(self.nodes)} node(s), " + "; ".join(
            f"{n.name}: {n.info['message']}" for n in self.nodes)
        self._write_manifest(finished=False)
        self._prepared = True

    def _start_agents(self, ray: Any, found: list[tuple[str, str, float]]) -> None:
        start_agents(ray, found, self, self._notes)

    def _write_manifest(self, finished: bool) -> None:
        m = build_manifest(run_id=self.run_id, created_unix_s=self._created, profile=self.profile,
                           profile_path=self.profile_path, configs=self._configs,
                           source=NodesSource(self.nodes), power_kind=self.power_kind,  # type: ignore[arg-type]
                           finished=finished)
        restore = sorted(set(self._restore_before) | set(self.lost_nodes))
        self.store.write_manifest(msgspec.structs.replace(m, nodes=[
            ClusterNode(name=n.name, host=n.info.get("host", ""), node_id=n.node_id, gpus=n.info.get("gpus", []))
            for n in self.nodes], nodes_to_restore=restore))

    # -- events -----------------------------------------------------------------------------------
    def _emit(self, event: Event, live: bool = True) -> None:
        self._events.emit(event, live)

    @property
    def listener_errors(self) -> int:
        return self._events.listener_errors

    def _forward(self, node: Node, batch: list[tuple[bool, bytes]]) -> None:
        for live, data in batch:
            event = decode_event(data)
            if getattr(event, "node", False) is None:
                event.node = node.name  # two nodes' events interleave: the app keeps them apart
            if isinstance(event, ConfigFinished):  # after the driver has written the record
                node.held.append(event)
            else:
                self._emit(event, live)

    def _poll(self, wait_s: float = 0.0) -> None:
        """Every alive agent's events (this also renews their leases). One poll per agent in
        flight at a time, so no answer is dropped; an idle agent whose poll fails is gone."""
        ray = self._ray
        alive = [n for n in self.nodes if n.alive]
        for node in alive:
            if node.poll_ref is None:
                node.poll_ref = node.handle.poll.remote()
        ready, _ = ray.wait([n.poll_ref for n in alive], num_returns=len(alive), timeout=wait_s)
        for node in alive:
            if node.poll_ref in ready:
                self._take_poll(node)

    def _take_poll(self, node: Node, timeout_s: float | None = None) -> None:
        ref, node.poll_ref = node.poll_ref, None
        try:
            self._forward(node, self._ray.get(ref, timeout=timeout_s))
        except Exception:  # noqa: BLE001 - RayActorError, GetTimeoutError: the agent is gone
            if node.job is None and node.alive:
                node.alive = False
                self._emit(LogLine(line=f"node {node.name} lost (idle)"))

    def _drain(self, node: Node) -> None:
        """The events a finished configuration's agent still holds (after its last answer)."""
        if node.poll_ref is not None:
            self._take_poll(node, 30.0)
        node.poll_ref = node.handle.poll.remote()
        self._take_poll(node, 30.0)

    # -- the sweep --------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        try:
            self.prepare()
            return self._run()
        finally:
            self._shutdown_agents()
            self._release()

    def _run(self) -> RunSummary:
        ray = self._ray
        done_before = self.store.completed_keys()
        keys = [c.key() for c in self._configs]
        skipped = [k for k in keys if k in done_before]
        counts = {"ok": 0, "failed": 0, "invalid": 0, "skipped": 0}
        attempts: dict[str, int] = {}
        work = config_work(self.profile, len(self._requests or []))
        queue = self._queue = ConfigQueue(
            ((i, c) for i, c in enumerate(self._configs) if c.key() not in done_before), self._group, work)
        drained = False
        total = len(self._configs)
        self._events.open(self.store.live_path())
        try:
            self._emit(RunStarted(run_id=self.run_id, run_dir=str(self.out_dir), configs=keys, skipped=skipped,
                                  power_source=self.power_kind, simulated=self.simulated))
            for line in [self.power_message, *self._notes]:
                self._emit(LogLine(line=line))
            for n in self.nodes:
                for note in n.info.get("notes", []):
                    self._emit(LogLine(line=f"node {n.name}: {note}"))
            while True:
                self._act_on_requests()
                if self._drain_req.is_set() and not drained:
                    drained = True
                    running = sum(1 for n in self.nodes if n.job is not None)
                    queued = len(queue) + sum(len(n.reserved) for n in self.nodes)
                    self._emit(LogLine(line=f"draining: {running} running configuration(s) finish, "
                                            f"{queued} stay queued"))
                for node in self.nodes:
                    if (node.alive and node.job is None and (queue or node.reserved) and not self._stop.is_set()
                            and not drained):
                        index, cfg, nxt = next_for(self.nodes, node, queue, self._group)
                        ref = node.handle.run_config.remote(cfg, index, total, nxt)
                        node.job = (ref, index, cfg, time.time())
                        self._emit(LogLine(line=f"node {node.name}: {cfg.key()}"))
                busy = [n for n in self.nodes if n.job is not None]
                if not busy:
                    queue.extend(it for n in self.nodes for it in n.reserved)
                    if queue and not (self._stop.is_set() or drained):
                        self._emit(LogLine(line=f"no node left to run {len(queue)} configuration(s)"))
                    break
                ready, _ = ray.wait([n.job[0] for n in busy], num_returns=1, timeout=self.poll_s)
                self._poll()
                for node in busy:
                    if node.job[0] in ready:  # type: ignore[index]
                        status = self._finish(node, queue, attempts)
                        if status in counts:
                            counts[status] += 1
            stopped = self._stop.is_set() or (drained and bool(queue))
            if not (set(keys) - self.store.completed_keys()):
                self._write_manifest(finished=True)
            self._emit(RunFinished(completed=counts["ok"] + counts["invalid"], failed=counts["failed"],
                                   invalid=counts["invalid"], stopped=stopped, skipped=counts["skipped"]))
        finally:
            self._events.close()
            self._queue = None
        return RunSummary(run_dir=str(self.out_dir), completed=counts["ok"] + counts["invalid"],
                          failed=counts["failed"], invalid=counts["invalid"], skipped=len(skipped), stopped=stopped)

    def _act_on_requests(self) -> None:
        with self._skip_lock:
            skips, self._skip = self._skip, set()
        running = set()
        for node in self.nodes:
            if node.job is None or not node.alive:
                continue
            key = node.job[2].key()
            running.add(key)
            if self._stop.is_set() and not node.told_stop:
                node.told_stop = True
                node.handle.stop.remote()
            elif None in skips or key in skips:
                node.handle.skip.remote(key)  # the agent skips it only if it still runs it
                self._emit(LogLine(line=f"node {node.name}: skipping {key}"))
        for key in sorted(k for k in skips - running if k is not None):
            self._emit(LogLine(line=f"skip {key}: no node runs it (unknown, queued or finished); ignored"))

    def _finish(self, node: Node, queue: ConfigQueue, attempts: dict[str, int]) -> str:
        """A configuration's job ended on ``node``: write what it returned, or handle the loss."""
        ref, index, cfg, started = node.job  # type: ignore[misc]
        node.job = None
        try:
            result = self._ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - the node (or its agent) died during it
            return self._lost(node, index, cfg, started, queue, attempts, exc)
        self._drain(node)
        for rel, data in sorted(result["files"].items()):
            self._write_file(rel, data)
        for event in node.held:
            if isinstance(event, ConfigFinished):
                found = self.store.find_record(event.key)
                event = msgspec.structs.replace(event, record_path=str(found or self.store.skipped_record_path(event.key)))
            self._emit(event)
        node.held = []
        return result["status"]

    def _write_file(self, rel: str, data: bytes) -> None:
        if rel.startswith("records/") and not rel.endswith(".skipped.json"):
            record = decode_record(data, rel)
            try:
                self.store.write_record(record)
            except FileExistsError as exc:
                self._emit(LogLine(line=str(exc)))
            return
        atomic_write(self.out_dir / rel, data)

    def _lost(self, node: Node, index: int, cfg: Config, started: float, queue: ConfigQueue,
              attempts: dict[str, int], exc: BaseException) -> str:
        key = cfg.key()
        node.alive = False
        node.held, node.poll_ref = [], None
        for item in reversed(node.reserved):  # promised to the lost node: back to the queue
            queue.appendleft(item)
        node.reserved = []
        self.lost_nodes.append(node.name)
        self._write_manifest(finished=False)
        n = attempts[key] = attempts.get(key, 0) + 1
        why = type(exc).__name__
        record = lost_record(node, cfg, started, f"node lost: {node.name} ({why}) during the configuration",
                             run_id=self.run_id, profile=self.profile,
                             num_requests=request_count(self.profile, len(self._requests or []), cfg))
        if n < self.max_attempts and not self._stop.is_set():
            atomic_write(self.out_dir / "attempts" / f"{key}.lost-{n}.json", encode_record(record, "json"))
            queue.appendleft((index, cfg))
            self._emit(LogLine(line=f"{key}: node {node.name} lost; failed attempt kept in attempts/, requeued "
                                    "on another node; the node's limits are restored by its agent's next start"))
            return "requeued"
        path = self.store.write_record(record)
        self._emit(LogLine(line=f"{key}: node {node.name} lost; failed"))
        self._emit(ConfigFinished(key=key, status="failed", reasons=list(record.reasons), energy_per_request_j=None,
                                  latency_value_s=None, record_path=str(path), node=node.name))
        return "failed"

    # -- the end ----------------------------------------------------------------------------------
    def _shutdown_agents(self) -> None:
        """Stop every alive agent (limits restored, node released) and end it."""
        if self._ray is not None:
            shutdown_agents(self._ray, self.nodes)

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

