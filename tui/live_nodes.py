"""Per-node live state of a cluster run (``--ray``), for :class:`.live.LiveState` (no Textual).

Events of a cluster run carry their node (``event.node``). :class:`LiveState` keeps the
selected node's state in its own attributes (what the charts and header read, as on one host);
the other nodes' states are kept here and swapped in while one of their events is applied, so
every event is folded by the same code as on one host. Events without a node (the single-host
runner, the driver's own lines) never touch this.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .live_eta import cluster_eta_s  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from .live import LiveState

#: LiveState attributes that belong to one node (its running configuration and its charts).
PER_NODE = ("current", "current_index", "config_started", "power", "has_memory", "batch", "steady", "progress",
            "health", "health_event_at_s", "batch_progress", "phase_marks", "_config_wall_start_s",
            "_batch_energy_j", "_batch_images")


def fresh(capacity: int) -> dict[str, Any]:
    """A node's state before its first configuration."""
    from .live import _series

    return {"current": None, "current_index": 0, "config_started": None, "power": None, "has_memory": False,
            "batch": _series(2, capacity), "steady": None, "progress": None, "health": None,
            "health_event_at_s": None, "batch_progress": None,
            "phase_marks": collections.deque(maxlen=capacity), "_config_wall_start_s": None,
            "_batch_energy_j": 0.0, "_batch_images": 0}


class NodeStates:
    def __init__(self) -> None:
        #: Nodes in the order their first event came.
        self.order: list[str] = []
        #: The node the charts and header show (None: a single-host run).
        self.selected: str | None = None
        #: The other nodes' states (PER_NODE attribute -> value).
        self.saved: dict[str, dict[str, Any]] = {}
        #: Latest total power per node, W.
        self.total_w: dict[str, float] = {}

    def __bool__(self) -> bool:
        return bool(self.order)

    def see(self, node: str) -> None:
        if node not in self.order:
            self.order.append(node)
            if self.selected is None:
                self.selected = node  # LiveState's own (empty) state becomes this node's

    @contextmanager
    def swapped(self, live: LiveState, node: str) -> Iterator[None]:
        """``live`` holds ``node``'s state inside the block (nothing to do for the selected one)."""
        if node == self.selected:
            yield
            return
        mine = {a: getattr(live, a) for a in PER_NODE}
        theirs = self.saved.pop(node, None) or fresh(live._capacity)
        for a, v in theirs.items():
            setattr(live, a, v)
        try:
            yield
        finally:
            self.saved[node] = {a: getattr(live, a) for a in PER_NODE}
            for a, v in mine.items():
                setattr(live, a, v)

    def select(self, live: LiveState, node: str) -> None:
        """Show ``node``'s configuration and charts."""
        if node == self.selected or node not in self.order:
            return
        theirs = self.saved.pop(node, None) or fresh(live._capacity)
        if self.selected is not None:
            self.saved[self.selected] = {a: getattr(live, a) for a in PER_NODE}
        for a, v in theirs.items():
            setattr(live, a, v)
        self.selected = node
        live.version += 1
        live.chart_version += 1

    def cycle(self, live: LiveState) -> str | None:
        """Select the next node (in first-seen order); returns it."""
        if not self.order:
            return None
        i = self.order.index(self.selected) if self.selected in self.order else -1
        self.select(live, self.order[(i + 1) % len(self.order)])
        return self.selected

    def each(self, live: LiveState) -> Iterator[str]:
        """Every node, ``live`` holding its state while the loop body runs."""
        for node in list(self.order):
            with self.swapped(live, node):
                yield node

    def forget_key(self, live: LiveState, key: str, node: str) -> None:
        """``key`` started on ``node``: no other node runs it any more (requeued after a loss)."""
        for other in self.order:
            if other == node:
                continue
            if other == self.selected:
                if live.current == key:
                    live.current = None
            elif self.saved.get(other, {}).get("current") == key:
                self.saved[other]["current"] = None

    def end_all(self, live: LiveState, end: Any) -> None:
        """The sweep ended: apply ``end`` (the RunFinished fold of the current row) on each node."""
        for _ in self.each(live):
            end()


def node_rows(live: LiveState) -> list[dict[str, Any]]:
    """Per node: name, GPU indices, running configuration (label), total power (W), fraction."""
    out = []
    for node in live.nodes.each(live):
        cs = live.config_started
        running = live.current is not None and cs is not None
        out.append({"node": node, "selected": node == live.nodes.selected,
                    "gpus": live.gpu_indices if running else [],
                    "label": cs.label if running else None, "index": cs.index if running else None,
                    "total_w": live.nodes.total_w.get(node) if running else None,
                    "fraction": live.current_fraction() if running else None})
    return out


def skip_target(live: LiveState) -> tuple[str, str, str] | None:
    """(node, key, label) of the configuration running on the selected node of a cluster run;
    None on one host, with no node selected, or when that node is idle."""
    node = live.nodes.selected
    if not live.nodes or node is None or live.current is None:
        return None
    cs = live.config_started
    return node, live.current, cs.label if cs is not None and cs.key == live.current else live.current


def fractions(live: LiveState) -> dict[str, float | None]:
    """Running configuration key -> how far it is, over every node."""
    out: dict[str, float | None] = {}
    for _ in live.nodes.each(live):
        if live.current is not None:
            out[live.current] = live.current_fraction()
    return out
