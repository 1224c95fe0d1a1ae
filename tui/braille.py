"""A numpy braille canvas for the time charts (replaces plotext there: a 160x48 redraw of an
hour of data costs ~2 ms here against 30-90 ms for plotext's matrix build).

Each cell holds 2x4 dots. A series is drawn as an envelope per dot column: the span between
the lowest and highest value seen in the column, joined to the value held from the previous
column, so steps (zero-order hold) and spikes both show. Cells take the colour of the
top-most series with a dot in them.
"""

from __future__ import annotations

import numpy as np
from rich.style import Style
from rich.segment import Segment
from rich.text import Text
from textual.strip import Strip

#: Braille dot bit for (row in cell 0..3, column in cell 0..1).
_DOT = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.uint16)
_BRAILLE = np.array([chr(0x2800 + i) for i in range(256)], dtype=object)


class Canvas:
    """A character grid of ``width`` x ``height`` cells with a per-cell style."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.chars = np.full((height, width), " ", dtype=object)
        self.styles = np.full((height, width), None, dtype=object)

    def put(self, row: int, col: int, text: str, style: Style | None = None) -> None:
        for i, ch in enumerate(text):
            c = col + i
            if 0 <= row < self.height and 0 <= c < self.width:
                self.chars[row, c] = ch
                self.styles[row, c] = style

    def runs(self):
        """Per row, the (text, style) runs of equal style."""
        for r in range(self.height):
            row_chars, row_styles = self.chars[r], self.styles[r]
            out, start = [], 0
            for c in range(1, self.width + 1):
                if c == self.width or row_styles[c] is not row_styles[start]:
                    out.append(("".join(row_chars[start:c]), row_styles[start]))
                    start = c
            yield out

    def to_text(self, rows=None) -> Text:
        out = Text(no_wrap=True, overflow="crop", end="")
        rows = list(self.runs()) if rows is None else rows
        for r, runs in enumerate(rows):
            for text, style in runs:
                out.append(text, style)
            if r + 1 < len(rows):
                out.append("\n")
        return out

    def to_strips(self, base: Style, rows=None) -> list[Strip]:
        """Textual strips (the Line API), the widget's ``base`` style under every run."""
        rows = list(self.runs()) if rows is None else rows
        return [Strip([Segment(text, base + style if style is not None else base) for text, style in runs],
                      self.width) for runs in rows]


class Plot:
    """The dot area of a chart: ``cols`` x ``rows`` cells, x in [x0, x1], per-series y scale."""

    def __init__(self, cols: int, rows: int, x0: float, x1: float) -> None:
        self.cols, self.rows = max(1, cols), max(1, rows)
        self.x0, self.x1 = x0, x1 if x1 > x0 else x0 + 1.0
        self.bits = np.zeros((self.rows, self.cols), dtype=np.uint16)
        #: Index of the top-most series per cell (-1: none) and the series' styles.
        self.owner = np.full((self.rows, self.cols), -1, dtype=np.int16)
        self.layer_styles: list[Style] = []
        #: Background marks per cell (band, hlines), drawn where no dot is.
        self.back = np.full((self.rows, self.cols), "", dtype=object)
        self.back_style = np.full((self.rows, self.cols), None, dtype=object)
        #: Marks drawn over the dots (the steady window's edges).
        self.over: dict[int, tuple[str, Style]] = {}

    @property
    def dots_x(self) -> int:
        return 2 * self.cols

    @property
    def dots_y(self) -> int:
        return 4 * self.rows

    def x_to_dot(self, t: np.ndarray) -> np.ndarray:
        return np.floor((np.asarray(t, dtype=np.float64) - self.x0) / (self.x1 - self.x0) * self.dots_x).astype(np.int64)

    def x_to_col(self, t: float) -> int:
        return int(np.floor((t - self.x0) / (self.x1 - self.x0) * self.cols))

    def y_to_dot(self, y: np.ndarray, hi: float) -> np.ndarray:
        """Dot row from the top (0) for values in [0, hi]."""
        frac = np.clip(np.asarray(y, dtype=np.float64) / (hi if hi > 0 else 1.0), 0.0, 1.0)
        return np.rint((1.0 - frac) * (self.dots_y - 1)).astype(np.int64)

    def series(self, t: np.ndarray, y: np.ndarray, hi: float, style: Style, *, hold_to: float | None = None,
               join: bool = True) -> None:
        """Draw samples (t, y) on the scale [0, hi]; each value is held until the next sample
        and the last one until ``hold_to``. NaNs are skipped."""
        t = np.asarray(t, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        ok = np.isfinite(y) & np.isfinite(t)
        t, y = t[ok], y[ok]
        if t.size == 0:
            return
        nx = self.dots_x
        xd = self.x_to_dot(t)
        yd = self.y_to_dot(y, hi)
        inside = (xd >= 0) & (xd < nx)
        lo = np.full(nx, np.iinfo(np.int64).max, dtype=np.int64)
        hi_d = np.full(nx, -1, dtype=np.int64)
        np.minimum.at(lo, xd[inside], yd[inside])
        np.maximum.at(hi_d, xd[inside], yd[inside])
        has = hi_d >= 0
        # The value held into each column: the last sample of the nearest earlier column.
        last = np.full(nx, -1, dtype=np.int64)
        if inside.any():
            # last sample per column: samples are time-ordered, so the last write wins.
            last[xd[inside]] = yd[inside]
        idx = np.where(last >= 0, np.arange(nx), -1)
        np.maximum.accumulate(idx, out=idx)
        held = np.where(idx >= 0, last[np.maximum(idx, 0)], -1)
        before = np.empty(nx, dtype=np.int64)
        before[0] = -1
        before[1:] = held[:-1]
        # A value from before the visible range is held into it.
        pre = xd < 0
        if pre.any():
            v = int(yd[np.nonzero(pre)[0][-1]])
            before = np.where(before < 0, v, before)
            held = np.where(held < 0, v, held)
        first_col = int(xd[inside].min()) if inside.any() else (0 if pre.any() else nx)
        end_col = nx - 1 if hold_to is None else min(nx - 1, int(self.x_to_dot(np.array([hold_to]))[0]))
        end_col = max(end_col, int(xd[inside].max()) if inside.any() else -1)
        cols = np.arange(nx)
        active = (cols >= first_col) & (cols <= end_col)
        if not join:
            active &= has
        span_lo = np.where(has, lo, held)
        span_hi = np.where(has, hi_d, held)
        if join:
            prev_ok = active & (before >= 0)
            span_lo = np.where(prev_ok, np.minimum(span_lo, before), span_lo)
            span_hi = np.where(prev_ok, np.maximum(span_hi, before), span_hi)
        active &= span_hi >= 0
        if not active.any():
            return
        layer = len(self.layer_styles)
        self.layer_styles.append(style)
        ac = cols[active]
        a_lo, a_hi = span_lo[active], span_hi[active]
        # Expand spans into dots (spans are short on average; total dots <= dots_x * dots_y).
        lengths = a_hi - a_lo + 1
        rep_cols = np.repeat(ac, lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows = np.repeat(a_lo, lengths) + offsets
        cy, ry = np.divmod(rows, 4)
        cx, rx = np.divmod(rep_cols, 2)
        np.bitwise_or.at(self.bits, (cy, cx), _DOT[ry, rx])
        self.owner[cy, cx] = layer

    def hline(self, y: float, hi: float, ch: str, style: Style) -> None:
        row = int(self.y_to_dot(np.array([y]), hi)[0]) // 4
        empty = self.back[row] == ""
        self.back[row, empty] = ch
        self.back_style[row, empty] = style

    def band(self, t0: float, t1: float, ch: str, style: Style, edge: str = "│") -> None:
        c0 = max(0, self.x_to_col(t0))
        c1 = min(self.cols - 1, self.x_to_col(t1))
        if c1 < 0 or c0 > self.cols - 1:
            return
        if c1 > c0:
            self.back[:, c0:c1 + 1] = ch
            self.back_style[:, c0:c1 + 1] = style
        self.vline(t0, edge, style)

    def vline(self, t: float, ch: str, style: Style) -> None:
        """A vertical line over the data (it marks a moment, e.g. the steady window's edge)."""
        c = self.x_to_col(t)
        if 0 <= c < self.cols:
            self.over[c] = (ch, style)

    def blit(self, canvas: Canvas, row0: int, col0: int) -> None:
        chars = np.where(self.bits > 0, _BRAILLE[np.minimum(self.bits, 255)], self.back)
        chars = np.where(chars == "", " ", chars)
        styles = np.array(self.layer_styles + [None], dtype=object)[self.owner]
        styles = np.where(self.bits > 0, styles, self.back_style)
        for c, (ch, style) in self.over.items():
            chars[:, c] = ch
            styles[:, c] = style
        canvas.chars[row0:row0 + self.rows, col0:col0 + self.cols] = chars
        canvas.styles[row0:row0 + self.rows, col0:col0 + self.cols] = styles


def nice_step(span: float, target_ticks: int) -> float:
    """A 1-2-5 (or minute/hour) step giving about ``target_ticks`` ticks over ``span``."""
    raw = span / max(1, target_ticks)
    for step in (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200):
        if step >= raw:
            return float(step)
    mag = 10 ** np.floor(np.log10(raw))
    return float(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw))
