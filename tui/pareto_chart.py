"""The Pareto scatter (time vs energy per request) on textual-plotext, cached until its points or
its size change."""

from __future__ import annotations

import time
from collections.abc import Sequence

from textual_plotext import PlotextPlot


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


class ParetoChart(CachedPlot):
    """Time–energy scatter: every configuration, the frontier as a line, the target and the
    recommended configuration. The axes fit the configurations (a target outside them is not
    drawn, and the screen says where it is); latency in the unit that fits the data."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.points: list[tuple[str, float, float]] = []
        self.frontier: list[tuple[float, float]] = []
        self.recommended: tuple[float, float] | None = None
        self.target_s: float | None = None
        self.unit = "s"

    def set_points(self, points: Sequence[tuple[str, float, float]], frontier: Sequence[tuple[float, float]],
                   recommended: tuple[float, float] | None, target_s: float | None) -> None:
        self.points = list(points)
        self.frontier = list(frontier)
        self.recommended = recommended
        self.target_s = target_s
        self.unit = latency_unit(max((p[1] for p in self.points), default=1.0))
        self.invalidate()

    def draw(self, plt, width: int, height: int) -> None:
        plt.frame(True)
        scale = UNIT_SCALE[self.unit]
        plt.xlabel(f"latency ({self.unit})")
        plt.ylabel("J/request")
        if not self.points:
            plt.text("no measured configuration", 0.5, 0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
            return
        xs = [p[1] * scale for p in self.points]
        ys = [p[2] for p in self.points]
        x0, x1 = _fit(xs, 0.08)
        y0, y1 = _fit(ys, 0.1)
        plt.xlim(x0, x1)
        plt.ylim(y0, y1)
        plt.xfrequency(max(2, width // 14))
        if self.frontier:
            plt.plot([f[0] * scale for f in self.frontier], [f[1] for f in self.frontier],
                     marker="braille", color="green")
        plt.scatter(xs, ys, marker="o", color="cyan")
        if self.target_s is not None and x0 <= self.target_s * scale <= x1:
            plt.vline(self.target_s * scale, color="red")
        if self.recommended is not None:
            plt.scatter([self.recommended[0] * scale], [self.recommended[1]], marker="★", color="yellow")


UNIT_SCALE = {"µs": 1e6, "ms": 1e3, "s": 1.0}


def latency_unit(max_s: float) -> str:
    return "µs" if max_s < 1e-3 else ("ms" if max_s < 1.0 else "s")


def _fit(vs: list[float], pad_frac: float) -> tuple[float, float]:
    """An axis range around the values (padded; never below 0 when the values are not)."""
    lo, hi = min(vs), max(vs)
    pad = (hi - lo) * pad_frac or max(abs(hi) * 0.1, 1e-9)
    return (max(0.0, lo - pad) if lo >= 0 else lo - pad), hi + pad
