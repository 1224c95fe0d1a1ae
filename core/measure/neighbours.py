"""Neighbour lines (another mle-tui process holding GPUs of this host while a configuration ran,
``run dir X (pid P) on GPU …`` from :func:`..power.gpu_lock.neighbour_lines`) as they are read:
a node of the *same* cluster sweep on this host (its agent's scratch run directory
``…/<node>/scratch/<run_id>``) is that node, not a foreign sweep. Pure text; the record keeps
the raw line in ``neighbours``."""

from __future__ import annotations

import re


def same_sweep_node(run_id: str, line: str) -> tuple[str, str] | None:
    """``(node, "GPU …")`` when ``line`` is another node of the sweep ``run_id``, else None."""
    if not run_id:
        return None
    m = re.match(rf"run dir .*/([^/]+)/scratch/{re.escape(run_id)} \(pid \d+\) on (.+)$", line)
    return (m.group(1), m.group(2)) if m else None


def neighbour_text(run_id: str, line: str) -> str:
    node = same_sweep_node(run_id, line)
    return f"this sweep's node {node[0]} on the same host ({node[1]})" if node else line


def neighbour_warning(run_id: str, line: str) -> str:
    """The record's warning reason for one neighbour line."""
    node = same_sweep_node(run_id, line)
    if node:
        return (f"warning: this sweep's node {node[0]} ran on the same host at the same time ({node[1]}): "
                "the two share the host's CPUs, power and cooling")
    return f"warning: another mle-tui sweep on this host at the same time: {line}"
