"""Finish then stop (drain): the runner finishes the configuration running now, starts no other
and ends ``stopped``; the control channel's ``drain``; the run screen's ``f``."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from mle_tui.core.control import CONTROL_NAME, ControlChannel, follow_control, start_control_thread
from mle_tui.core.events import ConfigStarted, LogLine
from mle_tui.core.profile import decode_profile
from mle_tui.core.runner import SweepRunner
from mle_tui.core.runtimes.sim import SimRuntime
from mle_tui.core.store import RunStore

PROFILE = """
name = "drain"
task = "chat"
runtime = "sim"
[model]
id = "sim/llama"
weights = "dummy"
[dataset]
name = "synthetic"
num_requests = 64
repeats = 1
seed = 1
min_prompt_tokens = 32
max_prompt_tokens = 256
min_output_tokens = 64
max_output_tokens = 256
[sweep]
max_num_seqs = "8, 16"
power_limit_w = [300, 500]
{extra}
[gpu]
simulated = true
"""


def drain_during(profile, out: Path, index: int):  # noqa: ANN001, ANN201
    """Run ``profile`` into ``out``; drain while the configuration ``index`` (0-based) runs."""
    holder: dict = {}
    events: list = []

    def listener(e) -> None:  # noqa: ANN001
        events.append(e)
        if isinstance(e, ConfigStarted) and e.index == index:
            holder["runner"].request_drain()

    runner = holder["runner"] = SweepRunner(profile, out, runtime=SimRuntime(), listener=listener)
    return runner, runner.run(), events


# -- the runner --------------------------------------------------------------------------------

def test_drain_finishes_the_running_configuration_and_resume_runs_the_rest(tmp_path: Path) -> None:
    profile = decode_profile(PROFILE.format(extra=""), "d.toml")
    keys = [c.key() for c in profile.configs()]
    assert len(keys) == 4
    out = tmp_path / "run"
    runner, s1, events = drain_during(profile, out, 1)  # during the 2nd of 4
    assert s1.stopped and s1.completed == 2 and s1.failed == 0
    store = RunStore(out)
    recs = {r.config_key: r for r in store.load_records()}
    assert set(recs) == set(keys[:2])
    assert all(r.status in ("ok", "invalid") for r in recs.values())  # written normally, not skipped
    assert recs[keys[1]].energy_per_request_j is not None
    assert [c.key() for c in runner.pending()] == keys[2:]
    assert [e.key for e in events if isinstance(e, ConfigStarted)] == keys[:2]
    lines = [e.line for e in events if isinstance(e, LogLine)]
    assert any(x.startswith("drain requested") for x in lines) and any(x.startswith("drained") for x in lines)
    # power limits restored as on any end (the simulated GPU's original 700 W)
    assert runner.source.get_limit_w(0) == 700.0
    assert not store.read_manifest().finished
    # a second run of the directory finishes the other two, rewriting nothing
    mtimes = {k: store.find_record(k).stat().st_mtime_ns for k in keys[:2]}
    ev2: list = []
    s2 = SweepRunner(profile, out, runtime=SimRuntime(), listener=ev2.append).run()
    assert not s2.stopped and s2.skipped == 2 and s2.completed == 2
    assert [e.key for e in ev2 if isinstance(e, ConfigStarted)] == keys[2:]
    assert store.completed_keys() == set(keys) and store.read_manifest().finished
    assert {k: store.find_record(k).stat().st_mtime_ns for k in keys[:2]} == mtimes


def test_drain_during_the_last_configuration_is_a_normal_end(tmp_path: Path) -> None:
    profile = decode_profile(PROFILE.format(extra=""), "d.toml")
    _, s, _ = drain_during(profile, tmp_path / "run", 3)
    assert not s.stopped and s.completed == 4
    assert RunStore(tmp_path / "run").read_manifest().finished


def test_drain_of_an_adaptive_run_resumes_the_search(tmp_path: Path) -> None:
    extra = '[target]\nmetric = "tpot"\nvalue = "20ms"'
    profile = decode_profile(PROFILE.format(extra=extra), "d.toml")
    out = tmp_path / "run"
    holder: dict = {}

    def listener(e) -> None:  # noqa: ANN001
        if isinstance(e, ConfigStarted):
            holder["runner"].request_drain()

    runner = holder["runner"] = SweepRunner(profile, out, runtime=SimRuntime(), listener=listener,
                                            strategy="adaptive")
    s1 = runner.run()
    assert s1.stopped and s1.completed == 1
    log = json.loads((out / "adaptive.json").read_text())
    assert not log["finished"]
    assert runner.source.get_limit_w(0) == 700.0
    s2 = SweepRunner(profile, out, runtime=SimRuntime(), strategy="adaptive").run()
    assert not s2.stopped and s2.skipped == 1
    assert json.loads((out / "adaptive.json").read_text())["finished"]


# -- the control channel -----------------------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.drained = threading.Event()

    def request_skip(self, key: str | None = None) -> None:
        self.calls.append("skip")

    def request_stop(self) -> None:
        self.calls.append("stop")

    def request_drain(self) -> None:
        self.calls.append("drain")
        self.drained.set()


def test_drain_command_reaches_the_runner(tmp_path: Path) -> None:
    ControlChannel(tmp_path).send("drain", to="tok")
    line = json.loads((tmp_path / CONTROL_NAME).read_text())
    assert line["cmd"] == "drain" and "key" not in line
    rec = Recorder()
    done = start_control_thread(tmp_path, rec, token="tok", since=0.0)
    try:
        assert rec.drained.wait(20)
    finally:
        done.set()
    assert rec.calls == ["drain"]  # neither a stop nor a skip


def test_drain_without_a_handler_is_ignored(tmp_path: Path) -> None:
    ch = ControlChannel(tmp_path)
    ch.send("drain")
    ch.send("stop")
    stops: list[int] = []
    done = threading.Event()
    done.set()  # one poll, then return
    follow_control(ControlChannel(tmp_path, since=0.0), lambda k: None, lambda: stops.append(1), done, period_s=0.0)
    assert stops == [1]


def test_detached_handle_sends_drain(tmp_path: Path) -> None:
    from mle_tui.tui.sweep_process import DetachedRun

    DetachedRun(tmp_path, token="tok").request_drain()
    msgs = ControlChannel(tmp_path, token="tok", since=0.0).poll_messages()
    assert [(m.cmd, m.to) for m in msgs] == [("drain", "tok")]


def test_headless_runner_obeys_drain_from_the_control_channel(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """``mle-tui run --headless`` (and the app's detached child): the runner's control thread
    hands ``drain`` to ``request_drain`` (a local SweepRunner or a ClusterRunner alike)."""
    from mle_tui.core.runner import RunSummary
    from mle_tui.tui.runner_main import run_headless

    monkeypatch.setenv("MLE_TUI_STATE_DIR", str(tmp_path / "state"))
    profile = decode_profile(PROFILE.format(extra=""), "d.toml")
    out = tmp_path / "run"
    made: list = []

    class Runner(Recorder):
        def __init__(self, profile, out_dir, **kw) -> None:  # noqa: ANN001, ANN003
            super().__init__()
            self.out_dir = Path(out_dir)
            made.append(self)

        def prepare(self) -> None:
            self.out_dir.mkdir(parents=True, exist_ok=True)

        def run(self) -> RunSummary:
            ControlChannel(self.out_dir).send("drain")  # as the app does
            got = self.drained.wait(20)
            return RunSummary(run_dir=str(self.out_dir), completed=1, failed=0, invalid=0, skipped=0, stopped=got)

    rc = run_headless(profile, out, profile_path=None, simulate=True, record_format="json", token=None,
                      since=None, detached=False, runner_factory=Runner)
    assert made[0].calls == ["drain"] and rc == 1  # stopped early: rerun to resume


# -- the app: f on the run screen --------------------------------------------------------------

async def test_f_asks_then_drains_and_the_header_says_so(tmp_path: Path) -> None:
    from mle_tui.tui.app import MleApp
    from mle_tui.tui.modals import ConfirmScreen
    from tui_fakes import FakeRunner, FrozenClock, no_gpu_probe, wait_for, write_profile
    from tui_text import screen_text

    made: list = []

    class DrainingFake(FakeRunner):
        """FakeRunner with request_drain: the configuration running ends as usual, then the sweep."""

        drains = 0

        def request_drain(self) -> None:
            self.drains += 1

        def _run_config(self, index, total, c):  # noqa: ANN001, ANN202
            status = super()._run_config(index, total, c)
            if self.drains:
                self._stop.set()
            return status

    def factory(profile, out_dir, listener, profile_path):  # noqa: ANN001, ANN202
        made.append(DrainingFake(profile, out_dir, listener, profile_path, pause_at=(0, 2.0)))
        return made[-1]

    app = MleApp(profiles=[write_profile(tmp_path)], runner_factory=factory, gpu_probe=no_gpu_probe,
                 now_s=FrozenClock(), runs_root=tmp_path / "runs", records_roots=[tmp_path / "runs"],
                 cursor_blink=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: bool(made) and made[0].paused.is_set())
        runner = made[0]
        first = runner.configs()[0].key()
        await pilot.press("f")  # asks first; "n" keeps the sweep running
        assert isinstance(app.screen, ConfirmScreen) and "Finish the running configuration" in screen_text(app)
        await pilot.press("n")
        assert runner.drains == 0 and app.run_active
        await pilot.press("f")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        assert runner.drains == 1
        await wait_for(pilot, lambda: "FINISHING current configuration, then stopping" in screen_text(app))
        assert "elapsed" in screen_text(app)  # the header keeps its timing at 80 columns
        await pilot.press("f")  # a second f does not ask again
        assert not isinstance(app.screen, ConfirmScreen) and runner.drains == 1
        runner.resume.set()
        await wait_for(pilot, lambda: not app.run_active)
        assert app.live.rows[first].status in ("done", "invalid")  # finished normally, not skipped
        assert all(r.status == "pending" for k, r in app.live.rows.items() if k != first)
        assert app.run_summary.stopped and app.run_summary.completed == 1
        await wait_for(pilot, lambda: "STOPPED 1 done" in screen_text(app))
        assert "FINISHING" not in screen_text(app)


async def test_f_drains_the_detached_runner_of_the_app(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """The user's path: the app's detached runner process gets ``drain`` through control.jsonl,
    finishes the configuration it runs and ends stopped; the other stays pending."""
    from mle_tui.tui.app import MleApp
    from mle_tui.tui.detach_ui import AttachedRunScreen
    from mle_tui.tui.modals import ConfirmScreen
    from test_detach import realtime_demo
    from tui_fakes import FrozenClock, no_gpu_probe, wait_for
    from tui_text import screen_text

    monkeypatch.setenv("MLE_TUI_STATE_DIR", str(tmp_path / "state"))
    prof = realtime_demo(tmp_path, time_scale=4.0)

    app = MleApp(profiles=[prof], gpu_probe=no_gpu_probe, now_s=FrozenClock(), runs_root=tmp_path / "runs",
                 records_roots=[tmp_path / "runs"], cursor_blink=False, tick_s=0.1)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        assert isinstance(app.screen, AttachedRunScreen) and app.detached_run
        run = app.run_dir
        await wait_for(pilot, lambda: app.live.current == "mns64-tp1-pl700", 90.0)
        await pilot.press("f")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        lines = [json.loads(x) for x in (run / CONTROL_NAME).read_text().splitlines()]
        assert [x["cmd"] for x in lines] == ["drain"]
        await wait_for(pilot, lambda: "FINISHING current configuration, then stopping" in screen_text(app), 10)
        await wait_for(pilot, lambda: not app.run_active, 90.0)
        assert app.run_error is None and app.live.finished is not None and app.live.finished.stopped
        assert app.live.finished.completed == 1
    store = RunStore(run)
    assert store.completed_keys() == {"mns64-tp1-pl700"} and not store.read_manifest().finished
    assert {r.config_key: r.status for r in store.load_records()}["mns64-tp1-pl700"] in ("ok", "invalid")
