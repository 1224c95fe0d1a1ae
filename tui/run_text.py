"""What the run screen says, as text made from the :class:`~.live.LiveState` alone: the status
line (state, elapsed, ETA, configuration, run id), the sweep's progress list, the steady-state
line and the batch chart's legend. Pure functions (no widgets): the screen decides when to
redraw and where the text goes."""

from __future__ import annotations

from rich.text import Text

from .charts import TimeData
from .live import DONE, EARLIER, FAILED, INVALID, PENDING, RUNNING, LiveState, fmt_duration, fmt_energy
from .live_adaptive import PRUNED, eta_text, position_text
from .live_nodes import fractions

#: Mark and style of a configuration in the progress list, by status (``detach_ui`` adds one).
SYMBOL = {DONE: ("✓", "green"), RUNNING: ("▶", "bold yellow"), PENDING: ("·", "dim"),
          FAILED: ("✗", "red"), INVALID: ("!", "magenta"), EARLIER: ("↺", "green"),
          PRUNED: ("–", "dim")}  # excluded by the adaptive search (never measured)


def status_text(live: LiveState, *, attached: bool, attach_ended: bool) -> str:
    """Status word, elapsed and ETA first (an 80-column terminal keeps them), then the
    configuration, its progress and the run id. ``attached``: the screen follows a run
    started elsewhere; ``attach_ended``: that run's writer is gone."""
    parts = []
    if live.error is not None:
        parts.append(f"✗ RUN FAILED: {live.error} · r results")
    elif live.finished is not None:
        f = live.finished
        word = "STOPPED" if f.stopped else "FINISHED"
        parts.append(f"■ {word} {f.completed} done ({f.invalid} invalid) {f.failed} failed · r results")
    elif live.draining and not (live.stopping or attach_ended):  # the app's f
        parts.append("◼ FINISHING current configuration, then stopping")
    elif attached:
        parts.append("◉ ATTACHED" + (" (writer gone)" if attach_ended else ""))
    elif live.stopping:
        parts.append("◼ STOPPING…")
    else:
        parts.append("▶ RUNNING")
    timing = f"elapsed {fmt_duration(live.elapsed_s())}"
    if live.finished is None and live.error is None and live.ended_at_s is None:
        timing += f" ETA {eta_text(live)}"
    parts.append(timing)
    if live.simulated:
        parts.append("SIMULATED")
    if live.config_started is not None and live.finished is None and live.current:
        cs = live.config_started
        where = f"{live.nodes.selected}: " if live.nodes.selected else ""
        parts.append(where + " ".join(p for p in (position_text(live), cs.label) if p))
        parts.append(live.counter_text())
    parts.append(live.gpu_time_text())
    if live.run_id:
        parts.append(live.run_id)
    return " · ".join(p for p in parts if p)


def progress_text(live: LiveState) -> Text:
    """The sweep's counts by status, then one line per configuration: its mark, label and the
    running one's progress, the energy per request, or why it failed or was pruned."""
    text = Text()
    counts = live.counts()
    head = " ".join(f"{SYMBOL[k][0]}{v}" for k, v in sorted(counts.items()) if k in SYMBOL)
    text.append(f"Sweep {head}\n", style="bold")
    fracs = fractions(live) if live.nodes else None
    for row in sorted(live.rows.values(), key=lambda r: r.index):
        sym, style = SYMBOL.get(row.status, ("?", ""))
        label = row.label or row.key
        frac = None if row.status != RUNNING else fracs.get(row.key) if fracs is not None else live.current_fraction()
        if frac is not None:
            extra = f"{int(100 * frac)}%"
        elif row.energy_per_request_j is not None:
            extra = fmt_energy(row.energy_per_request_j)
        elif row.status in (FAILED, INVALID) and row.reasons:
            extra = row.reasons[0][:14]
        elif row.status == PRUNED and row.reasons:  # the rule: "latency bound", "energy bound"
            extra = row.reasons[0].split(":")[0][:14]
        else:
            extra = ""
        text.append(f"{sym} ", style=style)
        text.append(f"{label[:16]:<16} ")
        text.append(f"{extra}\n", style="dim" if row.status in (PENDING, PRUNED) else "")
    return text


def steady_text(live: LiveState) -> str:
    """The line below the charts: the steady window and its figures (LLM), or the batches
    measured so far (diffusion)."""
    s = live.steady
    B = live.config_started.config.batch if live.config_started else None
    if live.diffusion and live.current is not None:
        return live.batches_text()
    if live.current is None and s is None:
        return "steady state: —"
    if s is None:
        return f"steady state: not yet (waiting for the running batch to saturate at B={B})"
    end = f"{s.end_s:.1f} s ({s.end_s - s.start_s:.1f} s)" if s.end_s is not None else "open"
    text = f"steady {s.start_s:.1f} s → {end}"
    if s.mean_batch is not None:
        text += f" · mean batch {s.mean_batch:.1f}/{B}"
    if s.energy_per_token_j is not None:
        text += f" · {s.energy_per_token_j:.3g} J/token"
    gates = live.steady_gates_text()
    if gates:
        text += f" · gates {gates}"
    return text


def batch_legend(d: TimeData) -> str:
    """The batch chart's legend: the last running and waiting counts, B and the steady mark."""
    bl = "Batch: ⣿ running"
    if d.running is not None and len(d.running):
        bl += f" {d.running[-1]:.0f} · waiting {d.waiting[-1]:.0f} (right axis)"
    if d.max_num_seqs:
        bl += f" · ─ B={d.max_num_seqs}"
    if d.steady_start_s is not None:
        bl += " · ··· steady"
    return bl
