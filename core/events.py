"""Events the runner emits while a sweep runs, consumed by the UI, the headless progress
printer and ``live.jsonl`` (so ``mle-tui attach DIR`` can follow a run started elsewhere).

A tagged union of msgspec Structs: ``msgspec.json.decode(line, type=Event)``.
"""

from __future__ import annotations

import msgspec

from .config import Config
from .power.health import HealthReading


class _E(msgspec.Struct, kw_only=True, tag_field="type"):
    pass


class RunStarted(_E, tag="run_started"):
    run_id: str
    run_dir: str
    configs: list[str]
    skipped: list[str]  # already completed (resume)
    power_source: str
    simulated: bool


class ConfigStarted(_E, tag="config_started"):
    key: str
    index: int
    total: int
    config: Config
    label: str
    num_requests: int
    #: Requested and enforced (read back) power limit per GPU, W.
    power_limit_w: list[float] | None = None
    #: Indices of the GPUs this configuration measures (None: unknown, 0..num_gpus-1 assumed).
    gpu_indices: list[int] | None = None
    node: str | None = None  # the cluster node it comes from (None: one host)


class PowerSample(_E, tag="power"):
    t_s: float
    per_gpu_w: list[float]
    total_w: float
    memory_w: float | None = None
    average_w: float | None = None
    node: str | None = None  # the cluster node it comes from (None: one host)


class BatchSampleEvent(_E, tag="batch"):
    t_s: float
    running: float
    waiting: float
    kv_cache_usage: float | None = None
    node: str | None = None  # the cluster node it comes from (None: one host)


class SteadyUpdate(_E, tag="steady"):
    """Steady window detected (end_s None while still open) with its running figures."""

    start_s: float
    end_s: float | None
    mean_batch: float | None = None
    energy_per_token_j: float | None = None
    gates: dict[str, bool] = {}
    node: str | None = None  # the cluster node it comes from (None: one host)


class RequestProgress(_E, tag="progress"):
    done: int
    total: int
    t_s: float
    node: str | None = None  # the cluster node it comes from (None: one host)


class HealthSample(_E, tag="health"):
    """GPU health of the measured GPUs (:mod:`mle_tui.core.power.health`), about 1 Hz."""

    t_s: float
    gpus: list[HealthReading]
    node: str | None = None  # the cluster node it comes from (None: one host)


class BatchProgress(_E, tag="batch_progress"):
    """Diffusion: measured batches so far (warm-up batches not counted)."""

    done: int
    total: int
    batch_size: int
    #: Mean energy per image over the measured batches so far, J.
    energy_per_image_j: float | None = None
    t_s: float = 0.0
    node: str | None = None  # the cluster node it comes from (None: one host)


class PhaseMark(_E, tag="phase"):
    """Diffusion: a phase edge of a batch on the run clock (labels of
    :mod:`mle_tui.core.measure.phases`, e.g. ``phase:3:denoise``)."""

    t_s: float
    label: str
    node: str | None = None  # the cluster node it comes from (None: one host)


#: A LogLine the operator should see even without the log panel (headless progress prints it).
WARNING_PREFIX = "mle-tui: warning: "


class LogLine(_E, tag="log"):
    line: str
    node: str | None = None  # the cluster node it comes from (None: one host)

    @property
    def shown(self) -> str:
        """The line as shown to the operator: its node first, on a cluster run."""
        return self.line if self.node is None else f"{self.node}: {self.line}"

    @property
    def warning(self) -> str | None:
        """A warning for the operator (:data:`WARNING_PREFIX`), without the prefix, its node
        first; None for other lines."""
        if not self.line.startswith(WARNING_PREFIX):
            return None
        text = self.line.removeprefix(WARNING_PREFIX)
        return text if self.node is None else f"{self.node}: {text}"


class ConfigFinished(_E, tag="config_finished"):
    key: str
    status: str
    reasons: list[str]
    energy_per_request_j: float | None
    latency_value_s: float | None
    record_path: str
    node: str | None = None  # the cluster node it comes from (None: one host)


class RunFinished(_E, tag="run_finished"):
    #: ok + invalid records written by this run.
    completed: int
    failed: int
    invalid: int
    stopped: bool
    #: Configurations skipped by the user (they run again on resume).
    skipped: int = 0


class GpuTimeUpdate(_E, tag="gpu_time"):
    """After each configuration: the sweep's GPU time so far (and, adaptive, the grid's estimate)."""

    strategy: str
    measured: int
    total: int
    spent_gpu_s: float
    grid_estimate_gpu_s: float | None = None
    early_stopped: int = 0
    recommended: str | None = None
    #: "recommendation (KEY) after 14 of 40 configurations, 26 GPU-min, grid ≈ 95 ..."
    line: str = ""
    #: Adaptive: every configuration the search excludes now, with the rule that excludes it
    #: (replaces the previous event's set: a bound is dropped where a measurement breaks its rule).
    pruned: dict[str, str] = {}


Event = (
    RunStarted | ConfigStarted | PowerSample | BatchSampleEvent | SteadyUpdate | RequestProgress
    | LogLine | ConfigFinished | RunFinished | HealthSample | BatchProgress | PhaseMark | GpuTimeUpdate
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(line: bytes | str) -> Event:
    return _decoder.decode(line)
