"""GPU indices under ``CUDA_VISIBLE_DEVICES``.

mle-tui's GPU index ``i`` is Zeus's: the ``i``-th GPU this process sees, which is NVML index
``i`` without ``CUDA_VISIBLE_DEVICES`` and its ``i``-th entry with it (a Ray actor, a Slurm task
or ``CUDA_VISIBLE_DEVICES=1 mle-tui run``). A child process (the vLLM server) must be given the
entries, not the indices, or it runs on another GPU than the one measured and limited."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping


def visible_entries(env: Mapping[str, str] | None = None) -> list[str] | None:
    """This process's ``CUDA_VISIBLE_DEVICES`` entries; None when it is unset (every GPU)."""
    raw = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES")
    if raw is None or not raw.strip():
        return None
    return [e.strip() for e in raw.split(",") if e.strip()]


def child_visible_devices(indices: Iterable[int], env: Mapping[str, str] | None = None) -> str:
    """``CUDA_VISIBLE_DEVICES`` for a child that must use our GPUs ``indices``."""
    entries = visible_entries(env)
    out = []
    for i in indices:
        if entries is not None and not 0 <= i < len(entries):
            raise ValueError(f"GPU {i} is not among CUDA_VISIBLE_DEVICES={','.join(entries)}")
        out.append(entries[i] if entries is not None else str(i))
    return ",".join(out)


def indices_of(ids: Iterable[str], uuids: Mapping[str, int], env: Mapping[str, str] | None = None) -> list[int]:
    """Our indices of the GPUs named by ``ids`` (entries as Ray's ``get_gpu_ids()`` gives them:
    what the raylet's ``CUDA_VISIBLE_DEVICES`` held, NVML indices or UUIDs): their positions in
    this process's ``CUDA_VISIBLE_DEVICES`` where it is set (Ray sets it to them), else the
    UUID's index (``uuids``), else the NVML index itself. Unknown ids are left out."""
    entries = visible_entries(env)
    out: set[int] = set()
    for raw in ids:
        i = str(raw)
        if entries is not None:
            if i in entries:
                out.add(entries.index(i))
        elif i in uuids:
            out.add(uuids[i])
        elif i.isdigit():
            out.add(int(i))
    return sorted(out)


def nvml_device(index: int, env: Mapping[str, str] | None = None) -> int | str | None:
    """What NVML calls our GPU ``index`` where code reads NVML directly (not through Zeus):
    its NVML index, or a UUID from the mask; None when the mask has no such entry."""
    entries = visible_entries(env)
    if entries is None:
        return index
    if not 0 <= index < len(entries):
        return None
    e = entries[index]
    return int(e) if e.isdigit() else e
