"""What every sweep driver does before and around its configurations, whichever runs them: the
run directory checked for a resume with the same profile, the workload loaded, and each
configuration's share of it. Used by the local runner (:mod:`.runner`) and the cluster driver
(:mod:`.cluster.driver`) alike."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import msgspec

from .config import Config
from .dataset_types import Request
from .errors import InputError
from .profile import Profile, decode_profile
from .profile_checks import profile_differences, profiles_equal
from .records import Manifest
from .store import RunStore


def open_run_dir(store: RunStore, profile: Profile) -> Manifest | None:
    """Check a run directory before a sweep writes to it (the caller holds its lock): records
    without a manifest refuse, a manifest of another profile refuses (InputError), else the
    layout is created. Returns the existing manifest (a resume) or None."""
    store.check_resumable()
    store.ensure()
    manifest = store.read_manifest()
    if manifest is not None and manifest.profile_toml:
        before = decode_profile(manifest.profile_toml, f"{store.manifest_path} (profile_toml)")
        if not profiles_equal(before, profile):
            raise InputError(str(store.manifest_path), "profile_toml",
                             f"this run directory was started with a different profile "
                             f"({'; '.join(profile_differences(before, profile))}); use another --out "
                             "directory (or the same profile to resume)")
    return manifest


def load_workload(profile: Profile, profile_path: str | None, runtime: object | None,
                  on_note: Callable[[str], None], cancel: threading.Event | None = None) -> list[Request]:
    """The sweep's requests: the runtime's own loader where it has one, else the profile's
    dataset. InputError when the dataset gives none."""
    base = Path(profile_path).parent if profile_path else None
    loader = getattr(runtime, "load_requests", None)
    if loader is None:
        from .datasets import load_requests

        out = list(load_requests(profile, base_dir=base, on_note=on_note, cancel=cancel))
    else:
        out = list(loader(profile, base_dir=base, on_note=on_note))
    if not out:
        raise InputError(profile_path or "", "dataset", "the dataset produced no requests")
    return out


def request_count(profile: Profile, num_base: int, cfg: Config) -> int:
    """How many requests :func:`requests_for` gives the configuration from ``num_base`` loaded
    ones: ``max(num_base, dataset.requests_per_seq x B)`` for LLM sweeps, else ``num_base``."""
    k = profile.dataset.requests_per_seq
    if not (k and profile.is_llm and num_base):
        return num_base
    return max(num_base, k * cfg.batch)


def requests_for(profile: Profile, base: list[Request], cfg: Config) -> list[Request]:
    """The configuration's workload: the loaded requests, cycled up to
    ``dataset.requests_per_seq`` x B for LLM sweeps (ids renumbered, order kept)."""
    if not (profile.dataset.requests_per_seq and profile.is_llm and base):
        return base
    n = request_count(profile, len(base), cfg)
    return [msgspec.structs.replace(base[i % len(base)], id=i) for i in range(n)]
