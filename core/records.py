"""The record schema: one msgspec record per configuration, plus a run manifest.

Everything that crosses a module boundary or reaches disk is a Struct defined here (the
hardware Structs in :mod:`.hardware`, re-exported here).
Units are in the field names (``_s``, ``_w``, ``_j``). Times inside a record are seconds
relative to the configuration's start (``Record.started_unix_s``).
"""

from __future__ import annotations

from typing import Literal

import msgspec

from .config import Config
from .hardware import ClusterNode, GpuInfo, Hardware, PowerSourceKind, _S  # noqa: F401 - re-exported

#: 2: analysis info, token cross-check and dropped share in steady_state, status "skipped".
#: 3: per-GPU split, the node's idle GPUs, neighbours.
SCHEMA_VERSION = 3

Status = Literal["ok", "invalid", "failed", "skipped"]

#: vLLM ``bench serve`` definitions, stated next to every exported metric.
FORMULAS: dict[str, str] = {
    "ttft": "first chunk with non-empty choices - send time (vLLM bench serve)",
    "tpot": "(e2e - ttft) / (output_tokens - 1), per request with output_tokens > 1 (vLLM bench serve)",
    "itl": "every gap between successive token-bearing chunks after the first, pooled over requests (vLLM bench serve)",
    "e2e": "last token-bearing chunk - send time (vLLM bench serve)",
    "batch_latency": "wall time of one whole diffusion batch, CUDA-synchronised (ML.ENERGY)",
    "percentiles": "linear interpolation (numpy default)",
    "energy_per_request_llm": "E_steady / tokens_steady * mean output tokens per request (ML.ENERGY eq. 2)",
    "energy_per_request_diffusion": "E_batch / B (ML.ENERGY eq. 1)",
    "tdp_estimate": "TDP * number of GPUs * time (the estimate the paper shows overestimates)",
}


class LatencyStats(_S, kw_only=True):
    mean_s: float | None = None
    p50_s: float | None = None
    p90_s: float | None = None
    p99_s: float | None = None
    count: int = 0
    formula: str = ""


class Latency(_S, kw_only=True):
    ttft: LatencyStats | None = None
    tpot: LatencyStats | None = None
    itl: LatencyStats | None = None
    e2e: LatencyStats | None = None
    batch_latency: LatencyStats | None = None


class Throughput(_S, kw_only=True):
    """Over the steady window for LLMs; over measured batches for diffusion."""

    requests_per_s: float | None = None
    output_tokens_per_s: float | None = None
    images_per_s: float | None = None
    #: Video tasks: videos per second over the measured batches.
    videos_per_s: float | None = None


class RequestRow(_S, kw_only=True):
    """One request as the client saw it. Times are seconds from the configuration start."""

    id: int
    send_s: float
    first_token_s: float | None
    end_s: float | None
    input_tokens: int
    output_tokens: int
    #: Output stopped at ``max_tokens`` rather than EOS.
    hit_cap: bool = False
    ok: bool = True
    error: str | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None
    #: Number of inter-token gaps this request contributed to the pooled ITL.
    itl_count: int = 0
    #: Visual chat: input images, and the prompt tokens they took (the server's prompt tokens
    #: minus the text-only prompt's under the same chat template; None where not known).
    images: int = 0
    image_tokens: int | None = None
    #: "synthetic" (seeded synthetic image set), "file" or "mixed"; None without images.
    image_source: str | None = None


class BatchRow(_S, kw_only=True):
    """One measured diffusion batch (a Zeus window bracketed by CUDA synchronisation)."""

    index: int
    start_s: float
    end_s: float
    latency_s: float
    energy_j: float
    batch_size: int
    warmup: bool = False


class PhaseSpan(_S, kw_only=True):
    """One phase of one diffusion batch on the record's clock (from the trace's phase marks):
    ``encode`` (text / image encoders), ``denoise`` (all steps; each step's end in
    ``step_ends_s``) or ``decode`` (VAE). ``energy_j``: the GPUs' energy over the span from the
    counter and the instant-power shape (:func:`~.measure.energy.window_energy_j`)."""

    batch: int
    phase: Literal["encode", "denoise", "decode"]
    start_s: float
    end_s: float
    energy_j: float | None = None
    step_ends_s: list[float] = []
    warmup: bool = False


class PowerTimeline(_S, kw_only=True):
    """Power samples (zero-order hold) summed over the configuration's GPUs and per GPU."""

    t_s: list[float] = []
    total_w: list[float] = []
    #: GPU index (as a string, JSON keys) -> instant power in W.
    per_gpu_w: dict[str, list[float]] = {}
    #: 1-s average power summed over GPUs, where the source supports it.
    average_w: list[float] | None = None
    #: HBM power summed over GPUs, where the source supports it.
    memory_w: list[float] | None = None
    #: Cumulative energy counter summed over GPUs, J, relative to the first sample.
    energy_j: list[float] = []
    period_s: float = 0.1
    #: Samples were decimated for storage by this factor (1 = none).
    decimation: int = 1


class BatchTimeline(_S, kw_only=True):
    """Server-side batch trace: running / waiting requests, on the power timeline's clock."""

    t_s: list[float] = []
    running: list[float] = []
    waiting: list[float] = []
    kv_cache_usage: list[float] | None = None
    preemptions_total: list[float] | None = None
    generation_tokens_total: list[float] | None = None
    source: str = ""


class Gate(_S, kw_only=True):
    name: str
    ok: bool
    value: float | None
    threshold: float | None
    message: str
    #: ``error`` gates make the record invalid; ``warning`` gates only report.
    severity: Literal["error", "warning"] = "error"


class SteadyState(_S, kw_only=True):
    rule: Literal["saturation", "request-count", "whole-run"]
    start_s: float
    end_s: float
    energy_j: float
    tokens: int
    mean_batch: float
    requests_finished: int = 0
    gates: list[Gate] = []
    #: Where ``tokens`` came from: "server counter" (vLLM generation_tokens_total
    #: interpolated at the window edges), "client timeline" (per-chunk usage or per-token
    #: timestamps), "client chunks" (one token per chunk, the rest at the last), "uniform".
    token_source: str = ""
    #: Output tokens in the window by the server's counter and by the client's timeline.
    server_tokens: float | None = None
    client_tokens: int | None = None
    #: Share of the saturated span outside the window (a stall split it), in [0, 1).
    dropped_fraction: float | None = None
    #: Mean inter-token gap over the window by vLLM's engine-stamped histogram, s; and how much
    #: slower the client received tokens than the engine made them: (mean batch / client tokens
    #: per s) / engine_itl_s. Gated (``client_pace``) only for an early-stopped window, where the
    #: output_lag gate cannot tell (measure/output_lag.py); on the H200 0.994-1.001 kept pace.
    engine_itl_s: float | None = None
    client_pace_ratio: float | None = None

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class GpuEnergy(_S, kw_only=True):
    """One GPU's part: over the record's window (the steady window; the measured batches for
    diffusion). For the configuration's GPUs the energies sum to the record's; for the node's
    other GPUs (``RecordHead.idle_gpus``) they are a provisioning view, never part of it."""

    index: int
    #: Counter energy over the window, J (None: no counter readings).
    energy_j: float | None = None
    avg_power_w: float | None = None
    #: Zero-order-hold integral of instant power over the window, J.
    integral_j: float | None = None
    #: Share of the configuration's window energy (configuration GPUs only).
    share: float | None = None
    #: Mean NVML utilisation over the window, percent, where read.
    utilisation_pct: float | None = None


class AnalysisInfo(_S, kw_only=True):
    """Which analysis produced a record's figures, from what, with which settings."""

    version: str
    #: "live": computed when the configuration ended; "reanalysis": by ``mle-tui reanalyse``.
    source: Literal["live", "reanalysis"] = "live"
    #: The method settings (the profile's [steady_state] with any overrides).
    settings: dict[str, str | float | int | bool] = {}
    #: Trace file (relative to the run directory) the record was derived from.
    trace: str | None = None


class Accounting(_S, kw_only=True):
    price_usd_per_kwh: float
    carbon_g_per_kwh: float
    cost_per_1k_requests_usd: float | None = None
    carbon_per_1k_requests_g: float | None = None


class PromptTokens(_S, kw_only=True):
    """Visual chat: the prompt tokens of the ok requests split into text and image tokens."""

    requests: int
    images: int
    text_tokens: int
    image_tokens: int
    #: image_tokens / (text_tokens + image_tokens).
    image_share: float | None = None
    #: "synthetic" (the seeded synthetic-images set, not real photos), "file" or "mixed".
    image_source: str | None = None
    #: How the split is made.
    method: str = ""


class EarlyStop(_S, kw_only=True):
    """A configuration stopped once its answer was known (adaptive sweep): the 95 % interval
    of energy per token over ``blocks`` batch-means blocks was ``ci_rel`` (half-width / mean)
    at ``t_s``; the rest of its requests were aborted and the steady window ends there."""

    t_s: float
    window_start_s: float
    blocks: int
    block_s: float
    ci_rel: float
    ci_target: float
    energy_per_token_j: float
    #: Mean output tokens the workload asked for (all N requests): eq. 2's per-request mean for
    #: a stopped configuration, whose finished requests are biased to short outputs.
    workload_mean_output_tokens: float | None = None


class GpuTimeSplit(_S, kw_only=True):
    """Where a configuration's GPU time went (seconds x GPUs of the configuration): server
    start (until the first request was sent), warm-up (ramp-up until the steady window),
    the window, and the rest (ramp-down, idle, shutdown)."""

    total_gpu_s: float
    server_start_gpu_s: float
    warmup_gpu_s: float
    window_gpu_s: float
    rest_gpu_s: float


class RecordHead(_S, kw_only=True):
    """A record without its per-request rows, batches, timelines and log: what tables, Pareto
    and reports read. Decoding a record file as a RecordHead skips the heavy fields at parse
    speed (a report over 1,000 records reads a few MB of objects instead of GBs)."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    config_key: str
    config: Config
    status: Status
    reasons: list[str] = []
    #: Always set; ``simulated`` if the GPU or the runtime was simulated.
    simulated: bool = False
    task: str
    runtime: str
    model: str
    weights: str
    hardware: Hardware
    started_unix_s: float
    duration_s: float
    num_requests: int = 0
    steady_state: SteadyState | None = None
    #: Energy of the whole configuration (ramp-up and ramp-down included), J.
    total_energy_j: float | None = None
    energy_per_request_j: float | None = None
    energy_per_token_j: float | None = None
    energy_per_image_j: float | None = None
    avg_power_w: float | None = None
    latency: Latency = msgspec.field(default_factory=Latency)
    latency_metric: str = ""
    #: Value of ``latency_metric`` used for Pareto and recommendation (mean), s.
    latency_value_s: float | None = None
    throughput: Throughput = msgspec.field(default_factory=Throughput)
    #: Output tokens counted by the server over the configuration (vLLM
    #: generation_tokens_total delta), for cross-checking the client count.
    server_output_tokens: int | None = None
    mean_output_tokens: float | None = None
    tdp_estimate_j: float | None = None
    #: tdp_estimate_j / measured energy over the same window.
    tdp_overestimation: float | None = None
    accounting: Accounting | None = None
    #: Counter energy vs integral of the instant-power timeline over the steady window.
    energy_integral_j: float | None = None
    formulas: dict[str, str] = msgspec.field(default_factory=lambda: dict(FORMULAS))
    analysis: AnalysisInfo | None = None
    #: The configuration's GPUs, each over the window (their energies sum to the window's).
    per_gpu: list[GpuEnergy] = []
    #: The node's GPUs outside the configuration, over the same window: powered but idle (or
    #: used by someone else); reported beside the record, never in its energy.
    idle_gpus: list[GpuEnergy] = []
    #: Configurations that ran side by side on the same host (``gpu.pack``), by key.
    neighbours: list[str] = []
    #: Visual chat: text vs image prompt tokens (None for other tasks).
    prompt_tokens: PromptTokens | None = None
    #: Video tasks: eq. 1 per video (E_batch / B), J; energy_per_request_j holds the same.
    energy_per_video_j: float | None = None
    #: Set when the configuration stopped early (adaptive sweep); None: it ran to the end.
    early_stop: EarlyStop | None = None
    #: How the server was run: "" (one per configuration, or not a server runtime),
    #: "reused across power limits", "reused from max_num_seqs N (client concurrency capped at B)".
    server_mode: str = ""
    #: The configuration's GPU time, split by phase (None: failed before anything ran).
    gpu_time: GpuTimeSplit | None = None


class Record(RecordHead, kw_only=True):
    requests: list[RequestRow] = []
    batches: list[BatchRow] = []
    power_timeline: PowerTimeline = msgspec.field(default_factory=PowerTimeline)
    batch_timeline: BatchTimeline = msgspec.field(default_factory=BatchTimeline)
    log_tail: list[str] = []
    #: Diffusion: encode / denoise / decode spans of every batch (from the trace's marks).
    phases: list[PhaseSpan] = []


class Manifest(_S, kw_only=True):
    """``run.json``: what a run directory was measured on and with."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    created_unix_s: float
    host: str
    power_source: PowerSourceKind
    gpus: list[GpuInfo] = []
    driver_version: str | None = None
    nvml_version: str | None = None
    cuda_version: str | None = None
    packages: dict[str, str] = {}
    seed: int = 0
    profile_path: str | None = None
    #: The profile as resolved (TOML text), so the run can be reproduced.
    profile_toml: str = ""
    configs: list[str] = []
    #: PID of the process running the sweep, for ``attach``.
    pid: int | None = None
    finished: bool = False
    #: Cluster runs (``--ray``): the nodes the sweep ran on, and those lost while they may
    #: have held a changed power limit (their agent restores it on its next start).
    nodes: list[ClusterNode] = []
    nodes_to_restore: list[str] = []


