"""Time-energy Pareto frontier and the recommendation under a latency target. CONTRACT STUB."""

from __future__ import annotations

import msgspec

from .records import Record


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


def frontier(points: list[Point]) -> list[Point]:
    """Points not dominated (another point strictly better in one and no worse in the other).
    Sorted by latency then energy then key; deterministic on ties (equal points: both kept)."""
    raise NotImplementedError


def recommend(records: list[Record], target_s: float | None, metric: str | None = None) -> Recommendation:
    """Use only ``ok`` records with latency and energy per request. Recommended = lowest energy
    per request with latency <= target (ties: lower latency, then key)."""
    raise NotImplementedError
