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
    assert text.startswith("E encode 500 ms 50.0 J · D denoise 8.00 s 4.00 kJ · V decode 1.50 s 600.0 J")
    assert len(text) <= 78


async def test_results_timeline_shows_phases_at_80x24(tmp_path) -> None:
    """A finished simulated video run opened in the app: the per-configuration timeline has the
    phase letters on its time axis and the phase summary above it, in 80 x 24."""
    from pathlib import Path

    from mle_tui.tui.app import MleApp
    from mle_tui.tui.cli import main
    from mle_tui.tui.screen_results import ResultsScreen
    from tui_fakes import FrozenClock, no_gpu_probe
    from tui_text import screen_text

    profile = tmp_path / "v.toml"
    text = (Path(__file__).resolve().parents[1] / "profiles" / "demo-video.toml").read_text()
    profile.write_text(text.replace('batch_size = "1..4 x2"', "batch_size = [2]").replace(
        "power_limit_w = [400, 700]", "power_limit_w = [700]"))
    out = tmp_path / "runs" / "v"
    assert main(["run", str(profile), "--headless", "--out", str(out)]) == 0
    app = MleApp(gpu_probe=no_gpu_probe, now_s=FrozenClock(), runs_root=tmp_path / "runs",
                 records_roots=[tmp_path / "runs"], cursor_blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.open_results(out)  # (this process ran the sweep: opening the directory would attach)
        await pilot.pause()
        assert isinstance(app.screen, ResultsScreen)
        await pilot.press("down", "enter")
        await pilot.pause()
        power = app.screen.query_one("#cfg-power", PowerChart)
        power.render()
        axis = [line for line in power._cache.plain.splitlines() if "└" in line][0]
        assert axis.count("E") >= 4 and axis.count("V") >= 4 and "D━" in axis
        assert "E encode" in screen_text(app) and "V decode" in screen_text(app)


async def test_live_run_screen_draws_phases_at_80x24(tmp_path, monkeypatch) -> None:
    """demo-video run from the app (real runner, simulated GPU): the live power chart carries the
    phase letters on its time axis and the legend names them, at 80 x 24."""
    from textual.widgets import Input

    from mle_tui.core.shipped import profiles_dir
    from mle_tui.tui.app import MleApp
    from mle_tui.tui.screen_run import RunScreen
    from tui_fakes import FrozenClock, no_gpu_probe
    from tui_text import screen_text

    monkeypatch.chdir(tmp_path)
    profiles = sorted(profiles_dir().glob("*.toml"))
    app = MleApp(gpu_probe=no_gpu_probe, now_s=FrozenClock(), runs_root=tmp_path / "runs",
                 records_roots=[tmp_path / "runs"], cursor_blink=False, profiles=profiles)
    async with app.run_test(size=(80, 24)) as pilot:
        setup = app.screen
        deadline = 200
        while app.gpu_info is None and deadline:
            await pilot.pause(0.05)
            deadline -= 1
        ol = setup.query_one("#profiles")
        ol.focus()
        ol.highlighted = [p.name for p in profiles].index("demo-video.toml")
        await pilot.press("enter")
        assert setup.base.name == "demo-video"
        for fid, text in (("batch_size", "2"), ("power_limit_w", "700")):
            inp = setup.query_one(f"#{fid}", Input)
            inp.focus()
            await pilot.press("end", "ctrl+u", *list(text))
        await pilot.press("ctrl+r")
        assert isinstance(app.screen, RunScreen)
        deadline = 1800
        while app.run_active and deadline:
            await pilot.pause(0.05)
            deadline -= 1
        assert not app.run_active and app.run_error is None
        run = app.screen
        run.sync(force=True)
        await pilot.pause()
        power = run.query_one("#power", PowerChart)
        assert len(power.data.phases) == 15  # 5 batches x 3 phases of the last configuration
        power.render()
        axis = [line for line in power._cache.plain.splitlines() if "└" in line][0]
        assert "E" in axis and "V" in axis and "D━" in axis
        assert "E/D/V phases" in screen_text(app)
