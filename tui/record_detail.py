"""One configuration's record in the results screen: its detail text (energy, GPUs, steady
window and gates, phases, latency) and its power and batch timelines."""

from __future__ import annotations

import numpy as np
from rich.text import Text

from ..core.records import Record
from ..core.record_gpus import gpu_summary, under_used
from .charts import TimeData, shared_x_range
from .live import fmt_energy, fmt_latency, metric_label

STATUS_STYLE = {"ok": "green", "invalid": "magenta", "failed": "red"}


def _fmt_num(v: float | None, digits: int) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def record_timedata(rec: Record) -> TimeData:
    p, b = rec.power_timeline, rec.batch_timeline
    d = TimeData()
    if p.t_s:
        d.power_t = np.asarray(p.t_s, dtype=float)
        d.total_w = np.asarray(p.total_w, dtype=float)
        if len(p.per_gpu_w) > 1:
            d.per_gpu_w = [np.asarray(v, dtype=float) for _, v in sorted(p.per_gpu_w.items(), key=lambda kv: int(kv[0]))]
        if p.memory_w:
            d.memory_w = np.asarray(p.memory_w, dtype=float)
    if b.t_s:
        d.batch_t = np.asarray(b.t_s, dtype=float)
        d.running = np.asarray(b.running, dtype=float)
        d.waiting = np.asarray(b.waiting or [0.0] * len(b.t_s), dtype=float)
    if rec.steady_state is not None:
        d.steady_start_s, d.steady_end_s = rec.steady_state.start_s, rec.steady_state.end_s
    d.max_num_seqs = rec.config.batch
    d.phases = [(p.start_s, p.end_s, p.phase) for p in rec.phases]
    d.x_range = shared_x_range(d.power_t, d.batch_t)
    return d


def phase_summary(rec: Record) -> str:
    """Mean time and energy of each diffusion phase per measured batch, after the letter the
    timeline's time axis uses for it (fits 80 columns); "" without phases."""
    measured = [p for p in rec.phases if not p.warmup]
    if not measured:
        return ""
    n = len({p.batch for p in measured})
    bits = []
    for name, letter in (("encode", "E"), ("denoise", "D"), ("decode", "V")):
        ps = [p for p in measured if p.phase == name]
        if not ps:
            continue
        dur = sum(p.end_s - p.start_s for p in ps) / n
        es = [p.energy_j for p in ps if p.energy_j is not None]
        bits.append(f"{letter} {name} {fmt_latency(dur)}" + (f" {fmt_energy(sum(es) / n)}" if es else ""))
    return " · ".join(bits)


def config_detail(rec: Record) -> Text:
    t = Text()
    t.append(f"{rec.config.label()} ({rec.config_key}) ", style="bold")
    t.append(rec.status, style=STATUS_STYLE.get(rec.status, ""))
    if rec.simulated:
        t.append(" SIMULATED", style="reverse")
    if rec.reasons:
        t.append(" — " + "; ".join(rec.reasons))
    t.append(f"\nE/req {fmt_energy(rec.energy_per_request_j)} · avg {_fmt_num(rec.avg_power_w, 0)} W · "
             f"total {fmt_energy(rec.total_energy_j)} in {rec.duration_s:.1f} s")
    gpus = gpu_summary(rec)
    if gpus:
        t.append("\n" + gpus)
    idle = under_used(rec) if rec.status == "ok" else None
    if idle:
        t.append(f"\nGPU not the bottleneck: {idle} (the server waited on something else)")
    s = rec.steady_state
    if s is not None:
        t.append(f"\nsteady {s.start_s:.1f}–{s.end_s:.1f} s ({s.rule}) · mean batch {s.mean_batch:.1f}/"
                 f"{rec.config.batch} · {fmt_energy(s.energy_j)} · {s.tokens} tokens")
        if s.gates:
            t.append(" · gates " + " ".join(f"{g.name} {'✓' if g.ok else '✗'}" for g in s.gates))
    phases = phase_summary(rec)
    if phases:
        t.append("\n" + phases)
    lat = rec.latency
    bits = []
    for name in ("ttft", "tpot", "itl", "e2e", "batch_latency"):
        st = getattr(lat, name)
        if st is not None and st.mean_s is not None:
            bits.append(f"{metric_label(name)} {fmt_latency(st.mean_s)} (p50 {fmt_latency(st.p50_s)} "
                        f"p90 {fmt_latency(st.p90_s)} p99 {fmt_latency(st.p99_s)})")
    if bits:
        t.append("\n" + " · ".join(bits))
    return t
