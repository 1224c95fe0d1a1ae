"""Early stop: a configuration's answer is known once the 95 % confidence interval of its
energy per token is narrow enough.

Batch means over the steady window: the window (as the live detector sees it) is cut into
blocks of ``block_s`` from its start; block *k* gives ``r_k = E_k / tokens_k`` (counter energy,
server token counter interpolated at the block edges). With *n* blocks the interval is
``mean(r) ± t(0.975, n-1) · sd(r) / sqrt(n)``. The configuration stops at the end of the first
block after which the half-width is ``<= ci_rel · mean``, there are ``>= min_blocks`` blocks
covering ``>= min_window_s``, the running batch averaged ``>= min_batch_fraction · B`` and the
energy per token is inside the sanity gate. Blocks are evaluated ``settle_s`` (1.2 s) after
their end, once the sampler (counter read once a second) has a reading past it.

The decision is a fact the runner writes into the trace (:class:`~..records.EarlyStop`); the
analysis ends the steady window there, so the record stays what the grid would have written
for the same window.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable

import msgspec

from ..records import EarlyStop
from .spec import AdaptiveSpec

#: Two-sided 95 % Student-t quantiles, df 1..30.
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042]


def t975(df: int) -> float:
    """Two-sided 95 % quantile of Student's t (table to df 30, Cornish-Fisher beyond: < 1e-3)."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def batch_means_ci(ratios: list[float]) -> tuple[float, float]:
    """(mean, relative half-width of its 95 % interval) of per-block ratios; inf below 2."""
    n = len(ratios)
    if n < 2:
        return (ratios[0] if ratios else math.nan), math.inf
    mean = math.fsum(ratios) / n
    var = math.fsum((r - mean) ** 2 for r in ratios) / (n - 1)
    if not mean > 0:
        return mean, math.inf
    return mean, t975(n - 1) * math.sqrt(var / n) / mean


class EarlyStopMonitor:
    """Fed the server's batch samples and the live steady window; calls ``on_stop`` once,
    with the :class:`EarlyStop` fact, when the configuration's answer is known."""

    def __init__(self, spec: AdaptiveSpec, *, max_num_seqs: int, min_window_s: float,
                 min_batch_fraction: float, max_energy_per_token_j: float,
                 energy_between: Callable[[float, float], float], on_stop: Callable[[EarlyStop], None],
                 settle_s: float = 1.2) -> None:
        self.spec = spec
        self.B = max_num_seqs
        self.min_window_s = min_window_s
        self.min_batch_fraction = min_batch_fraction
        self.max_ept = max_energy_per_token_j
        self.energy_between = energy_between
        self.on_stop = on_stop
        self.settle_s = settle_s
        self._lock = threading.Lock()
        self._t: list[float] = []
        self._gen: list[float] = []
        self._run: list[float] = []
        self._start: float | None = None
        self._ratios: list[float] = []
        self._batch_means: list[float] = []
        self.decided: EarlyStop | None = None
        #: (blocks, relative half-width) after each block, for the live view and tests.
        self.history: list[tuple[int, float]] = []

    def on_batch(self, t_s: float, running: float, gen_tokens: float | None, window_start_s: float | None,
                 window_open: bool) -> EarlyStop | None:
        """One server sample and the live window (start, still open). Returns the decision
        the first time it is taken."""
        if self.decided is not None or not self.spec.ci_rel > 0:
            return None
        with self._lock:
            if gen_tokens is None or not math.isfinite(gen_tokens):
                return None
            self._t.append(t_s)
            self._gen.append(float(gen_tokens))
            self._run.append(float(running))
            if window_start_s is None or not window_open:
                self._start = None
                return None
            if self._start != window_start_s:  # a new (or restarted) window: blocks from its start
                self._start = window_start_s
                self._ratios, self._batch_means = [], []
            decision = self._blocks(t_s)
        if decision is not None:
            self.on_stop(decision)
        return decision

    def _blocks(self, now_s: float) -> EarlyStop | None:
        sp, w0 = self.spec, float(self._start)  # type: ignore[arg-type]
        while True:
            k = len(self._ratios)
            a, b = w0 + k * sp.block_s, w0 + (k + 1) * sp.block_s
            if now_s < b + self.settle_s or self._t[0] > a:
                return None
            e = self.energy_between(a, b)
            tok = self._interp(b) - self._interp(a)
            if not math.isfinite(e) and now_s < b + 10 * self.settle_s:
                return None  # the counter reading after the block has not come yet: ask again
            if not (math.isfinite(e) and e > 0 and tok > 0):
                self.spec = msgspec.structs.replace(sp, ci_rel=0.0)  # no energy or no tokens: no stop
                return None
            self._ratios.append(e / tok)
            lo, hi = bisect.bisect_left(self._t, a), bisect.bisect_right(self._t, b)
            self._batch_means.append(math.fsum(self._run[lo:hi]) / (hi - lo) if hi > lo else 0.0)
            mean, rel = batch_means_ci(self._ratios)
            n = len(self._ratios)
            self.history.append((n, rel))
            mean_batch = math.fsum(self._batch_means) / n
            if (n >= sp.min_blocks and n * sp.block_s >= self.min_window_s - 1e-9 and rel <= sp.ci_rel
                    and mean_batch >= self.min_batch_fraction * self.B and 0 < mean <= self.max_ept):
                self.decided = EarlyStop(t_s=b, window_start_s=w0, blocks=n, block_s=sp.block_s, ci_rel=rel,
                                         ci_target=sp.ci_rel, energy_per_token_j=mean)
                return self.decided

    def _interp(self, t: float) -> float:
        i = bisect.bisect_left(self._t, t)
        if i <= 0:
            return self._gen[0]
        if i >= len(self._t):
            return self._gen[-1]
        t0, t1 = self._t[i - 1], self._t[i]
        g0, g1 = self._gen[i - 1], self._gen[i]
        return g0 if t1 <= t0 else g0 + (g1 - g0) * (t - t0) / (t1 - t0)


def predicted_blocks(ratios: list[float], spec: AdaptiveSpec, min_window_s: float) -> int | None:
    """The block count at which :class:`EarlyStopMonitor` stops on these per-block ratios
    (the rule without the batch and sanity gates): for tests and the GPU-time model."""
    for n in range(2, len(ratios) + 1):
        _, rel = batch_means_ci(ratios[:n])
        if n >= spec.min_blocks and n * spec.block_s >= min_window_s - 1e-9 and rel <= spec.ci_rel:
            return n
    return None
