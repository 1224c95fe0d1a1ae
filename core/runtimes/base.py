"""The runtime interface: what every runtime (vllm, transformers, diffusers, sim) implements.

A runtime runs one configuration's workload and reports, as it goes, the server-side batch
trace and finished requests through the callbacks of :class:`RuntimeContext`. It never touches
power limits, records or the UI: the runner does that.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import msgspec

from ..clock import Clock
from ..config import Config
from ..dataset_types import Request
from ..profile import Profile
from ..records import BatchRow, RequestRow


class BatchSample(msgspec.Struct, kw_only=True):
    """Server state at ``t_s`` (run clock): running and waiting requests, optional extras."""

    t_s: float
    running: float
    waiting: float
    kv_cache_usage: float | None = None
    preemptions_total: float | None = None
    generation_tokens_total: float | None = None
    #: vLLM's inter-token-latency histogram (``vllm:inter_token_latency_seconds``): sum, s, and
    #: count. Its gaps are stamped by the engine, so they keep the GPU's pace where the API
    #: server streams behind it (see measure/output_lag.py).
    itl_sum_s: float | None = None
    itl_count: float | None = None


class RuntimeResult(msgspec.Struct, kw_only=True):
    requests: list[RequestRow] = []
    batches: list[BatchRow] = []
    #: Output tokens the server itself counted (vLLM ``generation_tokens_total`` delta).
    server_output_tokens: int | None = None
    log_tail: list[str] = []
    #: Where the batch trace came from, e.g. "vllm /metrics 0.5 s", "transformers scheduler 10 Hz".
    batch_source: str = ""
    #: True when the runtime itself is simulated (the ``sim`` runtime).
    simulated: bool = False
    #: Inter-token gaps of ok requests, pooled (for ITL), s. None: the runner has only rows.
    itl_gaps_s: list[float] | None = None
    #: Exact output-token timeline where known: times (run clock, ascending) at which tokens
    #: were emitted and how many at each (None: one each). Without it the runner assumes each
    #: request's tokens evenly spaced between its first token and its end.
    token_times_s: list[float] | None = None
    token_counts: list[int] | None = None
    #: True when the timeline books every token at the time it arrived (per-chunk usage,
    #: per-token timestamps, the simulator); then it is the window's token count, checked
    #: against the server's counter. False: the server's counter is the count where reported.
    token_counts_exact: bool = False
    #: Streamed responses only (vLLM): ok requests in which at least one token-bearing chunk
    #: carried more than one output token (a busy server merges tokens into one chunk), and the
    #: output tokens that arrived in such chunks (not in a chunk of their own). Counted from
    #: per-chunk usage (``continuous_usage_stats``); a server without it: one token per chunk
    #: and the rest of a request's tokens at its last chunk. None: not measured.
    bundled_requests: int | None = None
    bundled_tokens: int | None = None
    #: How the server was run (``RecordHead.server_mode``); "" for one server per configuration.
    server_mode: str = ""
    #: The timeline holds the tokens an early stop's aborted requests had received (they were
    #: generated in the steady window like any other).
    aborted_tokens_in_timeline: bool = False


class GpuLoad(Protocol):
    """What a runtime may drive when the GPU is simulated (test double / demo)."""

    def set_load(self, utilisation: float) -> None:
        """Set the simulated GPU's utilisation in [0, 1] from now on."""
        ...

    def speed_factor(self, utilisation: float) -> float:
        """Work rate under the current power limit, in (0, 1]: 1.0 = unthrottled, 0.5 = work
        takes twice as long."""
        ...


@dataclass
class RuntimeContext:
    profile: Profile
    config: Config
    requests: list[Request]
    clock: Clock
    gpu_indices: list[int]
    run_dir: Path
    #: The runtime's own log (server stdout/stderr) goes here.
    log_path: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    #: Simulated GPUs the runtime should drive from its observed activity (None on real GPUs).
    sim_gpus: list[GpuLoad] | None = None
    on_batch: Callable[[BatchSample], None] = lambda s: None
    #: Called when a request starts getting tokens (first token) and when it finishes.
    on_first_token: Callable[[int, float], None] = lambda rid, t: None
    on_request: Callable[[RequestRow], None] = lambda row: None
    on_batch_done: Callable[[BatchRow], None] = lambda row: None
    on_log: Callable[[str], None] = lambda line: None
    #: The configuration the runner will run next (None: this is the last). Lets a runtime keep
    #: a server alive when only the GPU power limit changes.
    next_config: Config | None = None
    #: Energy of GPUs since a mark, for diffusion batch windows: ``energy_between(t0, t1)`` J.
    energy_between: Callable[[float, float], float] = lambda t0, t1: float("nan")
    #: Read the energy counter now (an exact event: call right after a CUDA synchronise at a
    #: diffusion batch's start and end) and return that read's time on the run clock; NaN when
    #: nothing samples the counter (then use your own clock).
    mark_energy: Callable[[], float] = lambda: float("nan")
    #: A phase or event mark on the run clock for the trace (and the live view): diffusion runtimes
    #: mark each batch's encode / denoise steps / decode (:mod:`..measure.phases`). The runner
    #: passes ``measure.phases.mark_hook(recorder, emit)``; the default drops marks.
    on_mark: Callable[[float, str], None] = lambda t_s, label: None
    #: Set by the runner when the configuration's answer is known (adaptive sweep): abort the
    #: requests still outstanding and return what finished (not a failure). Runtimes that can
    #: do it say ``supports_early_stop = True``; the others run to the end.
    stop_early: threading.Event = field(default_factory=threading.Event)


class Runtime(Protocol):
    name: str

    def run(self, ctx: RuntimeContext) -> RuntimeResult:
        """Run the workload of ``ctx.config``. Raise :class:`~mle_tui.core.errors.RunFailure`
        with a one-line reason (and put the log tail in its ``args[1]`` if any) when the
        configuration cannot be measured; the runner turns it into a ``failed`` record."""
        ...
