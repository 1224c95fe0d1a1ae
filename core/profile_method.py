"""The profile sections of the measurement method: how a configuration's steady window is found
and gated (``[steady_state]``), the latency target the recommendation is made at (``[target]``)
and what energy costs (``[cost]``). Traces store ``[steady_state]`` and ``[cost]``, so the pure
analysis and ``reanalyse`` read them without the rest of the profile. Also the duration syntax of
targets (``"100ms"``, ``"5s"``; the UI's target fields parse it too) and :class:`Section`, the
base of every section. The profile itself, what it runs and where, is :mod:`.profile`."""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

import msgspec

LatencyMetric = Literal["tpot", "ttft", "itl", "e2e", "batch_latency"]
SteadyRule = Literal["saturation", "request-count"]

_DURATION = re.compile(r"^\s*(?P<v>\d+(?:\.\d+)?)\s*(?P<u>ms|s|min)?\s*$")


def parse_duration_s(value: float | int | str) -> float:
    """``"100ms"``, ``"5s"``, ``"2min"`` (or a number of seconds, from code) -> seconds. A string
    without a unit is ambiguous: ValueError, as for anything else that is not a duration."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 100ms or 5s")
    if isinstance(value, (int, float)):
        if value <= 0 or not math.isfinite(value):
            raise ValueError("a duration must be a positive number of seconds")
        return float(value)
    m = _DURATION.match(value)
    if m is None:
        raise ValueError(f"cannot parse duration {value!r}: use e.g. 100ms, 5s, 2min")
    if not m["u"]:
        raise ValueError(f"{value.strip()!r} is ambiguous: give a unit, e.g. {m['v']}ms or {m['v']}s")
    v = float(m["v"])
    unit = m["u"]
    seconds = v / 1000.0 if unit == "ms" else v * 60.0 if unit == "min" else v
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A profile section (and the profile itself): an unknown field is an error, fields are
    given by name."""


class SteadySpec(Section):
    rule: SteadyRule = "saturation"
    min_window_s: Annotated[float, msgspec.Meta(ge=0)] = 20.0
    min_batch_fraction: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.85
    max_energy_per_token_j: Annotated[float, msgspec.Meta(gt=0)] = 100.0
    max_cap_fraction: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.30
    #: Saturation rule: ``running >= max_num_seqs - saturation_tolerance`` counts as saturated
    #: (capped at B // 4, so B <= 3 must be reached exactly).
    saturation_tolerance: Annotated[int, msgspec.Meta(ge=0)] = 1
    #: A dip below saturation while requests wait is a refill; it splits the window only as a
    #: stall: the server's token counter frozen for ``max_dip_s`` or the dip longer than
    #: ``max_refill_s``. Only the longest run is kept, with a warning giving the dropped share.
    max_dip_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    max_refill_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    #: Gate: window tokens by the client vs the server's counter, relative difference.
    max_token_mismatch: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.01
    #: Window tokens from: "auto" (the client's timeline where it is exact -- per-chunk usage,
    #: per-token timestamps -- else the server's counter where reported, else the client's),
    #: "server" (the server's counter wherever reported), "client" (the client's timeline
    #: always: what mle-tui did before analysis version 2).
    token_count: Literal["auto", "server", "client"] = "auto"
    #: Gate (several GPUs): each GPU of the configuration must average at least this share of
    #: the busiest one's power over the window (a GPU left idle by a wrong device mapping).
    #: 0 disables it.
    min_gpu_power_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.5
    #: Gate: each GPU's mean utilisation over the window (NVML, where read), percent. 0 disables it.
    min_gpu_utilisation_pct: Annotated[float, msgspec.Meta(ge=0, le=100)] = 5.0


class TargetSpec(Section):
    metric: LatencyMetric | None = None
    #: ``"100ms"``, ``"5s"``, ``"2min"``: a unit is required (a bare number is refused as ambiguous).
    value: float | int | str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.value, str):
            try:
                parse_duration_s(self.value)
            except ValueError as exc:
                raise ValueError(f"value: {exc}") from None

    def value_s(self) -> float | None:
        return None if self.value is None else parse_duration_s(self.value)


class CostSpec(Section):
    electricity_usd_per_kwh: Annotated[float, msgspec.Meta(ge=0)] = 0.12
    carbon_g_per_kwh: Annotated[float, msgspec.Meta(ge=0)] = 400.0

