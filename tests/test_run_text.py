"""The run screen's text (tui/run_text.py) from a LiveState alone, without Textual: the status
word by state, the progress list's marks, the steady line and the batch legend."""

from __future__ import annotations

import numpy as np

from mle_tui.core.config import Config
from mle_tui.core.events import ConfigFinished, ConfigStarted, RunFinished, RunStarted, SteadyUpdate
from mle_tui.tui.charts import TimeData
from mle_tui.tui.live import LiveState
from mle_tui.tui.run_text import SYMBOL, batch_legend, progress_text, status_text, steady_text


def _live() -> LiveState:
    wall = [100.0]
    live = LiveState(now_s=lambda: wall[0])
    live.apply(RunStarted(run_id="run-7", run_dir="/tmp/r", configs=["a", "b", "c"], skipped=["c"],
                          power_source="simulated", simulated=True))
    live.apply(ConfigStarted(key="a", index=0, total=3, config=Config(max_num_seqs=8), label="B=8",
                             num_requests=10))
    return live


def test_status_word_follows_the_run_and_the_attachment() -> None:
    live = _live()
    text = status_text(live, attached=False, attach_ended=False)
    assert text.startswith("▶ RUNNING · elapsed ") and "SIMULATED" in text and text.endswith("run-7")
    assert "B=8" in text
    assert status_text(live, attached=True, attach_ended=False).startswith("◉ ATTACHED · ")
    assert status_text(live, attached=True, attach_ended=True).startswith("◉ ATTACHED (writer gone) · ")
    live.apply(RunFinished(completed=1, failed=0, invalid=0, stopped=True))
    text = status_text(live, attached=True, attach_ended=True)
    assert text.startswith("■ STOPPED 1 done (0 invalid) 0 failed · r results") and "ETA" not in text


def test_progress_marks_each_configuration_by_status() -> None:
    live = _live()
    live.apply(ConfigFinished(key="a", status="ok", reasons=[], energy_per_request_j=12.5,
                              latency_value_s=0.02, record_path="x"))
    lines = progress_text(live).plain.splitlines()
    assert lines[0].startswith("Sweep ") and lines[1].startswith("✓ B=8") and "12.5" in lines[1]
    assert lines[2].startswith("· b") and lines[3].startswith("↺ c")
    import mle_tui.tui.detach_ui  # noqa: F401  adds the user-skipped mark to the same table
    from mle_tui.tui.live import SKIPPED
    from mle_tui.tui.screen_run import SYMBOL as screen_symbol

    assert screen_symbol is SYMBOL and SYMBOL[SKIPPED][0] == "»"


def test_steady_line_and_batch_legend() -> None:
    live = _live()
    assert steady_text(live) == "steady state: not yet (waiting for the running batch to saturate at B=8)"
    live.apply(SteadyUpdate(start_s=1.0, end_s=21.5, mean_batch=7.9, gates={"window": True}))
    assert steady_text(live).startswith("steady 1.0 s → 21.5 s (20.5 s) · mean batch 7.9/8")
    d = TimeData()
    assert batch_legend(d) == "Batch: ⣿ running"
    d.running, d.waiting, d.max_num_seqs, d.steady_start_s = np.array([3.0, 8.0]), np.array([0.0, 5.0]), 8, 1.0
    assert batch_legend(d) == "Batch: ⣿ running 8 · waiting 5 (right axis) · ─ B=8 · ··· steady"
