"""Chart widgets on textual-plotext: rebuilt only when their data or size changed.

Power is drawn as steps (zero-order hold). The steady window is drawn as a band (rectangle),
under the lines, with a vertical line at each end, on every chart that shares the time axis.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import msgspec
import numpy as np
from textual_plotext import PlotextPlot

from .series import decimate, steps

BAND_MARKER = "·"
#: Samples kept per chart column before the step (zero-order hold) doubling: the points handed
#: to plotext are ~2x the widget width (braille has two dots per cell across).
SAMPLES_PER_COLUMN = 1


class TimeData(msgspec.Struct, kw_only=True):
    """What the power and batch charts draw; arrays are numpy (float64)."""

    power_t: object = None          # np.ndarray | None
    total_w: object = None
    per_gpu_w: list = []            # list[np.ndarray]
    memory_w: object = None
    batch_t: object = None
    running: object = None
    waiting: object = None
    steady_start_s: float | None = None
    steady_end_s: float | None = None
    max_num_seqs: int | None = None
    #: Shared x range (s) of both charts.
    x_range: tuple[float, float] | None = None


def shared_x_range(*ts) -> tuple[float, float] | None:
    lo, hi = None, None
    for t in ts:
        if t is None or len(t) == 0:
            continue
        lo = float(t[0]) if lo is None else min(lo, float(t[0]))
        hi = float(t[-1]) if hi is None else max(hi, float(t[-1]))
    if lo is None:
        return None
    if hi - lo < 1.0:
        hi = lo + 1.0
    return lo, hi


class CachedPlot(PlotextPlot):
    """A PlotextPlot that draws through :meth:`draw` and caches the built text until
    :meth:`invalidate` is called or the size changes."""

    DEFAULT_CSS = """
    CachedPlot { width: 1fr; height: 1fr; min-height: 4; }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self._version = 0
        self._cache_key: tuple | None = None
        self._cache = None
        #: Number of plotext builds, the last one's and the total cost (tests, benchmark).
        self.builds = 0
        self.last_build_s = 0.0
        self.build_s_total = 0.0

    def invalidate(self) -> None:
        self._version += 1
        self.refresh()

    def draw(self, plt, width: int, height: int) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def render(self):
        key = (self.size.width, self.size.height, self._version, self.app.theme)
        if key == self._cache_key and self._cache is not None:
            return self._cache
        t0 = time.perf_counter()
        plt = self._plot
        plt.clear_figure()
        w, h = max(self.size.width, 10), max(self.size.height, 3)
        self.draw(plt, w, h)
        self._cache = super().render()
        self._cache_key = key
        self.builds += 1
        self.last_build_s = time.perf_counter() - t0
        self.build_s_total += self.last_build_s
        return self._cache


def _band(plt, t0: float | None, t1: float | None, x_hi: float, y_lo: float, y_hi: float,
          color="green") -> None:
    """The steady window: a dotted band with solid edges, drawn under the data lines (the band
    stays open at the right while the window is open)."""
    if t0 is None:
        return
    end = x_hi if t1 is None else t1
    if end > t0:
        plt.rectangle(x=[t0, end], y=[y_lo, y_hi], marker=BAND_MARKER, color=color, fill=True, lines=False)
    plt.plot([t0, t0], [y_lo, y_hi], marker="│", color=color)
    if t1 is not None:
        plt.plot([t1, t1], [y_lo, y_hi], marker="│", color=color)


def _vlines(plt, t0: float | None, t1: float | None, color="green") -> None:
    if t0 is not None:
        plt.vline(t0, color=color)
    if t1 is not None:
        plt.vline(t1, color=color)


AXIS_LABEL_WIDTH = 5


def _fmt_tick(v: float) -> str:
    if abs(v) >= 10000:
        return f"{v / 1000:.0f}k"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.3g}"


def _y_axis(plt, hi: float, n: int, yside: str = "left") -> None:
    """Ticks 0..hi with labels padded to one width on both sides, so charts stacked on one
    time axis line up column for column."""
    n = max(1, n)
    # Prefer a tick count whose step is a whole number (10 over 2, not 3.33 over 3).
    n = next((k for k in range(n, 0, -1) if hi >= k and float(hi / k).is_integer()), n)
    ticks = [hi * i / n for i in range(n + 1)]
    pad = (lambda t: t.rjust(AXIS_LABEL_WIDTH)) if yside == "left" else (lambda t: t.ljust(AXIS_LABEL_WIDTH))
    plt.ylim(0, hi, yside=yside)
    plt.yticks(ticks, [pad(_fmt_tick(t)) for t in ticks], yside=yside)


def _blank_right_axis(plt, x0: float) -> None:
    """Reserve the right axis (same width as a real one) without drawing anything."""
    plt.plot([x0], [-1.0], marker=" ", yside="right")
    plt.ylim(0, 1, yside="right")
    plt.yticks([0, 1], [" " * AXIS_LABEL_WIDTH] * 2, yside="right")


def _nice_max(v: float) -> float:
    if not np.isfinite(v) or v <= 0:
        return 1.0
    mag = 10 ** np.floor(np.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * mag >= v:
            return float(m * mag)
    return float(10 * mag)


class TimeChart(CachedPlot):
    """A chart of :class:`TimeData` on the run's time axis."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.data = TimeData()

    def set_data(self, data: TimeData) -> None:
        self.data = data
        self.invalidate()

    def _frame(self, plt, width: int, height: int) -> tuple[tuple[float, float], int]:
        """Frame, x ticks and limits shared by the charts; returns the x range and y tick count."""
        plt.frame(True)
        plt.xfrequency(max(2, width // 14))
        xr = self.data.x_range or (0.0, 1.0)
        plt.xlim(*xr)
        return xr, max(1, min(4, (height - 3) // 2))


class PowerChart(TimeChart):
    """GPU power: total (and per GPU when several; memory where available) as steps."""

    def draw(self, plt, width: int, height: int) -> None:
        d = self.data
        xr, ny = self._frame(plt, width, height)
        _blank_right_axis(plt, xr[0])
        t = d.power_t
        if t is None or len(t) == 0:
            _y_axis(plt, 1000.0, ny)
            plt.text("waiting for power samples", (xr[0] + xr[1]) / 2, 500.0, alignment="center")
            return
        series = [d.total_w, *d.per_gpu_w]
        if d.memory_w is not None:
            series.append(d.memory_w)
        max_pts = max(8, SAMPLES_PER_COLUMN * width)
        stacked = np.vstack(series)
        tt, vv = decimate(np.asarray(t), stacked, max_pts)
        finite = vv[np.isfinite(vv)]
        y_hi = _nice_max(float(finite.max()) * 1.05 if finite.size else 1.0)
        _y_axis(plt, y_hi, ny)
        _band(plt, d.steady_start_s, d.steady_end_s, xr[1], 0, y_hi)
        q = y_hi / (4 * max(1, height - 3))  # one braille dot row
        ngpu = len(d.per_gpu_w)
        if ngpu > 1:
            # Per-GPU lines: one point per column, no steps (cheap; the total carries the detail).
            tg, vg = decimate(tt, vv[1:1 + ngpu], max(8, width // 2))
            for i in range(ngpu):
                plt.plot(tg.tolist(), vg[i].tolist(), marker="•", color=_GPU_COLORS[i % len(_GPU_COLORS)])
        if d.memory_w is not None:
            xs, ys = steps(tt, vv[-1], xr[1], quantum=q)
            plt.plot(xs, ys, marker="-", color="magenta")
        xs, ys = steps(tt, vv[0], xr[1], quantum=q)
        plt.plot(xs, ys, marker="braille", color="orange")
        _vlines(plt, d.steady_start_s, d.steady_end_s)


_GPU_COLORS = ("cyan", "blue", "red", "yellow", "white", "gray")


class BatchChart(TimeChart):
    """Server running batch (and waiting requests), with the configured B as a line."""

    def draw(self, plt, width: int, height: int) -> None:
        d = self.data
        xr, ny = self._frame(plt, width, height)
        t = d.batch_t
        b = float(d.max_num_seqs or 1)
        if t is None or len(t) == 0:
            _blank_right_axis(plt, xr[0])
            _y_axis(plt, _nice_max(b * 1.1), ny)
            plt.text("waiting for batch samples", (xr[0] + xr[1]) / 2, b / 2, alignment="center")
            return
        tt, vv = decimate(np.asarray(t), np.vstack([d.running, d.waiting]),
                          max(8, SAMPLES_PER_COLUMN * width))
        running_hi = float(np.nanmax(vv[0])) if vv.shape[1] else 1.0
        waiting_hi = float(np.nanmax(vv[1])) if vv.shape[1] else 0.0
        y_hi = _nice_max(max(b, running_hi) * 1.1)
        _y_axis(plt, y_hi, ny)
        _band(plt, d.steady_start_s, d.steady_end_s, xr[1], 0, y_hi)
        if d.max_num_seqs:
            plt.hline(b, color="gray")
        q = y_hi / (4 * max(1, height - 3))
        if waiting_hi > 0:
            # Waiting requests can dwarf the batch: their own axis, on the right.
            w_hi = _nice_max(waiting_hi * 1.05)
            xs, ys = steps(tt, vv[1], xr[1], quantum=w_hi / (4 * max(1, height - 3)))
            plt.plot(xs, ys, marker="-", color="gray", yside="right")
            _y_axis(plt, w_hi, ny, yside="right")
        else:
            _blank_right_axis(plt, xr[0])
        xs, ys = steps(tt, vv[0], xr[1], quantum=q)
        plt.plot(xs, ys, marker="braille", color="cyan")
        _vlines(plt, d.steady_start_s, d.steady_end_s)


class ParetoChart(CachedPlot):
    """Time–energy scatter: every configuration, the frontier as a line, the target and the
    recommended configuration."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.points: list[tuple[str, float, float]] = []
        self.frontier: list[tuple[float, float]] = []
        self.recommended: tuple[float, float] | None = None
        self.target_s: float | None = None
        self.unit = "s"

    def set_points(self, points: Sequence[tuple[str, float, float]], frontier: Sequence[tuple[float, float]],
                   recommended: tuple[float, float] | None, target_s: float | None, unit_ms: bool) -> None:
        self.points = list(points)
        self.frontier = list(frontier)
        self.recommended = recommended
        self.target_s = target_s
        self.unit = "ms" if unit_ms else "s"
        self.invalidate()

    def draw(self, plt, width: int, height: int) -> None:
        plt.frame(True)
        scale = 1e3 if self.unit == "ms" else 1.0
        plt.xlabel(f"latency ({self.unit})")
        plt.ylabel("J/request")
        if not self.points:
            plt.text("no measured configuration", 0.5, 0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
            return
        xs = [p[1] * scale for p in self.points]
        ys = [p[2] for p in self.points]
        lo_x, hi_x = min(xs), max(xs)
        pad_x = (hi_x - lo_x) * 0.08 or max(hi_x * 0.1, 1e-3)
        lo_y, hi_y = min(ys), max(ys)
        pad_y = (hi_y - lo_y) * 0.1 or max(hi_y * 0.1, 1e-3)
        x0, x1 = max(0.0, lo_x - pad_x), hi_x + pad_x
        if self.target_s is not None:
            x1 = max(x1, self.target_s * scale * 1.02)
        plt.xlim(x0, x1)
        plt.ylim(max(0.0, lo_y - pad_y), hi_y + pad_y)
        plt.xfrequency(max(2, width // 14))
        if self.frontier:
            plt.plot([f[0] * scale for f in self.frontier], [f[1] for f in self.frontier],
                     marker="braille", color="green")
        plt.scatter(xs, ys, marker="o", color="cyan")
        if self.target_s is not None:
            plt.vline(self.target_s * scale, color="red")
        if self.recommended is not None:
            plt.scatter([self.recommended[0] * scale], [self.recommended[1]], marker="★", color="yellow")
