"""Chart widgets, rebuilt only when their data or size changed.

The time charts (power, batch) are drawn on a numpy braille canvas (:mod:`.braille`): power
as steps (zero-order hold), the steady window as a dotted band under the lines with a solid
edge, on every chart that shares the time axis. The Pareto scatter is :mod:`.pareto_chart`.
"""

from __future__ import annotations

import time

import msgspec
import numpy as np
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from .braille import Canvas, Plot, nice_step

BAND_MARKER = "·"


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
    #: Diffusion phases as (start, end or None = still running, phase name), drawn on the time
    #: axis as a letter (E encode, D denoise, V VAE decode) and a bar in the phase's colour.
    phases: list = []


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


AXIS_LABEL_WIDTH = 5


def _fmt_tick(v: float) -> str:
    if abs(v) >= 10000:
        return f"{v / 1000:.0f}k"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.3g}"


def _nice_max(v: float) -> float:
    if not np.isfinite(v) or v <= 0:
        return 1.0
    mag = 10 ** np.floor(np.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * mag >= v:
            return float(m * mag)
    return float(10 * mag)


_AXIS = Style(color="grey62")
_STEADY = Style(color="green")
_COLORS = {"total": Style(color="dark_orange", bold=True), "memory": Style(color="magenta"),
           "running": Style(color="cyan", bold=True), "waiting": Style(color="grey50"),
           "limit": Style(color="grey50"), "text": Style(color="grey62", italic=True),
           "band": Style(color="cyan")}
_PHASE_STYLES = {"encode": Style(color="yellow", bold=True), "denoise": Style(color="cyan", bold=True),
                 "decode": Style(color="magenta", bold=True)}
_PHASE_LETTERS = {"encode": "E", "denoise": "D", "decode": "V"}
_GPU_STYLES = tuple(Style(color=c) for c in ("cyan", "blue", "red", "yellow", "white", "grey50"))


class TimeChart(Widget):
    """A chart of :class:`TimeData` on the run's time axis, drawn on a numpy braille canvas
    (:mod:`.braille`) and cached until the data or the size changes."""

    DEFAULT_CSS = """
    TimeChart { width: 1fr; height: 1fr; min-height: 4; }
    """

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.data = TimeData()
        self._version = 0
        self._cache_key: tuple | None = None
        self._cache: Text | None = None
        self._strips: list[Strip] = []
        self.builds = 0
        self.last_build_s = 0.0
        self.build_s_total = 0.0

    def set_data(self, data: TimeData) -> None:
        self.data = data
        self.invalidate()

    def invalidate(self) -> None:
        self._version += 1
        self.refresh()

    def _build(self) -> None:
        base = self.rich_style
        key = (self.size.width, self.size.height, self._version, base)
        if key == self._cache_key and self._cache is not None:
            return
        t0 = time.perf_counter()
        w, h = max(self.size.width, 2 * AXIS_LABEL_WIDTH + 6), max(self.size.height, 4)
        canvas = Canvas(w, h)
        plot = Plot(w - 2 * AXIS_LABEL_WIDTH - 2, h - 3, *(self.data.x_range or (0.0, 1.0)))
        self.draw(canvas, plot)
        plot.blit(canvas, 1, AXIS_LABEL_WIDTH + 1)
        rows = list(canvas.runs())
        self._strips = canvas.to_strips(base, rows)
        self._cache = canvas.to_text(rows)
        self._cache_key = key
        self.builds += 1
        self.last_build_s = time.perf_counter() - t0
        self.build_s_total += self.last_build_s

    def render_line(self, y: int) -> Strip:
        """Line API: the cached strips go straight to the compositor (no Text conversion)."""
        self._build()
        if 0 <= y < len(self._strips):
            return self._strips[y].crop(0, self.size.width)
        return Strip.blank(self.size.width, self.rich_style)

    def render(self) -> Text:
        self._build()
        return self._cache

    def draw(self, canvas: Canvas, plot: Plot) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    # -- frame ------------------------------------------------------------------------------
    def _frame(self, canvas: Canvas, plot: Plot, left_hi: float, right_hi: float | None) -> None:
        """Box, y ticks 0..hi on the left (and on the right when ``right_hi``), time ticks."""
        w, rows = canvas.width, plot.rows
        lx, rx = AXIS_LABEL_WIDTH, AXIS_LABEL_WIDTH + 1 + plot.cols
        canvas.put(0, lx, "┌" + "─" * plot.cols + "┐", _AXIS)
        for r in range(rows):
            canvas.put(1 + r, lx, "│", _AXIS)
            canvas.put(1 + r, rx, "│", _AXIS)
        canvas.put(rows + 1, lx, "└" + "─" * plot.cols + "┘", _AXIS)
        n = max(1, min(4, (rows - 1) // 2 or 1))
        for side, hi, col in (("left", left_hi, lx), ("right", right_hi, rx)):
            if hi is None:
                continue
            n_side = next((k for k in range(n, 0, -1) if hi >= k and float(hi / k).is_integer()), n)
            for i in range(n_side + 1):
                v = hi * i / n_side
                r = 1 + int(plot.y_to_dot(np.array([v]), hi)[0]) // 4
                label = _fmt_tick(v)
                if side == "left":
                    canvas.put(r, 0, label.rjust(AXIS_LABEL_WIDTH)[-AXIS_LABEL_WIDTH:], _AXIS)
                    canvas.put(r, col, "┤", _AXIS)
                else:
                    canvas.put(r, col, "├", _AXIS)
                    canvas.put(r, col + 1, label.ljust(AXIS_LABEL_WIDTH)[:AXIS_LABEL_WIDTH], _AXIS)
        x0, x1 = plot.x0, plot.x1
        step = nice_step(x1 - x0, max(2, plot.cols // 14))
        v = np.ceil(x0 / step) * step
        last_end = -1
        while v <= x1 + 1e-9:
            c = plot.x_to_col(v) if v < x1 else plot.cols - 1
            label = _fmt_tick(v)
            at = lx + 1 + c
            canvas.put(rows + 1, at, "┴", _AXIS)
            start = max(0, min(w - len(label), at - len(label) // 2))
            if start > last_end:
                canvas.put(rows + 2, start, label, _AXIS)
                last_end = start + len(label)
            v += step

    def _phases(self, canvas: Canvas, plot: Plot) -> None:
        """Each phase on the time axis (the frame's bottom line): its letter at its start and a
        bar to its end in its colour. Spans share columns at coarse scales: a letter moves at
        most one column right of its span to find room, else it is left out."""
        row, lx, free = plot.rows + 1, AXIS_LABEL_WIDTH + 1, 0
        for t0, t1, name in self.data.phases:
            s = max(0, plot.x_to_col(t0))
            e = min(plot.cols - 1, plot.x_to_col(plot.x1 if t1 is None else t1))
            c0 = max(s, free)
            if c0 > plot.cols - 1 or c0 > e + 1:
                continue
            style = _PHASE_STYLES.get(name, _AXIS)
            canvas.put(row, lx + c0, _PHASE_LETTERS.get(name, "?"), style)
            if e > c0:
                canvas.put(row, lx + c0 + 1, "━" * (e - c0), style)
            free = max(c0, e) + 1

    def _message(self, plot: Plot, text: str) -> None:
        row = plot.rows // 2
        c0 = max(0, (plot.cols - len(text)) // 2)
        for i, ch in enumerate(text[: plot.cols]):
            plot.back[row, c0 + i] = ch
            plot.back_style[row, c0 + i] = _COLORS["text"]

    def _steady(self, plot: Plot) -> None:
        d = self.data
        if d.steady_start_s is None:
            return
        end = plot.x1 if d.steady_end_s is None else d.steady_end_s
        plot.band(d.steady_start_s, end, BAND_MARKER, _STEADY)
        if d.steady_end_s is not None:
            plot.vline(d.steady_end_s, "│", _STEADY)


#: Beyond this many GPUs the per-GPU lines fold into a min/max band.
MAX_GPU_LINES = 4


def gpu_band(per_gpu_w: list) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample minimum and maximum over GPUs (NaNs ignored)."""
    vv = np.vstack([np.asarray(v, dtype=np.float64) for v in per_gpu_w])
    with np.errstate(all="ignore"):
        return np.nanmin(vv, axis=0), np.nanmax(vv, axis=0)


class PowerChart(TimeChart):
    """GPU power as steps: the total (left axis) and, with several GPUs, one line per GPU on
    the right axis (its own scale, so 8 x 700 W of total does not flatten them); beyond
    :data:`MAX_GPU_LINES` GPUs the per-GPU lines fold into their min/max band. Memory (HBM)
    power, summed, on the left axis when ``show_memory``."""

    show_memory = True

    def draw(self, canvas: Canvas, plot: Plot) -> None:
        d = self.data
        t = d.power_t
        if t is None or len(t) == 0:
            self._frame(canvas, plot, 1000.0, None)
            self._message(plot, "waiting for power samples")
            return
        memory = d.memory_w if self.show_memory else None
        left = [np.asarray(d.total_w, dtype=np.float64)] + ([np.asarray(memory, dtype=np.float64)] if memory is not None else [])
        y_hi = _nice_max(_finite_max(left) * 1.05)
        ngpu = len(d.per_gpu_w)
        right = None
        if ngpu > 1:
            right = [np.asarray(v, dtype=np.float64) for v in d.per_gpu_w] if ngpu <= MAX_GPU_LINES else list(gpu_band(d.per_gpu_w))
        r_hi = _nice_max(_finite_max(right) * 1.05) if right is not None else None
        self._frame(canvas, plot, y_hi, r_hi)
        self._steady(plot)
        self._phases(canvas, plot)
        if right is not None:
            if ngpu <= MAX_GPU_LINES:
                for i, v in enumerate(right):
                    plot.series(t, v, r_hi, _GPU_STYLES[i % len(_GPU_STYLES)], hold_to=plot.x1)
            else:
                for v in right:
                    plot.series(t, v, r_hi, _COLORS["band"], hold_to=plot.x1)
        if memory is not None:
            plot.series(t, left[1], y_hi, _COLORS["memory"], hold_to=plot.x1)
        plot.series(t, left[0], y_hi, _COLORS["total"], hold_to=plot.x1)


def _finite_max(series: list | None) -> float:
    if not series:
        return 1.0
    vv = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in series])
    vv = vv[np.isfinite(vv)]
    return float(vv.max()) if vv.size else 1.0


def power_legend(d: TimeData, limit_w: list[float] | None = None, show_memory: bool = True) -> str:
    """The power chart's legend (Rich markup), with the latest values: total, per GPU (each in
    its line's colour; min-max beyond :data:`MAX_GPU_LINES`; → = right axis), memory, the limit."""
    pl = f"[{_COLORS['total'].color.name}]⣿[/] total W"
    if d.total_w is not None and len(d.total_w):
        pl += f" {d.total_w[-1]:.0f}"
        n = len(d.per_gpu_w)
        if 1 < n <= MAX_GPU_LINES:
            pl += " · GPU→ " + " ".join(
                f"[{_GPU_STYLES[i % len(_GPU_STYLES)].color.name}]⣿[/]{a[-1]:.0f}" for i, a in enumerate(d.per_gpu_w))
        elif n > MAX_GPU_LINES:
            lo, hi = gpu_band(d.per_gpu_w)
            pl += f" · [{_COLORS['band'].color.name}]⣿[/] {n} GPUs min–max→ {lo[-1]:.0f}–{hi[-1]:.0f}"
        if show_memory and d.memory_w is not None:
            pl += f" · [{_COLORS['memory'].color.name}]⣿[/] mem {d.memory_w[-1]:.0f}"
    if limit_w:
        pl += f" · limit {'/'.join(f'{w:.0f}' for w in sorted(set(limit_w)))}"
    if d.phases:
        pl += " · E/D/V phases"
    return pl


class BatchChart(TimeChart):
    """Server running batch (and waiting requests on their own axis), with B as a line."""

    def draw(self, canvas: Canvas, plot: Plot) -> None:
        d = self.data
        t = d.batch_t
        b = float(d.max_num_seqs or 1)
        if t is None or len(t) == 0:
            self._frame(canvas, plot, _nice_max(b * 1.1), None)
            self._message(plot, "waiting for batch samples")
            return
        running = np.asarray(d.running, dtype=np.float64)
        waiting = np.asarray(d.waiting, dtype=np.float64)
        running_hi = float(np.nanmax(running)) if running.size else 1.0
        waiting_hi = float(np.nanmax(waiting)) if waiting.size else 0.0
        y_hi = _nice_max(max(b, running_hi) * 1.1)
        w_hi = _nice_max(waiting_hi * 1.05) if waiting_hi > 0 else None
        self._frame(canvas, plot, y_hi, w_hi)
        self._steady(plot)
        if d.max_num_seqs:
            plot.hline(b, y_hi, "─", _COLORS["limit"])
        if w_hi is not None:
            plot.series(t, waiting, w_hi, _COLORS["waiting"], hold_to=plot.x1)
        plot.series(t, running, y_hi, _COLORS["running"], hold_to=plot.x1)

