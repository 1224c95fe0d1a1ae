"""Did the output the client received keep pace with the GPU? (pure)

The steady window, its tokens and the latencies are read on the client's side of the server (its
token timeline, the server's metrics), its energy on the GPU's. The two agree while the server
streams out tokens as fast as the GPU makes them. vLLM's API server is one Python process: past
some 12-18 k streamed tokens/s (it varied from run to run on the H200 nodes: Llama-3.1-8B at
max_num_seqs 256 from 400 W up, 512 at every limit, TP = 2 at 256) it falls behind its engine,
which has every request queued and runs ahead. The GPU then finishes the workload and idles while
the client still receives tokens -- for 48 s of a 213-s run at B = 512 -- so a window on the
client's clock holds fewer tokens than the GPU made in it, and energy per token reads high by
about the ratio of the two rates.

The lag shows at the end of a run that ran to its end: the client's last token arrives ``lag_s``
after the GPU's power fell to idle. With the lag growing from about zero as the backlog builds,
``lag_s / busy_s`` estimates how much slower the output ran than the GPU. An early-stopped run
aborts with work still queued, so its end shows nothing (:func:`output_lag` returns None); there
the client's pace against vLLM's engine-stamped inter-token gap tells instead (:func:`pace_gate`).

On the H200 (2026-11-30) the per-chunk work set the pace: the sweep's own process (load generator,
one Python process) and vLLM's API server each sat at 100 % of a core at ~14 k chunks/s. Four API
server processes did not help (the streams landed on one of them); ``--stream-interval 8``
(``server.stream_interval``) did: B = 256 and 512 at 700 W kept pace, pace 1.000 and 0.999.
"""

from __future__ import annotations

import msgspec
import numpy as np

from ..records import Gate
from .power_trace import PowerTrace

#: Lag allowed as a share of the GPU's busy time (the token gate's tolerance) ...
MAX_LAG_FRACTION = 0.01
#: ... and at least this, s: a run that keeps pace ends within 0.2 s of its GPU on the H200 and
#: H100 traces (10 Hz power fields, the last token's chunk); the lagging ones lag 2.3 s or more.
LAG_FLOOR_S = 1.0
#: Idle power: this percentile of the configuration's samples (each trace holds a few idle
#: seconds around its load: 1-8 % of the samples on the shipped runs, when a lag adds more) ...
IDLE_PERCENTILE = 1.0
#: ... of at least this many samples, and at most this share of the GPUs' TDP (idle H100/H200s
#: draw 10-18 %; a trace whose lowest samples are load -- no idle seen -- says nothing).
MIN_SAMPLES = 100
MAX_IDLE_TDP_FRACTION = 0.25
#: Load power: this percentile of the samples while requests were out (not the median: where
#: the lag is long, most of that time is idle) ...
LOAD_PERCENTILE = 90.0
#: ... and the GPU counts as working above idle + this share of (load - idle).
BUSY_LEVEL = 0.25
#: Load must sit this far above idle for the two to be told apart, W.
MIN_LOAD_ABOVE_IDLE_W = 30.0
#: The GPU's last busy sample is sought up to this long after the client's last token, s.
AFTER_END_S = 1.0
#: An early-stopped window is invalid when the client received tokens this much slower than the
#: engine made them: on the H200 runs that kept pace read 0.994-1.001, the lagging ones 1.034-1.357.
MAX_CLIENT_PACE = 1.02
#: What to change when the output falls behind.
REMEDY = ("set server.stream_interval (e.g. 8: vLLM streams a chunk every 8 tokens, the first at once), or "
          "measure a smaller max_num_seqs")


class OutputLag(msgspec.Struct, kw_only=True, frozen=True):
    """When the GPU went idle against when the client's last token arrived (run clock, s)."""

    idle_w: float
    load_w: float
    gpu_end_s: float
    output_end_s: float
    #: output_end_s - gpu_end_s (negative: the GPU was still busy at the client's last token).
    lag_s: float
    #: From the first request sent to gpu_end_s.
    busy_s: float

    @property
    def fraction(self) -> float:
        return self.lag_s / self.busy_s

    @property
    def allowed_s(self) -> float:
        return max(LAG_FLOOR_S, MAX_LAG_FRACTION * self.busy_s)


def output_lag(power: PowerTrace | None, first_send_s: float | None, last_end_s: float | None,
               tdp_w: float | None) -> OutputLag | None:
    """The lag of a run that ran to its end, from its GPUs' summed instant power (``tdp_w``: their
    summed TDP); None where it cannot be told (no power or TDP, too few samples, no idle seen, load
    not above idle, no GPU work seen)."""
    if power is None or not power.t_s or not power.instant_w or first_send_s is None or last_end_s is None \
            or not tdp_w:
        return None
    t = np.asarray(power.t_s, dtype=np.float64)
    p = np.sum(np.asarray(power.instant_w, dtype=np.float64), axis=0)
    ok = np.isfinite(p)
    t, p = t[ok], p[ok]
    during = p[(t >= first_send_s) & (t <= last_end_s)]
    if p.size < MIN_SAMPLES or not during.size:
        return None
    idle_w = float(np.percentile(p, IDLE_PERCENTILE))
    load_w = float(np.percentile(during, LOAD_PERCENTILE))
    if idle_w > MAX_IDLE_TDP_FRACTION * tdp_w or load_w - idle_w < MIN_LOAD_ABOVE_IDLE_W:
        return None
    level = idle_w + BUSY_LEVEL * (load_w - idle_w)
    busy = t[(p > level) & (t >= first_send_s) & (t <= last_end_s + AFTER_END_S)]
    if not busy.size or busy[-1] <= first_send_s:
        return None
    gpu_end = float(busy[-1])
    return OutputLag(idle_w=idle_w, load_w=load_w, gpu_end_s=gpu_end, output_end_s=last_end_s,
                     lag_s=last_end_s - gpu_end, busy_s=gpu_end - first_send_s)


def counter_between(t_s: list[float], values: list[float] | None, t0_s: float, t1_s: float) -> float | None:
    """A cumulative server series' increase over [t0, t1], interpolated between the samples
    around each edge; None without samples covering the window."""
    if values is None:
        return None
    t = np.asarray(t_s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    t, v = t[ok], v[ok]
    if len(t) < 2 or t.min() > t0_s or t.max() < t1_s:
        return None
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    return float(np.interp(t1_s, t, v) - np.interp(t0_s, t, v))


def engine_pace(t_s: list[float], itl_sum_s: list[float] | None, itl_count: list[float] | None, t0_s: float,
                t1_s: float, mean_batch: float, tokens: float) -> tuple[float | None, float | None]:
    """The window's mean engine-stamped inter-token gap (vLLM's histogram), s, and the client's
    pace against it: each of ``mean_batch`` running requests gets a token every mean_batch /
    (tokens / window) s on the client's side (Little's law), over the engine's gap. About 1
    while the server keeps pace (requests in prefill hold it a little above); (None, None) when
    the server reports no histogram."""
    dsum = counter_between(t_s, itl_sum_s, t0_s, t1_s)
    dcount = counter_between(t_s, itl_count, t0_s, t1_s)
    if dsum is None or not dcount or dcount <= 0 or dsum <= 0:
        return None, None
    itl = dsum / dcount
    dur = t1_s - t0_s
    if not (tokens > 0 and dur > 0 and np.isfinite(mean_batch) and mean_batch > 0):
        return itl, None
    return itl, (mean_batch / (tokens / dur)) / itl


def lag_gate(lag: OutputLag) -> Gate:
    """``output_lag``: the client's last token came at most ``allowed_s`` after the GPU went idle."""
    ok = lag.lag_s <= lag.allowed_s
    if ok:
        msg = (f"the client's last token came {max(lag.lag_s, 0.0):.1f} s after the GPU went idle "
               f"(<= {lag.allowed_s:.1f} s)")
    else:
        msg = (f"the client's last token came {lag.lag_s:.1f} s after the GPU went idle ({lag.fraction:.1%} of its "
               f"{lag.busy_s:.0f} s of work; > {lag.allowed_s:.1f} s): the output, not the GPU, set the pace "
               "(vLLM's API server streaming behind its engine, or this client reading behind it on a busy host), "
               f"so the window's tokens are not what the GPU made in it and energy per token reads high; {REMEDY}")
    return Gate(name="output_lag", ok=ok, value=lag.lag_s, threshold=lag.allowed_s, message=msg)


#: Tasks the pace was calibrated on (text prompts: few running requests in prefill at a time).
#: Elsewhere -- visual chat, whose image prefills stall decoding and count as running -- Little's
#: law over the running batch may read above 1 with no lag, so the gate only warns there.
PACE_CALIBRATED_TASKS = ("chat", "code")


def pace_gate(pace: float, task: str = "chat") -> Gate:
    """``client_pace``, for an early-stopped window (where :func:`output_lag` cannot tell): the
    client received tokens at most ``MAX_CLIENT_PACE`` times slower than the engine made them.
    An error for the tasks it was calibrated on, a warning for others."""
    ok = pace <= MAX_CLIENT_PACE
    if ok:
        msg = f"the client received tokens at {pace:.3f}x the engine's inter-token gap (<= {MAX_CLIENT_PACE:g})"
    else:
        msg = (f"the client received tokens {pace:.3f}x slower than the engine made them (> {MAX_CLIENT_PACE:g}): "
               f"the output, not the GPU, set the pace, so the window's tokens are not what the GPU made in it; "
               f"{REMEDY}")
    severity = "error" if task in PACE_CALIBRATED_TASKS else "warning"
    return Gate(name="client_pace", ok=ok, value=pace, threshold=MAX_CLIENT_PACE, message=msg,
                severity=severity)  # type: ignore[arg-type]
