"""A configuration's GPU time split by phase, from its record (pure)."""

from __future__ import annotations

from ..records import GpuTimeSplit, Record


def gpu_time_split(rec: Record) -> GpuTimeSplit:
    """Server start = config start to the first request sent; warm-up = to the steady
    window's start; window = the steady window; rest = everything after it. Times are on the
    configuration's clock; each is multiplied by the configuration's GPU count."""
    k = max(1, rec.config.num_gpus)
    total = max(0.0, rec.duration_s)
    sends = [r.send_s for r in rec.requests if r.send_s is not None]
    first = min(sends) if sends else (rec.batches[0].start_s if rec.batches else 0.0)
    first = min(max(0.0, first), total)
    ss = rec.steady_state
    w0 = min(max(first, ss.start_s), total) if ss is not None else first
    w1 = min(max(w0, ss.end_s), total) if ss is not None else w0
    return GpuTimeSplit(total_gpu_s=k * total, server_start_gpu_s=k * first, warmup_gpu_s=k * (w0 - first),
                        window_gpu_s=k * (w1 - w0), rest_gpu_s=k * (total - w1))
