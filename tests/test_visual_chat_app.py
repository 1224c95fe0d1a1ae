"""Visual chat in the app: the shipped tiny-vlm-cpu profile (tiny LLaVA through transformers on
the CPU, simulated GPU) picked on the setup screen, run with live power and batch charts, and
landing in the Pareto table with a recommendation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from textual.widgets import DataTable  # noqa: E402
from tui_fakes import FrozenClock, no_gpu_probe  # noqa: E402
from tui_text import screen_text  # noqa: E402

from mle_tui.core.shipped import profiles_dir  # noqa: E402
from mle_tui.tui.app import MleApp, default_runner_factory  # noqa: E402
from mle_tui.tui.charts import BatchChart, PowerChart  # noqa: E402
from mle_tui.tui.screen_results import ResultsScreen  # noqa: E402
from mle_tui.tui.screen_run import RunScreen  # noqa: E402


async def _wait(pilot, cond, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {cond}")
        await pilot.pause(0.05)


async def test_tiny_vlm_runs_in_the_app(tmp_path: Path, monkeypatch, one_thread: None) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLE_TUI_MODEL_CACHE", str(tmp_path / "models"))
    profiles = sorted(profiles_dir().glob("*.toml"))
    app = MleApp(profiles=profiles, runner_factory=default_runner_factory, gpu_probe=no_gpu_probe,
                 now_s=FrozenClock(), runs_root=tmp_path / "runs", records_roots=[tmp_path / "runs"],
                 cursor_blink=False)
    async with app.run_test(size=(120, 36)) as pilot:
        setup = app.screen
        await _wait(pilot, lambda: app.gpu_info is not None)
        ol = setup.query_one("#profiles")
        ol.focus()
        ol.highlighted = [p.name for p in profiles].index("tiny-vlm-cpu.toml")
        await pilot.press("enter")
        assert setup.base.name == "tiny-vlm-cpu" and setup.base.task == "visual-chat"
        await pilot.press("ctrl+r")
        assert isinstance(app.screen, RunScreen)
        await _wait(pilot, lambda: not app.run_active, timeout_s=240)
        await _wait(pilot, lambda: not app._queue and not app._wake)
        await pilot.pause()
        assert app.run_error is None, app.run_error
        run = app.screen
        run.sync(force=True)
        await pilot.pause()
        power = run.query_one("#power", PowerChart)
        assert power.data.steady_start_s is not None and power.data.steady_end_s is not None
        assert run.query_one("#batch", BatchChart) is not None
        assert "FINISHED 2 done" in screen_text(app)
        await pilot.press("r")
        res = app.screen
        assert isinstance(res, ResultsScreen) and res.query_one("#pareto", DataTable).row_count == 2
        assert res.model.recommended is not None
        assert all(r.image_source == "synthetic" and r.image_token_share > 0.5 for r in res.model.rows)
