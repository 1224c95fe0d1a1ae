"""The cluster's queue of pending configurations and which node runs what next: the
configurations one LLM server can run one after another (the same server batch, TP and PP)
stay on one node in a row, as on one host, and free nodes get servers nobody has yet."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..profile import Profile
from .nodes import Node


class ServerGroups:
    """Configuration -> its server group (None: no grouping, diffusion); cached."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._groups: dict[Config, object] = {}
        self._shared: int | None | bool = False  # the shared server batch, once known

    def __call__(self, cfg: Config) -> object:
        if cfg not in self._groups:
            if not self.profile.is_llm:
                self._groups[cfg] = None
            else:
                from ..runtimes.server_reuse import shared_batch

                if self._shared is False:
                    self._shared = shared_batch(self.profile)
                self._groups[cfg] = (self._shared or cfg.batch, cfg.tensor_parallel, cfg.pipeline_parallel)
        return self._groups[cfg]


class ConfigQueue:
    """The pending (index, cfg) in order, in buckets of one server group each (insertion
    order), so picking by group costs the number of groups, not of configurations."""

    def __init__(self, items: Any, group: Callable[[Config], object]) -> None:
        self._group = group
        self._buckets: dict[object, deque] = {}
        self.extend(items)

    def extend(self, items: Any) -> None:
        for item in items:
            self._buckets.setdefault(self._group(item[1]), deque()).append(item)

    def appendleft(self, item: tuple[int, Config]) -> None:
        g = self._group(item[1])
        if g in self._buckets:
            self._buckets[g].appendleft(item)
        else:
            self._buckets = {g: deque([item]), **self._buckets}

    def __len__(self) -> int:
        return sum(len(d) for d in self._buckets.values())

    def __bool__(self) -> bool:
        return bool(self._buckets)

    def first_group(self, avoid: set) -> object:
        return next((g for g in self._buckets if g not in avoid), next(iter(self._buckets)))

    def pop(self, group: object) -> tuple[int, Config] | None:
        bucket = self._buckets.get(group)
        if not bucket:
            return None
        item = bucket.popleft()
        if not bucket:
            del self._buckets[group]
        return item



def next_for(nodes: list[Node], node: Node, queue: ConfigQueue,
         group: Callable[[Config], object]) -> tuple[int, Config, Config | None]:
    """The configuration a free node runs next, and the one promised to it after that:
    what it was promised; else the first of a server no other node has; else the first in
    the queue. A queued configuration of the same server is promised to the same node."""
    if node.reserved:
        index, cfg = node.reserved.pop(0)
    else:
        taken = {group(n.job[2]) for n in nodes if n.job is not None}
        taken |= {group(c) for n in nodes for _, c in n.reserved}
        index, cfg = queue.pop(queue.first_group(taken))
    group = group(cfg)
    nxt = queue.pop(group) if group is not None else None
    if nxt is not None:
        node.reserved.append(nxt)
    return index, cfg, nxt[1] if nxt is not None else None
