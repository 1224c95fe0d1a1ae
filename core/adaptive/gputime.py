"""GPU-time accounting of a run: what it spent (server starts, warm-up, windows, the rest),
and what the full grid would have cost.

Spent time is measured: each record's :class:`~..records.GpuTimeSplit` (its duration on the
configuration's clock times its GPU count). The full grid's cost is an estimate, labelled so:
the grid order (servers reused across power limits, as the vLLM runtime does), each server
start at the mean start measured in this run (0 where none was measured, e.g. the simulator),
and each configuration's run as measured where it ran to the end, else as
:mod:`.grid_estimate` models it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import msgspec

from ..config import Config
from ..records import RecordHead
from .grid_estimate import run_estimates, shape



class RunGpuTime(msgspec.Struct, kw_only=True):
    spent_gpu_s: float = 0.0
    server_start_gpu_s: float = 0.0
    warmup_gpu_s: float = 0.0
    window_gpu_s: float = 0.0
    rest_gpu_s: float = 0.0
    measured: int = 0
    total: int = 0
    early_stopped: int = 0
    #: Adaptive: configurations the search excluded (never measured).
    pruned: int = 0
    server_starts: int = 0
    #: Records without a GPU-time split (written before it existed): all their time is "rest".
    unsplit: int = 0
    #: Estimate of the full grid's GPU time, s (None: nothing measured to estimate from).
    grid_estimate_gpu_s: float | None = None
    strategy: str = "grid"


def _split(r: RecordHead) -> tuple[float, float, float, float, float]:
    g = r.gpu_time
    if g is None:
        t = max(0.0, r.duration_s) * max(1, r.config.num_gpus)
        return t, 0.0, 0.0, 0.0, t
    return g.total_gpu_s, g.server_start_gpu_s, g.warmup_gpu_s, g.window_gpu_s, g.rest_gpu_s


def _server(cfg: Config) -> tuple:
    return (cfg.batch, *shape(cfg))


def account(records: list[RecordHead], configs: list[Config], *, n_requests: Callable[[Config], int],
            batches: int = 1, strategy: str = "grid") -> RunGpuTime:
    """The run's GPU time from its records; ``configs`` is the whole grid in grid order."""
    out = RunGpuTime(total=len(configs), strategy=strategy)
    by_key = {r.config_key: r for r in records if r.status != "skipped"}
    starts: list[float] = []
    full: dict[str, float] = {}
    for r in by_key.values():
        total, start, warm, window, rest = _split(r)
        out.spent_gpu_s += total
        out.server_start_gpu_s += start
        out.warmup_gpu_s += warm
        out.window_gpu_s += window
        out.rest_gpu_s += rest
        out.measured += 1
        out.unsplit += r.gpu_time is None
        out.early_stopped += r.early_stop is not None
        k = max(1, r.config.num_gpus)
        started = start / k > 1.0  # under a second to the first request: a server kept from before
        if started:
            starts.append(start)
            out.server_starts += 1
        if r.early_stop is None and r.status in ("ok", "invalid"):
            full[r.config_key] = total - (start if started else 0.0)
    if not by_key:
        return out
    runs = run_estimates(list(by_key.values()), full, configs, n_requests=n_requests, batches=batches)
    if runs is None:
        return out
    start_s = statistics.fmean(starts) if starts else 0.0
    est, prev = 0.0, None
    for c in configs:  # grid order: a server per group, kept across power limits
        if _server(c) != prev:
            est += start_s
            prev = _server(c)
        est += runs[c.key()]
    out.grid_estimate_gpu_s = est
    return out


def gpu_time_unit(gpu_s: float | None) -> tuple[float, str]:
    """Seconds per unit and its name: GPU-minutes from one minute on, else GPU-seconds."""
    return (60.0, "GPU-min") if gpu_s is not None and gpu_s >= 60.0 else (1.0, "GPU-s")


def fmt_num(value: float | None) -> str:
    """One decimal below 10 (the parts of a short run stay readable), whole numbers above."""
    if value is None:
        return "?"
    return f"{value:.1f}" if round(value, 1) < 10 else f"{value:.0f}"


def fmt_gpu_time(gpu_s: float | None) -> str:
    """"26 GPU-min", "4.5 GPU-min", "42 GPU-s", "3.2 GPU-s"."""
    per, unit = gpu_time_unit(gpu_s)
    return f"{fmt_num(None if gpu_s is None else gpu_s / per)} {unit}"


def summary_line(gt: RunGpuTime, recommended: str | None = None) -> str:
    """"recommendation after 14 of 40 configurations, 26 pruned, 26 GPU-min, grid ≈ 95" (grid
    runs: the GPU time alone). The grid's estimate and the parts are in the unit of the spent
    time."""
    per, unit = gpu_time_unit(gt.spent_gpu_s)

    def num(gpu_s: float | None) -> str:
        return fmt_num(None if gpu_s is None else gpu_s / per)

    head = (f"recommendation ({recommended}) after" if recommended else "measured")
    text = f"{head} {gt.measured} of {gt.total} configurations"
    if gt.strategy == "adaptive":
        text += f", {gt.pruned} pruned"
    text += f", {num(gt.spent_gpu_s)} {unit}"
    if gt.strategy == "adaptive":
        text += f", grid ≈ {num(gt.grid_estimate_gpu_s)}"
        if gt.grid_estimate_gpu_s and gt.spent_gpu_s > 0:
            text += f" ({gt.grid_estimate_gpu_s / gt.spent_gpu_s:.1f}x)"
        if gt.early_stopped:
            text += f"; {gt.early_stopped} stopped early"
    if gt.unsplit < gt.measured:
        text += (f" [starts {num(gt.server_start_gpu_s)}, warm-up {num(gt.warmup_gpu_s)}, "
                 f"windows {num(gt.window_gpu_s)}, rest {num(gt.rest_gpu_s)}]")
    if gt.unsplit:
        text += f" ({gt.unsplit} older records without a split by phase)"
    return text
