"""The nodes of a cluster run as the driver sees them: which Ray nodes take part (those with
GPUs, named by their ``mle-tui.node`` label or host name), each node's agent and the
configuration it runs, the cluster's GPUs for the manifest, and the record of a
configuration whose node was lost."""

from __future__ import annotations

import math
import time
from typing import Any

from ..config import Config
from ..events import Event
from ..profile import Profile
from ..records import Hardware, Record

NODE_LABEL = "mle-tui.node"


class Node:
    def __init__(self, name: str, node_id: str, num_gpus: float, handle: Any) -> None:
        self.name, self.node_id, self.num_gpus, self.handle = name, node_id, num_gpus, handle
        self.info: dict = {}
        self.alive = True
        #: (ObjectRef, index, cfg, started unix s) while a configuration runs there.
        self.job: tuple[Any, int, Config, float] | None = None
        self.told_stop = False
        self.held: list[Event] = []
        self.poll_ref: Any = None
        #: (index, cfg) promised to this node next: it shares the running one's server.
        self.reserved: list[tuple[int, Config]] = []


class NodesSource:
    """The cluster's GPUs as one list, for the manifest."""

    def __init__(self, nodes: list[Node]) -> None:
        self._gpus = [g for n in nodes for g in n.info.get("gpus", [])]

    def gpus(self) -> list:
        return self._gpus


def cluster_nodes(ray: Any) -> list[tuple[str, str, float]]:
    """(name, node id, GPUs) of every alive node with GPUs: named by its ``mle-tui.node`` label,
    else its host name (made unique with the node id's head where hosts repeat)."""
    rows = [(n.get("Labels", {}).get(NODE_LABEL) or n["NodeManagerHostname"], n["NodeID"],
             float(n["Resources"].get("GPU", 0))) for n in ray.nodes() if n["Alive"]]
    rows = [r for r in rows if r[2] > 0]
    names = [r[0] for r in rows]
    return sorted((f"{name}-{nid[:8]}" if names.count(name) > 1 else name, nid, g) for name, nid, g in rows)


def lost_record(node: Node, cfg: Config, started: float, reason: str, *, run_id: str, profile: Profile,
                num_requests: int) -> Record:
    """The ``failed`` record of a configuration whose node was lost during it."""
    p, info = profile, node.info
    pool = info.get("pool") or list(range(cfg.num_gpus))
    indices = list(pool[: cfg.num_gpus])
    by_index = {g.index: g for g in info.get("gpus", [])}
    uuids = [by_index[i].uuid if i in by_index else None for i in indices]
    hw = Hardware(power_source=info.get("kind", "simulated"), tdp_w=math.nan, gpu_indices=indices,
                  gpu_names=[by_index[i].name if i in by_index else f"GPU {i}" for i in indices],
                  host=info.get("host"), gpu_uuids=uuids if any(uuids) else None, node=node.name)
    return Record(run_id=run_id, config_key=cfg.key(), config=cfg, status="failed", reasons=[reason],
                  simulated=bool(info.get("simulated")), task=p.task, runtime=p.runtime, model=p.model.id,
                  weights=p.model.weights, hardware=hw, started_unix_s=started,
                  duration_s=max(0.0, time.time() - started),
                  num_requests=num_requests, latency_metric=p.latency_metric())
