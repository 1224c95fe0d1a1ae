"""Time-energy Pareto frontier and the recommendation under a latency target."""

from __future__ import annotations

import math

import msgspec

from .records import Record


#: A recommendation whose latency lies within this share of the target may miss the target on
#: another GPU of the same model: two H200s measured the same vLLM configurations up to 4.8 %
#: apart in TPOT (records/README.md, issue 11's grid against its adaptive run, 2026-11-30).
TARGET_MARGIN_REL = 0.05


class Point(msgspec.Struct, kw_only=True, frozen=True):
    key: str
    latency_s: float
    energy_j: float


class Recommendation(msgspec.Struct, kw_only=True):
    metric: str
    target_s: float | None
    frontier: list[str]                     # config keys on the frontier, by latency
    recommended: str | None                 # config key or None
    fastest: str | None                     # lowest-latency valid config
    savings_vs_fastest: float | None        # 1 - E_rec / E_fastest
    message: str                            # one line for humans ("nothing meets 50 ms", ...)
    #: When the recommended configuration's latency lies within TARGET_MARGIN_REL of the
    #: target: the lowest-energy configuration that meets the target with that margin to spare
    #: (None: the recommendation has the margin itself, or nothing else has it).
    with_margin: str | None = None


def _order(p: Point) -> tuple[float, float, str]:
    return (p.latency_s, p.energy_j, p.key)


def _cheapest(points: list[Point]) -> Point:
    """Lowest energy; ties: lower latency, then key."""
    return min(points, key=lambda p: (p.energy_j, p.latency_s, p.key))


def near_target(latency_s: float, target_s: float) -> bool:
    """Whether a latency meeting ``target_s`` lies within :data:`TARGET_MARGIN_REL` of it."""
    return latency_s > target_s * (1.0 - TARGET_MARGIN_REL)


def frontier(points: list[Point]) -> list[Point]:
    """Points not dominated (another point strictly better in one and no worse in the other).
    Sorted by latency then energy then key; deterministic on ties (equal points: both kept).
    Points with a non-finite coordinate are left out."""
    pts = sorted((p for p in points if math.isfinite(p.latency_s) and math.isfinite(p.energy_j)), key=_order)
    out: list[Point] = []
    best_before = math.inf  # lowest energy among strictly lower latencies
    i = 0
    while i < len(pts):
        j = i
        while j < len(pts) and pts[j].latency_s == pts[i].latency_s:
            j += 1
        group_min = pts[i].energy_j  # sorted by energy within equal latency
        if group_min < best_before:
            out.extend(p for p in pts[i:j] if p.energy_j == group_min)
        best_before = min(best_before, group_min)
        i = j
    return out


def fmt_duration(s: float) -> str:
    """Human duration: ms below 1 s, else s."""
    if abs(s) < 1.0:
        return f"{s * 1000:.1f} ms"
    return f"{s:.2f} s"


def _latency_of(r: Record, metric: str) -> float | None:
    if not metric or metric == r.latency_metric:
        return r.latency_value_s
    stats = getattr(r.latency, metric, None)
    return None if stats is None else stats.mean_s


def _valid(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def recommend(records: list[Record], target_s: float | None, metric: str | None = None) -> Recommendation:
    """Use only ``ok`` records with latency and energy per request. Recommended = lowest energy
    per request with latency <= target (ties: lower latency, then key); with no target, the
    lowest energy overall. ``metric`` defaults to the records' ``latency_metric`` (the first
    ``ok`` record's); another metric is read from ``record.latency.<metric>.mean_s``. Savings
    are quoted against the fastest configuration (lowest latency; ties: lower energy, key)."""
    if metric is None:
        metric = next((r.latency_metric for r in records if r.status == "ok" and r.latency_metric),
                      next((r.latency_metric for r in records if r.latency_metric), ""))
    points: list[Point] = []
    for r in records:
        if r.status != "ok":
            continue
        lat = _latency_of(r, metric)
        if _valid(lat) and _valid(r.energy_per_request_j):
            points.append(Point(key=r.config_key, latency_s=float(lat), energy_j=float(r.energy_per_request_j)))  # type: ignore[arg-type]
    name = metric or "latency"
    if not points:
        counts: dict[str, int] = {}
        for r in records:
            counts[r.status] = counts.get(r.status, 0) + 1
        detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no records"
        return Recommendation(metric=metric, target_s=target_s, frontier=[], recommended=None, fastest=None,
                              savings_vs_fastest=None, message=f"no valid configuration to recommend ({detail})")
    front = frontier(points)
    fastest = min(points, key=_order)
    meets = points if target_s is None else [p for p in points if p.latency_s <= target_s]
    if not meets:
        return Recommendation(
            metric=metric, target_s=target_s, frontier=[p.key for p in front], recommended=None,
            fastest=fastest.key, savings_vs_fastest=None,
            message=(f"nothing meets {name} <= {fmt_duration(target_s)}; best {name} is "  # type: ignore[arg-type]
                     f"{fmt_duration(fastest.latency_s)} ({fastest.key})"),
        )
    rec = _cheapest(meets)
    savings = 1.0 - rec.energy_j / fastest.energy_j if fastest.energy_j > 0 else None
    under = "no latency target" if target_s is None else f"{name} <= {fmt_duration(target_s)}"
    msg = (f"recommended {rec.key} ({under}): {rec.energy_j:.4g} J/request at {name} "
           f"{fmt_duration(rec.latency_s)}")
    if rec.key == fastest.key:
        msg += ", which is also the fastest"
    elif savings is not None:
        msg += (f", saving {savings:.1%} vs fastest {fastest.key} ({fastest.energy_j:.4g} J/request, "
                f"{fmt_duration(fastest.latency_s)})")
    return Recommendation(metric=metric, target_s=target_s, frontier=[p.key for p in front], recommended=rec.key,
                          fastest=fastest.key, savings_vs_fastest=savings, message=msg,
                          with_margin=_with_margin(points, rec, target_s))


def _with_margin(points: list[Point], rec: Point, target_s: float | None) -> str | None:
    if target_s is None or not near_target(rec.latency_s, target_s):
        return None
    spare = [p for p in points if not near_target(p.latency_s, target_s)]
    return _cheapest(spare).key if spare else None
