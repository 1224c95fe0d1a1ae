"""What the full grid would have cost, from the configurations a run measured: each grid
configuration's run time (its server start aside), measured where it ran to the end, else
modelled; labelled an estimate wherever it is shown.

**LLM** (records with TPOT): the run of N requests in waves of B is
``N / B x mean output tokens x TPOT x overrun``, where the overrun (ramp-up, the last wave's
tail, idle) is the median of measured full runs over that product. TPOT is modelled as
separable in B and the power limit, ``log TPOT = u(B) + v(limit)`` (per TP / PP shape), fitted
by least squares to every measured configuration (early-stopped ones included: their TPOT is
measured). A B row or a limit never measured is interpolated (``u`` linear in log2 B, ``v``
linear in the limit) or extrapolated from the two nearest measured ones, never so that TPOT
falls with B or rises with the limit. On the H200 (2026-11-30) the power limit alone moved
TPOT 2.5x between 700 and 250 W at every B, which a nearest-configuration TPOT missed (the
grid's estimate was 30-40 % short).

**Diffusion** (batch latency): the nearest measured configuration's batch latency x batches.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from ..config import Config
from ..records import RecordHead

#: Run-time overrun over the wave model where nothing ran to the end to calibrate it.
DEFAULT_OVERRUN = 1.2
#: Least-squares sweeps of the separable TPOT fit (it converges in a few on a grid's tables).
FIT_SWEEPS = 50


def shape(cfg: Config) -> tuple:
    """Every axis but B and the power limit."""
    return (cfg.tensor_parallel, cfg.pipeline_parallel, cfg.num_inference_steps, cfg.width, cfg.height)


def _tpot(r: RecordHead) -> float | None:
    t = r.latency.tpot
    return t.mean_s if t is not None and t.mean_s and t.mean_s > 0 else None


def wave_s(r: RecordHead, n_requests: int, batches: int, batch: int | None = None,
           tpot_s: float | None = None) -> float | None:
    """The wave model's run time of ``n_requests`` in waves of ``batch`` (default r's B) at
    ``tpot_s`` (default r's TPOT) and r's mean output; diffusion: ``batches`` x r's batch latency."""
    tpot = tpot_s if tpot_s is not None else _tpot(r)
    if tpot and r.mean_output_tokens:
        return n_requests / max(1, batch or r.config.batch) * r.mean_output_tokens * tpot
    bl = r.latency.batch_latency
    if bl is not None and bl.mean_s:
        return batches * bl.mean_s
    return None


class TpotModel:
    """``log TPOT = u(B) + v(limit)`` fitted to measured (B, limit, TPOT) of one shape."""

    def __init__(self, points: list[tuple[int, float | None, float]]) -> None:
        self.bs = sorted({b for b, _, _ in points})
        self.ps = sorted({_p(p) for _, p, _ in points})
        y = [(b, _p(p), math.log(t)) for b, p, t in points]
        u = {b: statistics.fmean(v for bb, _, v in y if bb == b) for b in self.bs}
        v: dict[float, float] = {}
        for _ in range(FIT_SWEEPS):
            v = {p: statistics.fmean(val - u[b] for b, pp, val in y if pp == p) for p in self.ps}
            top = v[self.ps[-1]]
            v = {p: x - top for p, x in v.items()}
            u = {b: statistics.fmean(val - v[p] for bb, p, val in y if bb == b) for b in self.bs}
        self.u, self.v = u, v

    def tpot_s(self, batch: int, limit_w: float | None) -> float:
        u = _line([(math.log2(b), self.u[b]) for b in self.bs], math.log2(batch), rising=True)
        v = _line([(p, self.v[p]) for p in self.ps], _p(limit_w), rising=False)
        return math.exp(u + v)


def _p(limit_w: float | None) -> float:
    return math.inf if limit_w is None else float(limit_w)  # the default limit: above any set one


def _line(pts: list[tuple[float, float]], x: float, *, rising: bool) -> float:
    """Piecewise-linear through ``pts`` (sorted by x), extended from the two nearest points at
    either end with a slope of the given sign only (flat otherwise)."""
    for a, b in pts:
        if a == x:
            return b
    if not math.isfinite(x):
        return max(pts)[1]  # the default power limit: as the highest measured
    finite = [(a, b) for a, b in pts if math.isfinite(a)]
    if len(finite) < 2:
        return min(finite or pts, key=lambda ab: abs(ab[0] - x))[1]
    for (x0, y0), (x1, y1) in zip(finite, finite[1:]):
        if x0 < x < x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    (x0, y0), (x1, y1) = (finite[0], finite[1]) if x < finite[0][0] else (finite[-2], finite[-1])
    slope = (y1 - y0) / (x1 - x0)
    slope = max(0.0, slope) if rising else min(0.0, slope)
    base_x, base_y = (x0, y0) if x < finite[0][0] else (x1, y1)
    return base_y + slope * (x - base_x)


def _distance(a: Config, b: Config) -> float:
    d = abs(math.log2(a.batch) - math.log2(b.batch))
    d += abs((a.power_limit_w or 0) - (b.power_limit_w or 0)) / 100.0
    return d + 10.0 * (shape(a) != shape(b))


def run_estimates(records: list[RecordHead], full_s: dict[str, float], configs: list[Config], *,
                  n_requests: Callable[[Config], int], batches: int = 1) -> dict[str, float] | None:
    """Each grid configuration's GPU time without its server start, s: ``full_s`` (measured,
    ran to the end) where given, else modelled (see the module's text). None: nothing measured
    to model from."""
    overruns = []
    for r in records:
        if r.config_key in full_s:
            u = wave_s(r, r.num_requests, batches)
            if u:
                overruns.append(full_s[r.config_key] / (u * max(1, r.config.num_gpus)))
    overrun = statistics.median(overruns) if overruns else DEFAULT_OVERRUN
    usable = [r for r in records if wave_s(r, max(1, r.num_requests), batches)]
    models: dict[tuple, TpotModel] = {}
    for s in {shape(r.config) for r in usable}:
        pts = [(r.config.batch, r.config.power_limit_w, t) for r in usable
               if shape(r.config) == s and (t := _tpot(r)) is not None]
        if pts:
            models[s] = TpotModel(pts)
    out: dict[str, float] = {}
    for c in configs:
        key = c.key()
        if key in full_s:
            out[key] = full_s[key]
            continue
        if not usable:
            return None
        near = min(usable, key=lambda r: _distance(r.config, c))
        model = models.get(shape(c))
        tpot = model.tpot_s(c.batch, c.power_limit_w) if model is not None and _tpot(near) else None
        out[key] = max(1, c.num_gpus) * (wave_s(near, n_requests(c), batches, c.batch, tpot) or 0.0) * overrun
    return out
