"""Starting and ending the node agents of a cluster sweep (one detached Ray actor per node,
pinned to it and holding all of its GPUs), for :class:`.driver.ClusterRunner`."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from ..errors import InputError
from .agent import NodeAgent
from .nodes import Node
from .ray_env import error_tail

#: How long agents may take to start (open GPUs, restore limits), s.
AGENT_START_TIMEOUT_S = 300.0


def start_agents(ray: Any, found: list[tuple[str, str, float]], run: Any, notes: list[str]) -> None:
    """One agent per ``(name, node_id, num_gpus)`` for the driver ``run`` (its profile, run id,
    configurations, requests and settings), each added to ``run.nodes`` as it is created (so
    the driver's clean-up ends it whatever happens next); waits for each to answer. A node whose
    agent does not start is left out with a line in ``notes``; an agent's InputError (bad input,
    the same on every node) and no agent at all raise InputError."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor = ray.remote(NodeAgent)
    req_ref = ray.put(run._requests)
    tag = uuid.uuid4().hex[:6]
    nodes: list[Node] = run.nodes
    for name, node_id, num_gpus in found:
        node_dir = str(Path(run._node_dir_base) / name) if run._node_dir_base else None
        handle = actor.options(
            name=f"mle-tui-{run.run_id}-{name}-{tag}", namespace="mle-tui", lifetime="detached",
            max_concurrency=4, max_restarts=0, num_cpus=0, num_gpus=num_gpus,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(run.profile, node=name, run_id=run.run_id, configs=run._configs, requests=req_ref,
                 profile_path=run.profile_path or "", node_dir=node_dir, node_id=node_id, lease_s=run.lease_s,
                 allow_simulated=run._allow_simulated, runtime_factory=run._runtime_factory)
        nodes.append(Node(name, node_id, num_gpus, handle))
    for node in list(nodes):
        try:
            node.info = ray.get(node.handle.info.remote(), timeout=AGENT_START_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the agent's InputError arrives wrapped
            cause = getattr(exc, "cause", None) or exc
            if isinstance(cause, InputError):  # bad input: the same on every node
                raise InputError(run.profile_path or "", "cluster", f"node {node.name}: {cause.line()}") from None
            # A node that died (or whose agent crashed) is left out of this sweep.
            notes.append(f"node {node.name} left out: its agent did not start: {error_tail(cause)}")
            node.alive = False
            nodes.remove(node)
    if not nodes:
        raise InputError(run.profile_path or "", "cluster.ray_address",
                         f"no node agent started ({'; '.join(notes[-3:])})")


def shutdown_agents(ray: Any, nodes: list[Node]) -> None:
    """Stop every alive agent (limits restored, node released) and end it."""
    refs = [(n, n.handle.shutdown.remote()) for n in nodes if n.alive]
    for node, ref in refs:
        try:
            ray.get(ref, timeout=120)
        except Exception:  # noqa: BLE001 - a dead agent: its lease/state file cover it
            pass
        try:
            ray.kill(node.handle)
        except Exception:  # noqa: BLE001
            pass
        node.alive = False
