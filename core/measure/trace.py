"""The trace of one configuration: everything it produced, at full resolution, as a msgspec
Struct that is written beside its record (``traces/<config>.msgpack.gz``) and from which the
pure analysis (:mod:`.analysis`) derives the record -- live and in ``mle-tui reanalyse`` alike.
:class:`.recorder.TraceRecorder` collects it while the configuration runs.
"""

from __future__ import annotations

import gzip
from typing import Literal

import msgspec
import numpy as np

from ..config import Config
from ..profile_method import CostSpec, SteadySpec
from ..records import BatchRow, EarlyStop, Hardware, RequestRow
from .power_trace import PowerTrace

#: 2: ITL gaps packed as 100-ns integers (1 held float32 seconds).
#: 3: the node's other GPUs (``idle_power``), GPU utilisation samples, neighbours.
#: 4: early stop and server mode (adaptive sweep); its records carry the GPU-time split.
#: 5: vLLM's engine-stamped inter-token-latency histogram (sum, count) beside the batch samples.
TRACE_SCHEMA_VERSION = 5
#: From this trace version on, records have ``gpu_time`` (older runs reanalyse to their records).
GPU_TIME_SINCE = 4
#: In ``server_mode``: the configuration ran on a server started for a larger max_num_seqs, the
#: client capping its concurrency at B (``server.reuse_across_max_num_seqs``).
CLIENT_CAPPED = "client concurrency capped"
#: gzip level of trace files: level 5 gives most of level 9's size at a third of its time.
GZIP_LEVEL = 5


class BatchTrace(msgspec.Struct, kw_only=True):
    """Server-side batch samples (running, waiting, extras) on the run clock. Optional columns
    are None when the runtime never reported them; a missing value inside one is NaN."""

    t_s: list[float] = []
    running: list[float] = []
    waiting: list[float] = []
    kv_cache_usage: list[float] | None = None
    preemptions_total: list[float] | None = None
    #: The server's own output-token counter (vLLM ``generation_tokens_total``).
    generation_tokens_total: list[float] | None = None
    #: vLLM's inter-token-latency histogram, sum (s) and count: engine-stamped gaps.
    itl_sum_s: list[float] | None = None
    itl_count: list[float] | None = None


class Mark(msgspec.Struct, kw_only=True):
    """A phase or event mark on the run clock (configuration start/end, warm-up, ...)."""

    t_s: float
    label: str


class Trace(msgspec.Struct, kw_only=True):
    schema_version: int = TRACE_SCHEMA_VERSION
    run_id: str
    config_key: str
    config: Config
    task: str
    runtime: str
    model: str
    weights: str
    latency_metric: str
    is_llm: bool
    simulated: bool
    hardware: Hardware
    started_unix_s: float
    #: Run-clock time at which the configuration ended, s.
    end_s: float
    num_requests: int
    #: Method settings the configuration ran with (the defaults of a reanalysis).
    steady: SteadySpec = msgspec.field(default_factory=SteadySpec)
    cost: CostSpec = msgspec.field(default_factory=CostSpec)
    power: PowerTrace | None = None
    batch: BatchTrace = msgspec.field(default_factory=BatchTrace)
    batch_source: str = ""
    #: Request events in arrival order (first token, finish), s.
    first_token_s: list[float] = []
    finish_s: list[float] = []
    requests: list[RequestRow] = []
    batches: list[BatchRow] = []
    #: Pooled inter-token gaps of ok requests in 100-ns units, packed (:func:`pack_us`):
    #: about 2 M gaps an hour, the bulk of a trace; a list of floats would be 3x the file and
    #: the decode time. None: the runtime gave no gaps.
    itl_gaps_us: bytes | None = None
    #: Output-token timeline: times (ascending) and tokens at each (None: one each).
    token_times_s: list[float] | None = None
    token_counts: list[int] | None = None
    #: True when the timeline counts every token at the time it arrived (per-chunk usage,
    #: per-token timestamps); False when tokens merged into one chunk were booked at its end.
    token_counts_exact: bool = False
    #: The timeline holds the tokens an early stop's aborted requests had received. False in
    #: traces written before 2026-11-30 (vLLM's lacked the requests in flight at the stop), so
    #: the analysis counts such an early-stopped window by the server's counter.
    aborted_tokens_in_timeline: bool = False
    #: Output tokens the server counted over the configuration.
    server_output_tokens: int | None = None
    marks: list[Mark] = []
    #: Seen while measuring and reported with the record (other processes on the GPUs, ...).
    warnings: list[str] = []
    log_tail: list[str] = []
    #: Why the configuration failed or was skipped (None: it ran to the end).
    failure: str | None = None
    failure_kind: Literal["failed", "skipped"] | None = None
    #: The node's GPUs outside the configuration, sampled beside it (a provisioning view).
    idle_power: PowerTrace | None = None
    #: NVML utilisation of the configuration's GPUs (about 1 Hz): times, and percent per GPU
    #: in ``power.gpu_indices`` order (NaN where unread).
    util_t_s: list[float] = []
    util_pct: list[list[float]] = []
    #: Configurations running side by side on the host (``gpu.pack``), by key.
    neighbours: list[str] = []
    #: The early stop, when the adaptive sweep stopped the configuration (also a mark).
    early_stop: EarlyStop | None = None
    #: How the runtime ran its server (see ``RecordHead.server_mode``).
    server_mode: str = ""


#: Resolution of packed durations: 100 ns (uint32: up to 429 s, beyond any stall time-out).
PACK_UNIT_S = 1e-7


def pack_us(values_s: "list[float] | np.ndarray | None") -> bytes | None:
    """Durations in s -> whole 100-ns units as little-endian uint32 (0 .. 429 s), stored
    byte-plane by byte-plane (all low bytes, then the next...), which gzip packs about twice as
    small as float32. 100 ns keeps even the 40 us gaps of chunks that arrive in bursts to
    0.1 %; the client's own arrival stamps are coarser than that."""
    if values_s is None:
        return None
    units = np.rint(np.asarray(values_s, dtype=np.float64) / PACK_UNIT_S)
    q = np.clip(units, 0, 2**32 - 1).astype("<u4")
    return q.view(np.uint8).reshape(-1, 4).T.tobytes()


def unpack_us(data: bytes | None) -> np.ndarray:
    """Inverse of :func:`pack_us`, in s (float64)."""
    if not data:
        return np.zeros(0, dtype=np.float64)
    planes = np.frombuffer(data, dtype=np.uint8).reshape(4, -1)
    return np.ascontiguousarray(planes.T).view("<u4").ravel().astype(np.float64) * PACK_UNIT_S


def encode_trace(trace: Trace) -> bytes:
    """msgpack, gzip-compressed."""
    return gzip.compress(msgspec.msgpack.encode(trace), compresslevel=GZIP_LEVEL, mtime=0)


def decode_trace(data: bytes) -> Trace:
    """Inverse of :func:`encode_trace` (raises msgspec errors or OSError on bad data)."""
    return msgspec.msgpack.decode(gzip.decompress(data), type=Trace)


def roundtrip(trace: Trace) -> Trace:
    """The trace as it will be read back from disk (what analysis must see live, so that a
    reanalysis reproduces the live record exactly)."""
    return msgspec.msgpack.decode(msgspec.msgpack.encode(trace), type=Trace)
