"""The run's ETA (no Textual here): remaining wall time from the configurations seen from start
to end, the running ones' progress, or the sweep's rate so far when attached; on one host or
shared by a cluster run's nodes. :meth:`.live.LiveState.eta_s` calls :func:`eta_s`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .live_rows import DONE, FAILED, INVALID, PENDING

if TYPE_CHECKING:
    from .live import LiveState


def eta_s(live: LiveState) -> float | None:
    """Remaining wall time: mean wall length of the configurations seen from start to end
    × configurations left (adaptive: not the PRUNED ones; draining: none), minus what the
    current one has done (scaled by its progress).
    Attached to a run (durations not seen live), the sweep's wall rate so far is used."""
    if live.nodes:
        return cluster_eta_s(live)
    if live.finished is not None or live.ended_at_s is not None:
        return 0.0
    # draining (the app's f): the running configuration is all that is left
    pending = 0 if live.draining else sum(1 for r in live.rows.values() if r.status == PENDING)
    frac = live.current_fraction()
    now = live._now_s()
    if live._wall_durations_s:
        durations = list(live._wall_durations_s)
        span = max(0.0, now - live._config_wall_start_s) if (
            live.current is not None and live._config_wall_start_s is not None) else 0.0
        mean = sum(durations) / len(durations)
        if frac:
            current_left = span * (1.0 - frac) / frac
        else:
            current_left = max(0.0, mean - span) if live.current is not None else 0.0
        return pending * mean + current_left
    if live.current is not None and live._config_wall_start_s is not None and frac:
        # First configuration seen live: extrapolate from its own progress.
        span = max(0.0, now - live._config_wall_start_s)
        per_config = span / frac
        return per_config * (1.0 - frac) + pending * per_config
    # Attached: configurations finished in this sweep so far, over the elapsed wall time.
    elapsed = live.elapsed_s()
    done = sum(1 for r in live.rows.values() if r.status in (DONE, FAILED, INVALID)) + (frac or 0.0)
    if elapsed is None or done <= 0:
        return None
    per_config = elapsed / done
    return per_config * (pending + (1.0 - frac if frac is not None else 1.0 if live.current else 0.0))


def cluster_eta_s(live: LiveState) -> float | None:
    """Remaining wall time over the nodes: work left (configurations pending × mean wall
    length, plus what each node's running one has left) shared by the nodes; before any
    configuration was seen from start to end, the sweep's rate so far."""
    if live.finished is not None or live.ended_at_s is not None:
        return 0.0
    # draining (the app's f): only what runs now is left, and the nodes finish it side by side
    pending = 0 if live.draining else sum(1 for r in live.rows.values() if r.status == PENDING)
    now = live._now_s()
    mean = sum(live._wall_durations_s) / len(live._wall_durations_s) if live._wall_durations_s else None
    left, fracs, running, longest = 0.0, 0.0, 0, 0.0
    for _ in live.nodes.each(live):
        if live.current is None:
            continue
        running += 1
        frac = live.current_fraction()
        fracs += frac or 0.0
        span = max(0.0, now - live._config_wall_start_s) if live._config_wall_start_s is not None else 0.0
        if mean is not None:
            node_left = span * (1.0 - frac) / frac if frac else max(0.0, mean - span)
            left, longest = left + node_left, max(longest, node_left)
    width = max(1, len(live.nodes.order))
    if mean is not None:
        return longest if live.draining else (pending * mean + left) / width
    elapsed = live.elapsed_s()
    done = sum(1 for r in live.rows.values() if r.status in (DONE, FAILED, INVALID)) + fracs
    if elapsed is None or done <= 0:
        return None
    return elapsed / done * (pending + running - fracs)
