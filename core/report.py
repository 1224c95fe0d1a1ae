"""The Pareto report of a run: a text table, JSON and CSV, with the recommendation.

Rows come from records; the frontier and the recommendation from :func:`.pareto.recommend`
(``ok`` records only). Latency is the mean of the task's metric (or ``metric``), shown in ms.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable

import msgspec

from .measure.accounting import carbon_per_1k_g, cost_per_1k_usd
from .pareto import TARGET_MARGIN_REL, fmt_duration, near_target, recommend
from .adaptive.account import SweepAccount, sweep_lines
from .record_gpus import UNDER_USED_POWER_SHARE, UNDER_USED_UTIL_PCT, gpu_summary, under_used
from .records import FORMULAS, Record
from .textsafe import escape_terminal

METRIC_NAMES = {
    "tpot": "TPOT", "ttft": "TTFT", "itl": "ITL", "e2e": "E2E", "batch_latency": "Batch latency",
}

SIMULATED_NOTE = (
    "SIMULATED: these figures come from the simulated GPU/runtime (a test double and demo), "
    "not from a measurement"
)


class ReportRow(msgspec.Struct, kw_only=True):
    key: str
    label: str
    status: str
    reasons: list[str] = []
    simulated: bool = False
    latency_metric: str
    latency_ms: float | None
    energy_per_request_j: float | None
    #: J per output token (LLM) or per image (diffusion).
    energy_per_unit_j: float | None
    unit: str
    avg_power_w: float | None
    throughput: float | None
    throughput_unit: str
    frontier: bool = False
    recommended: bool = False
    fastest: bool = False
    cost_per_1k_requests_usd: float | None = None
    carbon_per_1k_requests_g: float | None = None
    tdp_estimate_j: float | None = None
    tdp_overestimation: float | None = None
    steady_window_s: float | None = None
    mean_batch: float | None = None
    num_gpus: int = 1
    power_limit_w: int | None = None
    #: Visual chat: image tokens / prompt tokens, and where the images came from ("synthetic").
    image_token_share: float | None = None
    image_source: str | None = None
    #: Per-GPU split, the node's other GPUs and neighbours, one line (None: one GPU, nothing else).
    gpus: str | None = None
    #: "57% busy, 324 of 400 W" when the GPUs were neither busy nor near their limit over the
    #: window (see :func:`.record_gpus.under_used`): something else bounded the server.
    under_used: str | None = None
    #: The measured GPUs' UUIDs (empty: not known, e.g. simulated).
    gpu_uuids: list[str] = []


class Report(msgspec.Struct, kw_only=True):
    """``--json`` output. Field order and names are the CLI's contract."""

    frontier: list[ReportRow]
    recommended: ReportRow | None
    savings_vs_fastest: float | None
    target_s: float | None
    metric: str
    rows: list[ReportRow]
    message: str
    simulated: bool
    #: Records left out (corrupt, newer schema, not a configuration of the run's profile).
    problems: list[str] = []
    #: How the sweep ran: strategy, GPU time, what the adaptive search pruned (issue 11).
    sweep: SweepAccount | None = None
    #: The recommendation lies within pareto.TARGET_MARGIN_REL of the target: the lowest-energy
    #: configuration with that margin to spare (None: not needed, or none has it).
    with_margin: ReportRow | None = None


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _latency_s(r: Record, metric: str) -> float | None:
    if not metric or metric == r.latency_metric:
        return _finite(r.latency_value_s)
    stats = getattr(r.latency, metric, None)
    return None if stats is None else _finite(stats.mean_s)


def _row(r: Record, metric: str, price: float | None, carbon: float | None) -> ReportRow:
    image = r.task == "text-to-image"
    video = r.task in ("text-to-video", "image-to-video")
    lat = _latency_s(r, metric)
    cost = co2 = None
    if r.accounting is not None:
        cost, co2 = r.accounting.cost_per_1k_requests_usd, r.accounting.carbon_per_1k_requests_g
    epr = _finite(r.energy_per_request_j)
    if epr is not None:
        if cost is None and price is not None:
            cost = cost_per_1k_usd(epr, price)
        if co2 is None and carbon is not None:
            co2 = carbon_per_1k_g(epr, carbon)
    if video:
        thr, thr_unit = r.throughput.videos_per_s, "video/s"
    elif image:
        thr, thr_unit = r.throughput.images_per_s, "img/s"
    elif r.throughput.output_tokens_per_s is not None:
        thr, thr_unit = r.throughput.output_tokens_per_s, "tok/s"
    else:
        thr, thr_unit = r.throughput.requests_per_s, "req/s"
    ss = r.steady_state
    return ReportRow(
        key=r.config_key,
        label=r.config.label(),
        status=r.status,
        reasons=list(r.reasons),
        simulated=r.simulated or r.hardware.power_source == "simulated",
        latency_metric=metric,
        latency_ms=None if lat is None else lat * 1000.0,
        energy_per_request_j=epr,
        energy_per_unit_j=_finite(r.energy_per_video_j if video else r.energy_per_image_j if image
                                  else r.energy_per_token_j),
        unit="video" if video else "image" if image else "token",
        avg_power_w=_finite(r.avg_power_w),
        throughput=_finite(thr),
        throughput_unit=thr_unit,
        cost_per_1k_requests_usd=cost,
        carbon_per_1k_requests_g=co2,
        tdp_estimate_j=_finite(r.tdp_estimate_j),
        tdp_overestimation=_finite(r.tdp_overestimation),
        steady_window_s=None if ss is None else ss.end_s - ss.start_s,
        mean_batch=None if ss is None else ss.mean_batch,
        num_gpus=r.config.num_gpus,
        power_limit_w=r.config.power_limit_w,
        image_token_share=r.prompt_tokens.image_share if r.prompt_tokens is not None else None,
        image_source=r.prompt_tokens.image_source if r.prompt_tokens is not None else None,
        gpus=gpu_summary(r) if (len(r.per_gpu) > 1 or r.idle_gpus or r.neighbours) else None,
        under_used=under_used(r) if r.status == "ok" else None,
        gpu_uuids=[u for u in r.hardware.gpu_uuids or [] if u],
    )


def build_report(
    records: Iterable[Record],
    target_s: float | None = None,
    metric: str | None = None,
    *,
    price_usd_per_kwh: float | None = None,
    carbon_g_per_kwh: float | None = None,
    problems: list[str] | None = None,
) -> Report:
    """Rows for every record (sorted by latency, missing last, then key), marks for the frontier,
    the recommendation and the fastest configuration. Price and carbon intensity fill in cost and
    carbon for records without accounting."""
    recs = list(records)
    rec = recommend(recs, target_s, metric)
    problems = list(problems or [])
    metric = rec.metric
    rows = [_row(r, metric, price_usd_per_kwh, carbon_g_per_kwh) for r in recs]
    front = set(rec.frontier)
    for row in rows:
        ok = row.status == "ok"
        row.frontier = ok and row.key in front
        row.recommended = ok and row.key == rec.recommended
        row.fastest = ok and row.key == rec.fastest
    rows.sort(key=lambda x: (x.latency_ms is None, x.latency_ms or 0.0, x.key))
    recommended = next((x for x in rows if x.recommended), None)
    with_margin = next((x for x in rows if rec.with_margin is not None and x.key == rec.with_margin), None)
    return Report(
        frontier=[x for x in rows if x.frontier],
        recommended=recommended,
        savings_vs_fastest=rec.savings_vs_fastest,
        target_s=target_s,
        metric=metric,
        rows=rows,
        message=rec.message,
        simulated=any(x.simulated for x in rows),
        problems=problems,
        with_margin=with_margin,
    )


# --------------------------------------------------------------------------- text


def _num(x: float | None, decimals: int = 1) -> str:
    return "-" if x is None else f"{x:,.{decimals}f}"


def render_text(report: Report, *, title: str | None = None) -> str:
    """The Pareto table and the lines under it, for a terminal. Every piece of record text is
    passed through :func:`escape_terminal` (records are input: they may carry escapes)."""
    return "\n".join(escape_terminal(line, keep_newlines=False) for line in _render_lines(report, title))


def _render_lines(report: Report, title: str | None) -> list[str]:
    metric_name = METRIC_NAMES.get(report.metric, report.metric or "latency")
    unit = report.rows[0].unit if report.rows else "token"
    thr_unit = report.rows[0].throughput_unit if report.rows else "tok/s"
    lines: list[str] = []
    if title:
        lines.append(title)
    if report.simulated:
        lines.append(f"!! {SIMULATED_NOTE}")
    target = "none" if report.target_s is None else f"<= {fmt_duration(report.target_s)}"
    lines.append(f"Latency metric: mean {metric_name}; target {target}. "
                 "* = on the time-energy Pareto frontier.")
    header = ["", "Configuration", f"{metric_name} ms", "J/req", f"J/{unit}", "Avg W",
              thr_unit, "Status", ""]
    table = [header]
    for r in report.rows:
        note = "<- recommended" if r.recommended else ("(fastest)" if r.fastest else "")
        table.append([
            "*" if r.frontier else "", r.label, _num(r.latency_ms), _num(r.energy_per_request_j),
            _num(r.energy_per_unit_j, 1 if r.unit in ("image", "video") else 3), _num(r.avg_power_w, 0),
            _num(r.throughput, 0 if r.throughput_unit == "tok/s" else 2), r.status, note,
        ])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    right = {2, 3, 4, 5, 6}
    for row in table:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    if not report.rows:
        lines.append("  (no records)")
    lines.append("")
    lines.append(report.message[:1].upper() + report.message[1:])
    rec = report.recommended
    if rec is not None and report.target_s is not None:
        lines.extend(margin_lines(rec, report.with_margin, report.target_s, metric_name))
    fastest = next((r for r in report.rows if r.fastest), None)
    for tag, row in (("Recommended", rec), ("Fastest", fastest if fastest is not rec else None)):
        if row is None or row.cost_per_1k_requests_usd is None:
            continue
        lines.append(f"{tag} ({row.label}) per 1,000 requests: ${row.cost_per_1k_requests_usd:.4f}, "
                     f"{_num(row.carbon_per_1k_requests_g)} gCO2e.")
    ratios = [r.tdp_overestimation for r in report.rows if r.status == "ok" and r.tdp_overestimation]
    if ratios:
        text = f"TDP estimate (TDP x GPUs x time) vs measured energy: {min(ratios):.2f}x"
        if max(ratios) - min(ratios) >= 0.005:
            text += f" to {max(ratios):.2f}x"
        if rec is not None and rec.tdp_overestimation:
            text += f" ({rec.tdp_overestimation:.2f}x for the recommended configuration)"
        lines.append(text + ".")
    shares = [r.image_token_share for r in report.rows if r.image_token_share is not None]
    if shares:
        sources = sorted({r.image_source for r in report.rows if r.image_source})
        span = f"{min(shares):.0%}" + (f" to {max(shares):.0%}" if max(shares) - min(shares) >= 0.005 else "")
        lines.append(f"Image tokens: {span} of prompt tokens ({', '.join(sources) or 'unknown'} images).")
    with_gpus = [r for r in report.rows if r.gpus]
    if with_gpus:
        lines.append("GPUs (energies over each record's window; the node's other GPUs are not in it):")
        lines.extend(f"  {r.label}: {r.gpus}" for r in with_gpus)
    under = [r for r in report.rows if r.under_used]
    if under:
        lines.append(f"GPU not the bottleneck (under {UNDER_USED_UTIL_PCT:.0f}% busy and under "
                     f"{UNDER_USED_POWER_SHARE:.0%} of its power limit: the server waited on something else):")
        lines.extend(f"  {r.label}: {r.under_used}" for r in under)
    bad = [r for r in report.rows if r.status != "ok"]
    if bad:
        lines.append("Not on the frontier because not ok:")
        for r in bad:
            reasons = "; ".join(r.reasons) or "no reason recorded"
            lines.append(f"  {r.label}: {r.status}: {reasons}")
    if report.problems:
        lines.append("Records left out:")
        lines.extend(f"  {p}" for p in report.problems)
    if report.sweep is not None:
        lines.extend(sweep_lines(report.sweep))
    return lines


def margin_lines(rec: ReportRow, alt: ReportRow | None, target_s: float, metric_name: str) -> list[str]:
    """A line when the recommendation's latency lies within pareto.TARGET_MARGIN_REL of the
    target (another GPU of the same model may miss it), naming the cheapest configuration with
    that margin to spare and what it costs in energy."""
    if rec.latency_ms is None or not near_target(rec.latency_ms / 1000.0, target_s):
        return []
    pct = f"{TARGET_MARGIN_REL:.0%}"
    head = (f"Its {metric_name} of {rec.latency_ms:.1f} ms is within {pct} of the target: another GPU of this "
            "model may miss it")
    if alt is None or not alt.energy_per_request_j or not rec.energy_per_request_j or alt.latency_ms is None:
        return [head + f"; no configuration here meets the target with {pct} to spare."]
    gap = alt.energy_per_request_j / rec.energy_per_request_j - 1.0
    return [head + f"; with {pct} to spare: {alt.label}, {alt.energy_per_request_j:.4g} J/request "
            f"({gap:+.1%}), {metric_name} {alt.latency_ms:.1f} ms."]


# --------------------------------------------------------------------------- JSON / CSV


def to_json(report: Report) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report), indent=2)


CSV_COLUMNS: list[tuple[str, str]] = [
    ("key", "configuration key"),
    ("label", "configuration"),
    ("status", "ok | invalid | failed"),
    ("frontier", "1 if on the time-energy Pareto frontier (no other ok configuration has lower "
                 "latency and no higher energy, or lower energy and no higher latency)"),
    ("recommended", "1 for the lowest energy per request meeting the latency target"),
    ("fastest", "1 for the lowest latency"),
    ("latency_ms", "mean of the latency metric, ms"),
    ("energy_per_request_j", "J per request"),
    ("energy_per_unit_j", "J per output token (E_steady / tokens_steady), per image or per video (E_batch / B)"),
    ("avg_power_w", "average power E / T over the measured window, W"),
    ("throughput", "output tokens/s over the steady window, or images/s (videos/s) over measured batches"),
    ("cost_per_1k_requests_usd", "energy per request x 1000 / 3.6e6 J/kWh x price"),
    ("carbon_per_1k_requests_g", "energy per request x 1000 / 3.6e6 J/kWh x grid intensity"),
    ("tdp_estimate_j", FORMULAS["tdp_estimate"]),
    ("tdp_overestimation", "tdp_estimate_j / measured energy over the same window"),
    ("steady_window_s", "length of the steady-state window, s"),
    ("mean_batch", "mean running batch over the steady window"),
    ("reasons", "why a configuration is invalid or failed"),
]


def to_csv(report: Report) -> str:
    """The table as CSV; ``#`` comment lines before the header state each column's formula."""
    metric = report.metric
    out = io.StringIO()
    out.write(f"# mle-tui Pareto report; latency metric: {metric} = {FORMULAS.get(metric, metric)}\n")
    if report.rows:
        e = ("energy_per_request_diffusion" if report.rows[0].unit in ("image", "video")
             else "energy_per_request_llm")
        out.write(f"# energy_per_request_j = {FORMULAS[e]}\n")
    out.write(f"# percentiles: {FORMULAS['percentiles']}\n")
    for name, formula in CSV_COLUMNS:
        out.write(f"# {name}: {formula}\n")
    if report.simulated:
        out.write(f"# {SIMULATED_NOTE}\n")
    w = csv.writer(out, lineterminator="\n")
    w.writerow([name for name, _ in CSV_COLUMNS])
    for r in report.rows:
        values = []
        for name, _ in CSV_COLUMNS:
            v = getattr(r, name)
            if isinstance(v, bool):
                v = int(v)
            elif isinstance(v, list):
                v = "; ".join(v)
            elif v is None:
                v = ""
            values.append(v)
        w.writerow(values)
    return out.getvalue()
