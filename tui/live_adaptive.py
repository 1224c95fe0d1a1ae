"""The adaptive search in the live view (issue 11): rows it pruned, the ETA over what it may
still measure, and the sweep's count and GPU time ("measured 14, pruned 20 of 40 · 26 GPU-min,
grid ≈ 95"). Folded from :class:`~..core.events.GpuTimeUpdate`, so attach replays it from
``live.jsonl``. No Textual here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.adaptive.gputime import fmt_num, gpu_time_unit
from ..core.events import GpuTimeUpdate
from .fmt import fmt_duration
from .live_rows import PENDING

if TYPE_CHECKING:
    from .live import LiveState

#: Display status of a configuration the adaptive search excluded (never measured; not the
#: user's "skipped").
PRUNED = "pruned"


def apply_pruned(live: LiveState, e: GpuTimeUpdate) -> None:
    """Mark the configurations the search excludes now; one it no longer excludes (a bound
    dropped when a measurement broke its rule) is pending again."""
    if e.strategy != "adaptive":
        return
    live.adaptive = True
    for key, row in live.rows.items():
        why = e.pruned.get(key)
        if why is not None and row.status in (PENDING, PRUNED):  # the rule's text follows the best
            row.status, row.reasons = PRUNED, [why]
        elif why is None and row.status == PRUNED:
            row.status, row.reasons = PENDING, []


def unprune_all(live: LiveState) -> None:
    """A new sweep in the same directory (resume): the search decides again."""
    live.adaptive = False
    for row in live.rows.values():
        if row.status == PRUNED:
            row.status, row.reasons = PENDING, []


def eta_text(live: LiveState) -> str:
    """"12m" for a grid run; "~12m (adaptive)" for an adaptive one: the pending rows are the
    configurations the search may still measure (every one no bound excludes yet), an upper
    bound of its plan that shrinks as it prunes."""
    text = fmt_duration(live.eta_s())
    if not live.adaptive or live.finished is not None:
        return text
    return f"~{text} (adaptive)"


def position_text(live: LiveState) -> str:
    """The current configuration's place: "3/40" on the grid; nothing for an adaptive run (its
    grid index says nothing about what is left: :func:`gpu_time_text` says "measured 14,
    pruned 20 of 40")."""
    cs = live.config_started
    return "" if cs is None or live.adaptive else f"{cs.index + 1}/{cs.total}"


def gpu_time_text(live: LiveState) -> str:
    """"adaptive: measured 14, pruned 20 of 40, 26 GPU-min, grid ≈ 95 (3.7x)"; a grid run:
    "grid: 14/40 configs, 26 GPU-min"."""
    g = live.gpu_time
    if g is None:
        return ""
    per, unit = gpu_time_unit(g.spent_gpu_s)
    if g.strategy == "adaptive":
        text = f"adaptive: measured {g.measured}, pruned {len(g.pruned)} of {g.total}"
    else:
        text = f"{g.strategy}: {g.measured}/{g.total} configs"
    text += f", {fmt_num(g.spent_gpu_s / per)} {unit}"
    if g.strategy == "adaptive" and g.grid_estimate_gpu_s is not None:
        text += f", grid ≈ {fmt_num(g.grid_estimate_gpu_s / per)}"
        if g.spent_gpu_s > 0:
            text += f" ({g.grid_estimate_gpu_s / g.spent_gpu_s:.1f}x)"
    return text
