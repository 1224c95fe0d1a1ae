"""Where the energy counter's next tick will be: the sampler uses it only to decide when to probe
after a mark (fewer counter reads); window energy never relies on it (it reads the brackets the
probes leave in the trace, :mod:`.energy`)."""

from __future__ import annotations

import math

#: Two located ticks closer than this are consecutive (the counter ticks at least this often).
MAX_TICK_S = 0.25


class TickTracker:
    """Phase and period of one GPU's counter ticks, learned from located ticks (each known to
    within ``± err_s``, half its bracket). Errors are tracked as worst-case bounds: a tick is
    related to the reference only when the number of ticks in between is unambiguous; one that
    does not fit the period resets it (the counter may not tick periodically); one too far to
    relate only moves the reference."""

    def __init__(self) -> None:
        self.period_s: float | None = None
        self.period_err_s = math.inf
        self.ref_s: float | None = None  # a located tick the period counts from
        self.ref_err_s = math.inf
        self._last: tuple[float, float] | None = None

    def located(self, tau_s: float, err_s: float) -> None:
        last, self._last = self._last, (tau_s, err_s)
        if self.period_s is None or self.ref_s is None:
            if last is not None and 0 < tau_s - last[0] <= MAX_TICK_S:
                self.period_s, self.period_err_s = tau_s - last[0], err_s + last[1]
                self.ref_s, self.ref_err_s = last
            else:
                self.ref_s, self.ref_err_s = tau_s, err_s
            return
        n = round((tau_s - self.ref_s) / self.period_s)
        bound = self.ref_err_s + n * self.period_err_s + err_s
        if n < 1 or bound >= 0.45 * self.period_s:  # cannot count the ticks in between
            self.ref_s, self.ref_err_s = tau_s, err_s
            return
        if abs(tau_s - self.ref_s - n * self.period_s) > bound:  # not periodic as learned
            self.period_s, self.period_err_s = None, math.inf
            self.ref_s, self.ref_err_s = tau_s, err_s
            return
        err = (self.ref_err_s + err_s) / n
        if err < self.period_err_s:
            self.period_s, self.period_err_s = (tau_s - self.ref_s) / n, err

    def missed(self) -> None:
        """A tick came outside its predicted window: forget the period."""
        self.period_s, self.period_err_s = None, math.inf

    def window_after(self, t_s: float) -> tuple[float, float] | None:
        """(Predicted time, half-width) of the first tick after ``t_s``, or None if unknown or
        too uncertain to help."""
        if self.period_s is None or self.ref_s is None:
            return None
        k = max(1, math.ceil((t_s - self.ref_s) / self.period_s))
        half = self.ref_err_s + k * self.period_err_s
        if half >= self.period_s / 3:
            return None
        return self.ref_s + k * self.period_s, half
