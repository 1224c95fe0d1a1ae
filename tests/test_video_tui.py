"""Diffusion phases in the app: folded live from PhaseMark events, drawn on the power chart's time
axis (E encode, D denoise, V decode) at 80 columns, and summarised per configuration."""

from __future__ import annotations

import numpy as np

from mle_tui.core.config import Config
from mle_tui.core.events import ConfigStarted, PhaseMark
from mle_tui.core.measure.phases import label, live_spans
from mle_tui.core.records import PhaseSpan
from mle_tui.tui.braille import Canvas, Plot
from mle_tui.tui.charts import AXIS_LABEL_WIDTH, PowerChart, TimeData
from mle_tui.tui.live import LiveState


def _marks(batches: int, t0: float = 0.0, dur: float = 10.0) -> list[tuple[float, str]]:
    out = []
    for b in range(batches):
        s = t0 + b * (dur + 2.0)
        out += [(s, label(b, "encode")), (s + 1.0, label(b, "denoise")),
                (s + 8.0, label(b, "decode")), (s + dur, label(b, "end"))]
    return out


def test_live_spans_keep_open_phases_open() -> None:
    marks = _marks(1) + [(12.0, label(1, "encode")), (12.5, label(1, "denoise"))]
    spans = live_spans(marks)
    assert spans[:3] == [(0.0, 1.0, "encode"), (1.0, 8.0, "denoise"), (8.0, 10.0, "decode")]
    assert spans[3:] == [(12.0, 12.5, "encode"), (12.5, None, "denoise")]


def test_live_state_folds_phase_marks_without_steps() -> None:
    live = LiveState(now_s=lambda: 0.0)
    live.apply(ConfigStarted(key="k", index=0, total=1, config=Config(batch_size=4), label="B=4", num_requests=8))
    v = live.chart_version
    live.apply(PhaseMark(t_s=0.0, label=label(0, "encode")))
    live.apply(PhaseMark(t_s=0.5, label=label(0, "step", 0)))
    assert list(live.phase_marks) == [(0.0, "phase:0:encode")] and live.chart_version == v + 1
    live.apply(ConfigStarted(key="k2", index=1, total=2, config=Config(batch_size=4), label="B=4", num_requests=8))
    assert not live.phase_marks


def test_power_chart_draws_phase_letters_on_the_time_axis_at_80_columns() -> None:
    width, height = 80, 8
    chart = PowerChart()
    t = np.arange(0.0, 60.0, 0.1)
    chart.data = TimeData(power_t=t, total_w=np.full_like(t, 600.0), x_range=(0.0, 60.0),
                          phases=live_spans(_marks(5)))
    canvas = Canvas(width, height)
    plot = Plot(width - 2 * AXIS_LABEL_WIDTH - 2, height - 3, 0.0, 60.0)
    chart.draw(canvas, plot)
    plot.blit(canvas, 1, AXIS_LABEL_WIDTH + 1)
    axis = canvas.to_text().plain.splitlines()[plot.rows + 1]
    assert axis.count("E") == 5 and axis.count("D") == 5 and axis.count("V") == 5
    # In order along the axis, each denoise span drawn as a bar.
    letters = "".join(c for c in axis if c in "EDV")
    assert letters == "EDV" * 5 and "D━━━━" in axis


def test_phase_summary_of_a_record() -> None:
    from mle_tui.tui.screen_results import phase_summary

    class Rec:  # only what phase_summary reads
        phases = [PhaseSpan(batch=b, phase=p, start_s=s, end_s=e, energy_j=j, warmup=b == 0,
                            step_ends_s=[s + 1.0, s + 2.0] if p == "denoise" else [])
                  for b in (0, 1, 2) for p, s, e, j in (("encode", 0.0, 0.5, 50.0), ("denoise", 0.5, 8.5, 4000.0),
                                                        ("decode", 8.5, 10.0, 600.0))]

    text = phase_summary(Rec())  # type: ignore[arg-type]
    assert text.startswith("phases per batch: E encode") and "D denoise" in text and "2 steps" in text
    assert "V decode" in text and len(text) <= 110
