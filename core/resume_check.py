"""Resuming a run directory on other hardware than it started on.

A run directory's records form one Pareto front, so they must be measurements of one GPU model
by one kind of power source. A resume on another GPU model, or simulated GPUs resuming a real
run (or the reverse), is refused; a resume on other GPUs of the same model (another node, a
later lease) is allowed and said, since each record names its own host and GPU UUIDs."""

from __future__ import annotations

from .errors import InputError
from .records import GpuInfo, Manifest


def _in_pool(gpus: list[GpuInfo], pool: list[int]) -> list[GpuInfo]:
    indices = set(pool)
    return [g for g in gpus if g.index in indices]


def check_resume_hardware(before: Manifest, power_kind: str, host: str, gpus: list[GpuInfo], pool: list[int],
                          manifest_path: str) -> list[str]:
    """Notes for the run log when ``before`` (the run directory's manifest) was measured on
    other GPUs or another host than now (``host`` "" : not compared, e.g. a cluster's driver);
    InputError (naming ``run.json``'s field) when the GPU model or the power source kind differs."""
    if before.power_source != power_kind and "simulated" in (before.power_source, power_kind):
        raise InputError(manifest_path, "power_source",
                         f"this run directory was measured with {before.power_source} power and this run "
                         f"would add {power_kind} records to it; use another --out directory")
    used_was, used_now = _in_pool(before.gpus, pool), _in_pool(gpus, pool)
    # the GPU models of the sweep's pool (all GPUs listed when none of the pool is)
    was, now = {g.name for g in used_was or before.gpus}, {g.name for g in used_now or gpus}
    if was and now and was != now:
        raise InputError(manifest_path, "gpus",
                         f"this run directory was measured on {', '.join(sorted(was))} and this machine's GPUs "
                         f"are {', '.join(sorted(now))}: records of two GPU models would share one Pareto front; "
                         "use another --out directory")
    notes = []
    uuids_was, uuids_now = {g.uuid for g in used_was if g.uuid}, {g.uuid for g in used_now if g.uuid}
    if uuids_was and uuids_now and uuids_was != uuids_now:
        notes.append(f"resuming on other GPUs than this run started on ({', '.join(sorted(u[:12] for u in uuids_was))} "
                     f"→ {', '.join(sorted(u[:12] for u in uuids_now))}, same model): each record names its GPU")
    if before.host and host and before.host != host:
        notes.append(f"resuming on host {host}; this run started on {before.host} (each record names its host)")
    return notes


def cluster_pool_gpus(infos: list[dict]) -> list[GpuInfo]:
    """The GPUs a cluster sweep runs on: each node agent's pool (its ``info()``), for
    :func:`check_resume_hardware` on the driver."""
    return [g for info in infos for g in _in_pool(info.get("gpus", []), info.get("pool", []))]
