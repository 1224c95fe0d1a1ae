"""The time budget of the GPU scripts (tests/gpu/run_budgeted.py on one host,
tests/gpu/ray_two_gpu.py over Ray nodes), for leased machines whose commands are limited in
time: what the next configuration needs, estimated from the ones seen, and each call's wall
time (a resumed sweep's calls add up)."""

from __future__ import annotations

import json
import time


class StartEstimate:
    """Per runner (``key`` None) or per node: the longest configuration seen without its server
    start (``slowest_s``) and the longest server start seen (``start_s``; ``default_start_s``
    before any). A configuration needs ``slowest_s``, plus a start when it needs a new server."""

    def __init__(self, default_start_s: float) -> None:
        self.default_start_s = default_start_s
        self.slowest_s = 0.0
        self.start_s: float | None = None
        self._started: dict[str | None, float] = {}  # key -> its configuration's start
        self._paid: dict[str | None, float] = {}  # key -> the server start it paid for

    def started(self, key: str | None, now: float) -> None:
        self._started[key], self._paid[key] = now, 0.0

    def ready(self, key: str | None, now: float) -> None:
        """A server came up ("ready after") for the configuration running at ``key``."""
        if key in self._started:
            ready_s = self._paid[key] = now - self._started[key]
            self.start_s = max(self.start_s or 0.0, ready_s)

    def finished(self, key: str | None, now: float) -> float | None:
        """The configuration at ``key`` ended: how long it took (None: not seen starting)."""
        if key not in self._started:
            return None
        took = now - self._started.pop(key)
        self.slowest_s = max(self.slowest_s, took - self._paid.pop(key, 0.0))
        return took

    def need_s(self, new_server: bool) -> float:
        start_s = self.start_s if self.start_s is not None else self.default_start_s
        return self.slowest_s + (start_s if new_server else 0.0)


def log_wall(out: str, mode: str, wall_s: float, summary, **extra) -> dict:  # noqa: ANN001
    """Append this call's wall time and outcome to ``OUT.wall.jsonl``; returns the line."""
    line = {"mode": mode, "wall_s": round(wall_s, 1), "completed": summary.completed, "failed": summary.failed,
            "stopped": summary.stopped, "unix_s": time.time(), **extra}
    with open(f"{out.rstrip('/')}.wall.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")
    return line
