"""Latency statistics with vLLM ``bench serve`` definitions."""

from __future__ import annotations

import numpy as np

from ..records import FORMULAS, Latency, LatencyStats, RequestRow


def stats(values_s: list[float], formula: str) -> LatencyStats:
    """Mean, p50, p90, p99 (linear interpolation) of ``values_s``; empty -> count 0, Nones.
    Non-finite values are ignored."""
    try:
        v = np.asarray(values_s, dtype=np.float64)
    except (TypeError, ValueError):  # Nones among the values
        v = np.asarray([x for x in values_s if x is not None], dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return LatencyStats(count=0, formula=formula)
    p50, p90, p99 = np.percentile(v, [50, 90, 99], method="linear")
    return LatencyStats(mean_s=float(v.mean()), p50_s=float(p50), p90_s=float(p90), p99_s=float(p99),
                        count=int(v.size), formula=formula)


def request_row(
    *, id: int, send_s: float, chunk_times_s: list[float], input_tokens: int, output_tokens: int,
    hit_cap: bool = False, ok: bool = True, error: str | None = None,
) -> tuple[RequestRow, list[float]]:
    """Build a RequestRow from a request's send time and its token-bearing chunk times.
    Returns the row and the request's inter-token gaps (for the pooled ITL).
    TTFT = first chunk - send; E2E = last chunk - send; TPOT = (E2E-TTFT)/(out-1) if out > 1."""
    if not chunk_times_s:
        return RequestRow(id=id, send_s=send_s, first_token_s=None, end_s=None, input_tokens=input_tokens,
                          output_tokens=output_tokens, hit_cap=hit_cap, ok=ok, error=error), []
    first, last = chunk_times_s[0], chunk_times_s[-1]
    ttft = first - send_s
    e2e = last - send_s
    tpot = (e2e - ttft) / (output_tokens - 1) if output_tokens > 1 else None
    gaps = [b - a for a, b in zip(chunk_times_s, chunk_times_s[1:])]
    row = RequestRow(
        id=id, send_s=send_s, first_token_s=first, end_s=last, input_tokens=input_tokens,
        output_tokens=output_tokens, hit_cap=hit_cap, ok=ok, error=error,
        ttft_s=ttft, tpot_s=tpot, e2e_s=e2e, itl_count=len(gaps),
    )
    return row, gaps


def summarise(rows: list[RequestRow], itl_gaps_s: "list[float] | np.ndarray") -> Latency:
    """Latency block of a record from per-request rows and pooled ITL gaps (ok rows only;
    the caller pools the gaps of ok requests)."""
    ok = [r for r in rows if r.ok]
    return Latency(
        ttft=stats([r.ttft_s for r in ok if r.ttft_s is not None], FORMULAS["ttft"]),
        tpot=stats([r.tpot_s for r in ok if r.tpot_s is not None], FORMULAS["tpot"]),
        itl=stats(itl_gaps_s, FORMULAS["itl"]),
        e2e=stats([r.e2e_s for r in ok if r.e2e_s is not None], FORMULAS["e2e"]),
    )
