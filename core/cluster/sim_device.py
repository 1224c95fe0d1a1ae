"""The simulated GPU of a cluster node, with a device that outlives its process.

A real GPU keeps the power limit it was given when the process that set it dies; the simulated
GPU lives in the agent's memory and would forget it. So on a cluster node the simulated GPUs'
limits are also kept in the node's ``sim-device.json`` (the "device"): an agent starting on the
node finds the limit a killed agent left, and its state file (:mod:`..power.limits`) restores
it, as on NVML. A test double only; NVML nodes never use it."""

from __future__ import annotations

import json
from pathlib import Path

from ..power.simulated import SimulatedPowerSource
from ..store import atomic_write

DEVICE_NAME = "sim-device.json"


def read_device(node_dir: Path) -> dict[int, float]:
    """Index -> limit W kept in the node's device file ({} without one)."""
    try:
        data = json.loads((Path(node_dir) / DEVICE_NAME).read_text())
    except (OSError, ValueError):
        return {}
    return {int(k): float(v) for k, v in data.items()}


class PersistentSimLimiter:
    """``PowerLimiter`` over a :class:`SimulatedPowerSource` that writes every limit it sets to
    the node's device file, and puts the file's limits on the GPUs when created."""

    kind = "simulated"

    def __init__(self, source: SimulatedPowerSource, node_dir: Path) -> None:
        self.source = source
        self.path = Path(node_dir) / DEVICE_NAME
        self._limits = read_device(node_dir)
        for index, limit_w in self._limits.items():
            if index < len(source.gpus()) and source.get_limit_w(index) != limit_w:
                source.set_limit_w(index, limit_w)

    def get_limit_w(self, index: int) -> float:
        return self.source.get_limit_w(index)

    def set_limit_w(self, index: int, limit_w: float) -> None:
        self.source.set_limit_w(index, limit_w)
        self._limits[index] = float(self.source.get_limit_w(index))
        atomic_write(self.path, json.dumps({str(k): v for k, v in sorted(self._limits.items())}).encode())

    def limit_range_w(self, index: int) -> tuple[float, float]:
        return self.source.limit_range_w(index)
