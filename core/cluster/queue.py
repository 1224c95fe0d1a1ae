"""The cluster's queue of pending configurations and which node runs what next: the
configurations one LLM server can run one after another (the same server batch, TP and PP)
stay on one node in a row, as on one host, and free nodes get servers nobody has yet, the
one with the most work left first (longest-processing-time-first: the big groups start early
and the small ones fill in at the end, which shortens the sweep when groups differ).

The work of a group is an estimate that needs no measurement: the sum of its queued
configurations' request counts (:func:`config_work`). For ``dataset.requests_per_seq`` = k
that is k x B per configuration: time ~ (requests per sequence slot) x (one request's latency
at B), and the latency grows with B, so the count ranks groups the way their run times do.
Each group also costs one server start, the same for all of them: it cannot change the order,
so it is left out. Diffusion profiles have one group (None): today's order."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..profile import Profile
from ..sweep_prep import request_count
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


def config_work(profile: Profile, num_base: int) -> Callable[[Config], int]:
    """A configuration's work estimate: its number of requests, as
    :func:`..sweep_prep.requests_for` makes them from ``num_base`` loaded requests (without
    building the list)."""
    return lambda cfg: request_count(profile, num_base, cfg)


class ConfigQueue:
    """The pending (index, cfg) in order, in buckets of one server group each (insertion
    order: profile order), each with its work left (``work`` per configuration; none: 0), so
    picking by group costs the number of groups, not of configurations."""

    def __init__(self, items: Any, group: Callable[[Config], object],
                 work: Callable[[Config], int] | None = None) -> None:
        self._group = group
        self._work = work or (lambda cfg: 0)
        self._buckets: dict[object, deque] = {}
        self._left: dict[object, int] = {}  # group -> work left in its bucket
        self.extend(items)

    def extend(self, items: Any) -> None:
        for item in items:
            g = self._group(item[1])
            self._buckets.setdefault(g, deque()).append(item)
            self._left[g] = self._left.get(g, 0) + self._work(item[1])

    def appendleft(self, item: tuple[int, Config]) -> None:
        g = self._group(item[1])
        if g in self._buckets:
            self._buckets[g].appendleft(item)
        else:
            self._buckets = {g: deque([item]), **self._buckets}
        self._left[g] = self._left.get(g, 0) + self._work(item[1])

    def __len__(self) -> int:
        return sum(len(d) for d in self._buckets.values())

    def __bool__(self) -> bool:
        return bool(self._buckets)

    def first_group(self, avoid: set) -> object:
        """The group with the most work left among those not in ``avoid`` (else among all:
        a second server of a group some node has); ties in profile order."""
        free = [g for g in self._buckets if g not in avoid] or list(self._buckets)
        return max(free, key=self._left.__getitem__)  # max keeps the first of equals

    def peek(self, group: object) -> tuple[int, Config] | None:
        bucket = self._buckets.get(group)
        return bucket[0] if bucket else None

    def pop(self, group: object) -> tuple[int, Config] | None:
        bucket = self._buckets.get(group)
        if not bucket:
            return None
        item = bucket.popleft()
        if not bucket:
            del self._buckets[group]
            del self._left[group]
        else:
            self._left[group] -= self._work(item[1])
        return item


def next_for(nodes: list[Node], node: Node, queue: ConfigQueue,
         group: Callable[[Config], object]) -> tuple[int, Config, Config | None]:
    """The configuration a free node runs next, and the one promised to it after that:
    what it was promised; else the first of the server no other node has with the most work
    left (:meth:`ConfigQueue.first_group`); else the first of the group with the most work
    left (a second server of it). A queued configuration of the same server is promised to
    the same node."""
    if node.reserved:
        index, cfg = node.reserved.pop(0)
    else:
        index, cfg = queue.pop(queue.first_group(_taken(nodes, group)))
    group = group(cfg)
    nxt = queue.pop(group) if group is not None else None
    if nxt is not None:
        node.reserved.append(nxt)
    return index, cfg, nxt[1] if nxt is not None else None


def upcoming(nodes: list[Node], node: Node, queue: ConfigQueue,
             group: Callable[[Config], object]) -> tuple[Config, bool] | None:
    """What :func:`next_for` would give the free ``node`` now (nothing changes), and whether
    it starts a new server (False: the promised next configuration of its server, or no
    server groups at all); None: nothing left for it."""
    if node.reserved:
        return node.reserved[0][1], False
    if not queue:
        return None
    cfg = queue.peek(queue.first_group(_taken(nodes, group)))[1]  # type: ignore[index]
    return cfg, group(cfg) is not None


def _taken(nodes: list[Node], group: Callable[[Config], object]) -> set:
    """The server groups some node runs or has been promised."""
    taken = {group(n.job[2]) for n in nodes if n.job is not None}
    return taken | {group(c) for n in nodes for _, c in n.reserved}
