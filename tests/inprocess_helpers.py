"""Shared by the in-process runtime tests (transformers, diffusers)."""

from __future__ import annotations

from pathlib import Path

from mle_tui.core.records import Record
from mle_tui.core.store import RunStore


def records_by_key(out: Path) -> dict[str, Record]:
    """A run directory's records by configuration key."""
    return {r.config_key: r for r in RunStore(out).load_records()}
