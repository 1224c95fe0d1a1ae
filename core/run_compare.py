"""Two runs of one model against each other, from their reports (pure): the configurations both
measured and how far apart their energies are, whether the recommendations agree (and if not,
what the other run's pick measured in this one), and the GPU time each took — what `compare`
prints below each run's recommendation, e.g. an adaptive run against the full grid (issue 11)
or a sweep on one GPU against the same sweep over two nodes."""

from __future__ import annotations

import statistics

from .adaptive.gputime import fmt_num, gpu_time_unit
from .pareto import TARGET_MARGIN_REL
from .report import Report, ReportRow


def _ok(rep: Report) -> dict[str, ReportRow]:
    return {r.key: r for r in rep.rows if r.status == "ok" and r.energy_per_request_j}


def _pct(x: float) -> str:
    return f"{x:+.1%}".replace("-", "−")


def _meets(row: ReportRow, target_s: float | None) -> bool:
    return target_s is None or (row.latency_ms is not None and row.latency_ms <= target_s * 1000.0)


def compare_lines(base_name: str, base: Report, name: str, other: Report) -> list[str]:
    """Lines on ``other`` against ``base`` (both reports at one target and metric)."""
    lines = []
    if base.simulated != other.simulated:
        sim, real = (name, base_name) if other.simulated else (base_name, name)
        lines.append(f"{name} vs {base_name}: {sim} is SIMULATED, {real} measured")
    a, b = _ok(base), _ok(other)
    shared = sorted(set(a) & set(b))
    if shared:
        d = [b[k].energy_per_request_j / a[k].energy_per_request_j - 1.0 for k in shared]  # type: ignore[operator]
        lines.append(f"{name} vs {base_name}: {len(shared)} configuration{'s' * (len(shared) != 1)} in both, "
                     f"J/request {_pct(min(d))} to {_pct(max(d))} (median {_pct(statistics.median(d))})"
                     + _units(shared, a, b))
    ra, rb = base.recommended, other.recommended
    if ra is not None and rb is not None:
        if ra.key == rb.key:
            lines.append(f"  same recommendation ({ra.key}): {ra.energy_per_request_j:.4g} and "
                         f"{rb.energy_per_request_j:.4g} J/request")
        else:
            there = a.get(rb.key)
            if there is None:
                seen = f"{base_name} did not measure it"
            else:
                gap = there.energy_per_request_j / ra.energy_per_request_j - 1.0  # type: ignore[operator]
                measured = f"{there.energy_per_request_j:.4g} J/request, {_pct(gap)} from {ra.key}"
                if _meets(there, base.target_s):
                    seen = f"in {base_name} it measured {measured}"
                else:
                    over = there.latency_ms / (base.target_s * 1000.0) - 1.0  # type: ignore[operator]
                    seen = f"in {base_name} it missed the target by {over:.1%} ({there.latency_ms:.1f} ms) at {measured}"
            lines.append(f"  different recommendation: {base_name} {ra.key} ({ra.energy_per_request_j:.4g} J/request), "
                         f"{name} {rb.key} ({rb.energy_per_request_j:.4g} J/request); {seen}")
            for who, rep, theirs in ((name, other, ra.key), (base_name, base, rb.key)):
                if rep.with_margin is not None and rep.with_margin.key == theirs:
                    lines.append(f"  {who}'s pick lies within {TARGET_MARGIN_REL:.0%} of the target; its pick with "
                                 f"that margin to spare is {theirs}, the other run's recommendation")
    ga = base.sweep.gpu_time if base.sweep is not None else None
    gb = other.sweep.gpu_time if other.sweep is not None else None
    if ga is not None and gb is not None and ga.spent_gpu_s > 0 and gb.spent_gpu_s > 0:
        unit_s, unit = gpu_time_unit(max(ga.spent_gpu_s, gb.spent_gpu_s))
        lines.append(f"  GPU time: {base_name} {fmt_num(ga.spent_gpu_s / unit_s)} {unit} ({ga.measured} measured), "
                     f"{name} {fmt_num(gb.spent_gpu_s / unit_s)} {unit} ({gb.measured} measured): "
                     f"{base_name} / {name} = {ga.spent_gpu_s / gb.spent_gpu_s:.2f}x")
    return lines


def _units(shared: list[str], a: dict[str, ReportRow], b: dict[str, ReportRow]) -> str:
    """How many of the shared configurations ran on other GPUs (by UUID) in the two runs: one
    GPU against another of the same model differs by a few percent under a binding power limit
    (two H200s, 2026-11-30), which is then part of the spread."""
    known = [k for k in shared if a[k].gpu_uuids and b[k].gpu_uuids]
    other = [k for k in known if set(a[k].gpu_uuids) != set(b[k].gpu_uuids)]
    if not other:
        return "; on the same GPUs" if known else ""
    return (f"; {'all' if len(other) == len(shared) else f'{len(other)} of them'} on other GPUs "
            "(one GPU against another is part of the spread)")
