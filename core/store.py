"""Run directories on disk: atomic record writes, manifest, resume, loading. CONTRACT STUB.

Layout of a run directory::

    run.json                 Manifest
    records/<config_key>.json  (or .msgpack)  one Record per finished configuration
    logs/<config_key>.log    the runtime's log
    live.jsonl               event stream (core.events) for `mle-tui attach`
    power_limits.state       original power limits while a limit is changed (see power/limits.py)
"""

from __future__ import annotations

from pathlib import Path

from .records import Manifest, Record


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, rename, fsync the directory."""
    raise NotImplementedError


def load_record_file(path: Path) -> Record:
    """Decode one record (.json or .msgpack); InputError naming file, field and problem."""
    raise NotImplementedError


class RunStore:
    def __init__(self, root: Path, fmt: str = "json") -> None:
        raise NotImplementedError

    def write_manifest(self, manifest: Manifest) -> None:
        raise NotImplementedError

    def read_manifest(self) -> Manifest | None:
        raise NotImplementedError

    def write_record(self, record: Record) -> Path:
        """Atomic; refuses to overwrite an existing record (resume never rewrites)."""
        raise NotImplementedError

    def completed_keys(self) -> set[str]:
        raise NotImplementedError

    def load_records(self) -> list[Record]:
        raise NotImplementedError

    def log_path(self, key: str) -> Path:
        raise NotImplementedError

    def live_path(self) -> Path:
        raise NotImplementedError
