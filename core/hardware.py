"""What a configuration and a run were measured on: the power source, the GPUs, the host and the
cluster node. Part of the record schema (:mod:`.records` re-exports every name here): a record's
:class:`Hardware`, a run manifest's :class:`GpuInfo` and :class:`ClusterNode`."""

from __future__ import annotations

from typing import Literal

import msgspec

PowerSourceKind = Literal["nvml", "simulated"]


class _S(msgspec.Struct, kw_only=True, omit_defaults=False):
    """The base of every record and manifest Struct (:mod:`.records` builds on this module)."""


class Hardware(_S, kw_only=True):
    power_source: PowerSourceKind
    gpu_names: list[str]
    gpu_indices: list[int]
    tdp_w: float
    #: Power limit enforced during the configuration, read back from the device, per GPU.
    power_limit_w: list[float] | None = None
    #: Limit that was in place before and was restored afterwards, per GPU.
    original_power_limit_w: list[float] | None = None
    #: Host name of the node the configuration ran on.
    host: str | None = None
    #: NVML UUIDs of the configuration's GPUs (None where the source has none: simulated GPU).
    gpu_uuids: list[str | None] | None = None
    #: Cluster runs (``--ray``): the node's name in the cluster (None on the local path).
    node: str | None = None


class GpuInfo(_S, kw_only=True):
    index: int
    name: str
    power_limit_w: float | None = None
    min_power_limit_w: float | None = None
    max_power_limit_w: float | None = None
    default_power_limit_w: float | None = None
    memory_total_mib: float | None = None
    #: NVML UUID (``GPU-…``); None for the simulated GPU. Power-limit ownership is per UUID.
    uuid: str | None = None


class ClusterNode(_S, kw_only=True):
    """One node of a cluster run (``Manifest.nodes``)."""

    name: str
    host: str
    node_id: str
    gpus: list[GpuInfo] = []
