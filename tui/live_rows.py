"""A configuration's row in the run screen's progress list, and its display statuses (no
Textual here). :class:`.live.LiveState` keeps one :class:`ConfigRow` per configuration key;
:mod:`.live` re-exports every name here."""

from __future__ import annotations

import msgspec

#: Display status of a configuration in the progress list.
PENDING, RUNNING, DONE, FAILED, INVALID, EARLIER = "pending", "running", "done", "failed", "invalid", "earlier"
#: Skipped by the user: not a failure; resume runs it again.
SKIPPED = "skipped"


class ConfigRow(msgspec.Struct, kw_only=True):
    key: str
    index: int
    label: str = ""
    status: str = PENDING
    energy_per_request_j: float | None = None
    latency_value_s: float | None = None
    reasons: list[str] = []
    #: Length of the configuration on the run clock, s (first to last sample).
    duration_s: float | None = None
