"""Latency statistics with vLLM ``bench serve`` definitions. CONTRACT STUB."""

from __future__ import annotations

from .records import Latency, LatencyStats, RequestRow


def stats(values_s: list[float], formula: str) -> LatencyStats:
    """Mean, p50, p90, p99 (linear interpolation) of ``values_s``; empty -> count 0, Nones."""
    raise NotImplementedError


def request_row(
    *, id: int, send_s: float, chunk_times_s: list[float], input_tokens: int, output_tokens: int,
    hit_cap: bool = False, ok: bool = True, error: str | None = None,
) -> tuple[RequestRow, list[float]]:
    """Build a RequestRow from a request's send time and its token-bearing chunk times.
    Returns the row and the request's inter-token gaps (for the pooled ITL).
    TTFT = first chunk - send; E2E = last chunk - send; TPOT = (E2E-TTFT)/(out-1) if out > 1."""
    raise NotImplementedError


def summarise(rows: list[RequestRow], itl_gaps_s: list[float]) -> Latency:
    """Latency block of a record from per-request rows and pooled ITL gaps (ok rows only)."""
    raise NotImplementedError
