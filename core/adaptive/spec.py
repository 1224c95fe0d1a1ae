"""Settings of the adaptive sweep: the profile's ``[adaptive]`` table (used when
``[sweep] strategy = "adaptive"`` or ``mle-tui run --adaptive``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Strategy = Literal["grid", "adaptive"]


class AdaptiveSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    #: Early stop: the 95 % confidence interval of energy per token (batch means over the
    #: steady window), as a half-width relative to the mean, at or under which a
    #: configuration stops (the other gates passing). 0 disables early stopping.
    ci_rel: Annotated[float, msgspec.Meta(ge=0, le=0.5)] = 0.02
    #: Batch-means block length, s (blocks start at the steady window's start).
    block_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    #: Fewest blocks before the interval counts (it must also cover steady_state.min_window_s).
    min_blocks: Annotated[int, msgspec.Meta(ge=3)] = 5
    #: Search: energy may fall this share below its neighbour's with a larger B (or along the
    #: power-limit U) before the bound that prunes on it is called broken (measurement noise).
    energy_tolerance: Annotated[float, msgspec.Meta(ge=0, le=0.5)] = 0.02
    #: Search: latency may fall this share with a larger B (or rise with a higher power limit)
    #: before monotonicity is called broken and that column or row is measured in full.
    latency_tolerance: Annotated[float, msgspec.Meta(ge=0, le=0.5)] = 0.03
    #: GPU-time accounting: server start assumed for the full grid's estimate where no server
    #: start was measured in the run, s (a vLLM start with CUDA graphs on an H100/H200: ~85 s).
    server_start_s: Annotated[float, msgspec.Meta(ge=0)] = 85.0


def with_strategy(profile, strategy: str | None):  # noqa: ANN001, ANN201 - Profile in, Profile out
    """``profile`` with ``[sweep] strategy`` set (``mle-tui run --adaptive``); unchanged for None."""
    if strategy is None or profile.sweep.strategy == strategy:
        return profile
    return msgspec.structs.replace(profile, sweep=msgspec.structs.replace(profile.sweep, strategy=strategy))
