"""Formatting shared by the screens: durations, energies, latencies, metric names, GPU health."""

from __future__ import annotations

import msgspec

from ..core.events import HealthSample


def health_text(sample: HealthSample | None, running: bool) -> str:
    """GPU health for the narrow pane beside the charts: one line per GPU, warnings below."""
    from ..core.power.health import health_line

    if sample is None:
        return "GPU health: —" if running else ""
    lines = []
    for g in sample.gpus:
        warn = g.warnings
        lines.append(health_line([msgspec.structs.replace(g, throttle=[], strangers=[])]))
        lines += [f"  ⚠ {w}" for w in warn]
    return "\n".join(lines)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def fmt_energy(j: float | None) -> str:
    if j is None:
        return "—"
    if j >= 1e6:
        return f"{j / 1e6:.2f} MJ"
    if j >= 1e3:
        return f"{j / 1e3:.2f} kJ"
    return f"{j:.1f} J" if j >= 10 else f"{j:.3g} J"


def fmt_latency(s: float | None) -> str:
    """Latency in the unit that fits: µs below 1 ms, ms below 1 s, else s."""
    if s is None or s != s:
        return "—"
    a = abs(s)
    if a < 1e-3:
        return f"{s * 1e6:.0f} µs" if a >= 1e-5 else f"{s * 1e6:.2g} µs"
    if a < 1.0:
        return f"{s * 1e3:.1f} ms" if a < 0.1 else f"{s * 1e3:.0f} ms"
    return f"{s:.2f} s" if a < 100 else f"{s:.0f} s"


#: How a latency metric is named on screen.
METRIC_LABEL = {"ttft": "TTFT", "tpot": "TPOT", "itl": "ITL", "e2e": "E2E", "batch_latency": "batch latency"}


def metric_label(metric: str | None) -> str:
    return METRIC_LABEL.get(metric or "", (metric or "latency").replace("_", " "))
