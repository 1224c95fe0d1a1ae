"""Process helpers for tests that check no child outlives a run."""

from __future__ import annotations

import os
from pathlib import Path


def children_of_me() -> set[int]:
    """Pids whose parent is this process (Linux /proc)."""
    me = os.getpid()
    out = set()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == me:
            out.add(int(p.name))
    return out
