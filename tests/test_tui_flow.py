"""Pilot tests: whole flows through the app, keyboard only, with a fake runner and with the
real SweepRunner on the simulated backend (shipped demo profile)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from textual.widgets import Button, DataTable, Input, Static

from mle_tui.core import events as ev
from mle_tui.core.events import SteadyUpdate
from mle_tui.core.profile import load_profile
from mle_tui.core.runtimes.base import BatchSample, RuntimeContext, RuntimeResult
from mle_tui.core.shipped import profiles_dir
from mle_tui.tui.app import MleApp, default_runner_factory
from mle_tui.tui.charts import BatchChart, PowerChart
from mle_tui.tui.modals import ConfirmScreen, ExportScreen, HelpScreen
from mle_tui.tui.screen_records import CompareScreen, RecordsScreen
from mle_tui.tui.screen_results import ResultsScreen
from mle_tui.tui.screen_run import RunScreen
from mle_tui.tui.screen_setup import SetupScreen
from tui_fakes import (DIFFUSION_TOML, FakeLimiter, FakeRunner, FrozenClock, fake_factory, h100_probe,
                       no_gpu_probe, wait_for, write_profile)
from tui_text import screen_text

REPO = Path(__file__).resolve().parents[1]


async def drained(pilot, app) -> None:
    await wait_for(pilot, lambda: not app._queue and not app._wake)
    await pilot.pause()


async def retype(pilot, inp: Input, text: str) -> None:
    inp.focus()
    await pilot.press("end", "ctrl+u", *list(text))


def make_app(tmp_path: Path, **kw) -> MleApp:
    kw.setdefault("gpu_probe", no_gpu_probe)
    kw.setdefault("now_s", FrozenClock())
    kw.setdefault("runs_root", tmp_path / "runs")
    kw.setdefault("records_roots", [tmp_path / "runs"])
    kw.setdefault("cursor_blink", False)
    return MleApp(**kw)


def chart_text(chart) -> str:
    chart.render()
    return chart._cache.plain


# -- the whole flow, fake runner -----------------------------------------------------------------
async def test_whole_flow_with_fake_runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = write_profile(tmp_path, DIFFUSION_TOML, "a-diffusion.toml")
    demo = write_profile(tmp_path)
    fac = fake_factory(pause_at=(2, 6.0))  # block in the middle of the 3rd configuration's steady state
    app = make_app(tmp_path, profiles=[other, demo], runner_factory=fac)
    async with app.run_test(size=(100, 32)) as pilot:
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        await wait_for(pilot, lambda: app.gpu_info is not None)
        assert setup.base.name == "tui-diffusion"
        assert not setup.query_one("#row-max_num_seqs").display
        # Choose the demo profile from the list.
        await pilot.press("down", "enter")
        assert setup.base.name == "tui-demo"
        assert setup.query_one("#row-max_num_seqs").display
        # Change a sweep range; a typo is marked and explained and Start is disabled.
        mns = setup.query_one("#max_num_seqs", Input)
        await retype(pilot, mns, "8..64 x")
        assert mns.has_class("-invalid")
        assert "cannot parse" in str(setup.query_one("#err-max_num_seqs", Static).render())
        assert setup.query_one("#start", Button).disabled
        await pilot.press("2")
        assert not mns.has_class("-invalid") and not setup.query_one("#start", Button).disabled
        assert "8 configurations" in str(setup.query_one("#summary", Static).render())
        assert "SIMULATED" in str(setup.query_one("#summary", Static).render())
        await pilot.press("ctrl+r")
        assert isinstance(app.screen, RunScreen) and app.run_active
        runner = fac.made[0]
        assert [c.max_num_seqs for c in runner.configs()][::2] == [8, 16, 32, 64]
        await wait_for(pilot, runner.paused.is_set)
        await drained(pilot, app)
        run = app.screen
        run.sync(force=True)
        await pilot.pause()
        # The steady band is on both charts, with its window and gates underneath.
        power, batch = run.query_one("#power", PowerChart), run.query_one("#batch", BatchChart)
        assert power.data.steady_start_s == pytest.approx(2.0, abs=0.2) and power.data.steady_end_s is None
        assert batch.data.steady_start_s == power.data.steady_start_s
        assert "·" in chart_text(power) and "·" in chart_text(batch)
        text = screen_text(app)
        assert "steady 2.0 s → open" in text and "3/8 B=16 400 W" in text and "SIMULATED" in text
        assert text.count("✓ B=8") == 2  # both B=8 configurations done, with their energy
        assert "ETA" in text and "elapsed 0s" in text
        runner.resume.set()
        await wait_for(pilot, lambda: not app.run_active)
        await drained(pilot, app)
        run.sync(force=True)
        assert "FINISHED 8 done" in screen_text(app)
        # Results.
        await pilot.press("r")
        res = app.screen
        assert isinstance(res, ResultsScreen)
        table = res.query_one("#pareto", DataTable)
        assert table.row_count == 8
        before = res.model.recommended.key
        assert str(table.get_cell(before, "mark")) == "★"
        line_before = str(res.query_one("#rec-line", Static).render())
        await pilot.press("t")
        await retype(pilot, res.query_one("#target", Input), "13ms")
        assert res.model.recommended.key == before  # typing alone does not commit the target
        assert "Enter to apply" in str(res.query_one("#target-error", Static).render())
        await pilot.press("enter")
        assert res.focused is table  # Enter commits and goes back to the table
        after = res.model.recommended.key
        assert after != before and res.model.recommended.latency_ms <= 13.0
        assert str(table.get_cell(after, "mark")) == "★" and str(table.get_cell(before, "mark")) != "★"
        assert str(res.query_one("#rec-line", Static).render()) != line_before
        await pilot.press("t")
        await retype(pilot, res.query_one("#target", Input), "1ms")
        await pilot.press("enter")
        assert res.model.recommended is None
        assert "nothing meets tpot <= 1.0 ms" in str(res.query_one("#rec-line", Static).render())
        assert str(res.query_one("#cost-line", Static).render()) == ""  # the message appears once
        await pilot.press("t")
        await retype(pilot, res.query_one("#target", Input), "13ms")
        await pilot.press("enter")
        # Escape in the target input brings back the committed target.
        await pilot.press("t")
        await retype(pilot, res.query_one("#target", Input), "99ms")
        await pilot.press("escape")
        assert res.query_one("#target", Input).value == "13ms" and res.model.recommended.key == after
        # Row selection shows that configuration's timelines with its steady window.
        table.focus()
        await pilot.press("down", "enter")
        assert res.query_one("#tabs").active == "tab-config"
        cfg_power = res.query_one("#cfg-power", PowerChart)
        rec = res.model.by_key[res.selected]
        assert cfg_power.data.steady_start_s == rec.steady_state.start_s
        assert len(cfg_power.data.power_t) == len(rec.power_timeline.t_s)
        # Export and copy.
        await pilot.press("1", "e")
        assert isinstance(app.screen, ExportScreen)
        await retype(pilot, app.screen.query_one(Input), "out")
        await pilot.press("enter")
        out = tmp_path / "out"
        assert sorted(p.name for p in (out / "records").iterdir()) == sorted(
            p.name for p in (Path(runner.out_dir) / "records").iterdir())
        csv_text = (out / "pareto.csv").read_text()
        assert after in csv_text and (out / "FORMULAS.txt").exists()
        assert app.screen is res and res.focused is table  # focus survives the dialog
        await pilot.press("c")
        assert app.last_copied is not None and res.selected in app.last_copied
        assert "nvidia-smi -i 0 -pl" in app.last_copied


# -- the whole flow, real runner, shipped demo profile on the simulated backend ------------------
async def test_whole_flow_real_runner_demo_profile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    seen: list[SteadyUpdate] = []

    def factory(profile, out_dir, listener, profile_path):
        def spy(event):
            if isinstance(event, SteadyUpdate):
                seen.append(event)
            listener(event)
        return default_runner_factory(profile, out_dir, spy, profile_path)

    profiles = sorted(profiles_dir().glob("*.toml"))
    app = make_app(tmp_path, profiles=profiles, runner_factory=factory)
    async with app.run_test(size=(120, 36)) as pilot:
        setup = app.screen
        await wait_for(pilot, lambda: app.gpu_info is not None)
        ol = setup.query_one("#profiles")
        ol.focus()
        demo_index = [p.name for p in profiles].index("demo.toml")
        ol.highlighted = demo_index
        await pilot.press("enter")
        assert setup.base.name == "demo"
        await retype(pilot, setup.query_one("#max_num_seqs", Input), "32..128 x2")
        await retype(pilot, setup.query_one("#power_limit_w", Input), "700")
        assert "3 configurations" in str(setup.query_one("#summary", Static).render())
        await pilot.press("ctrl+r")
        assert isinstance(app.screen, RunScreen)
        await wait_for(pilot, lambda: not app.run_active, timeout_s=90)
        await drained(pilot, app)
        assert app.run_error is None, app.run_error
        run = app.screen
        run.sync(force=True)
        await pilot.pause()
        assert seen and seen[0].end_s is None  # the band opened while the configuration ran
        power = run.query_one("#power", PowerChart)
        assert power.data.steady_start_s is not None and power.data.steady_end_s is not None
        assert "·" in chart_text(power)
        assert "FINISHED 3 done" in screen_text(app)
        await pilot.press("r")
        res = app.screen
        assert isinstance(res, ResultsScreen) and res.query_one("#pareto", DataTable).row_count == 3
        assert res.model.simulated and "SIMULATED" in screen_text(app)
        loose = res.model.recommended.key  # demo target 100ms: the most efficient (largest B)
        assert loose == "mns128-tp1-pl700"
        fastest = res.model.fastest
        await retype(pilot, res.query_one("#target", Input), f"{fastest.latency_ms * 1.01:.3f}ms")
        await pilot.press("enter")
        assert res.model.recommended.key == fastest.key != loose
        await pilot.press("e", "enter")  # Enter left the target input already
        assert list((tmp_path / "exports").glob("*/pareto.csv"))


# -- quitting mid-run -------------------------------------------------------------------------
def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_quit_mid_run_stops_children_and_restores_the_limit(tmp_path):
    limiter = FakeLimiter()
    fac = fake_factory(spawn_child=True, limiter=limiter, pause_at=(0, 3.0))
    app = make_app(tmp_path, profiles=[write_profile(tmp_path)], runner_factory=fac)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        runner = fac.made[0]
        await wait_for(pilot, runner.paused.is_set)
        pgid = runner.child_pgids[-1]
        assert not _gone(pgid) and limiter.get_limit_w(0) == 400.0
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # keep running
        assert app.run_active and not _gone(pgid)
        await pilot.press("q", "y")
        await wait_for(pilot, lambda: app._exit_renderables is not None or not app.is_running, timeout_s=10)
    assert app.finish(timeout_s=5)
    assert _gone(pgid)
    assert limiter.get_limit_w(0) == 700.0 and limiter.history[-1] == (0, 700.0)
    assert app.return_code == 0


class SpawningRuntime:
    """A runtime double for the real SweepRunner: a child in its own session, a saturated batch
    trace until cancelled, the child's group killed on the way out."""

    name = "sim"

    def __init__(self) -> None:
        self.pgids: list[int] = []

    def run(self, ctx: RuntimeContext) -> RuntimeResult:
        child = subprocess.Popen(["sleep", "1000"], start_new_session=True)
        self.pgids.append(child.pid)
        try:
            B = ctx.config.batch
            while not ctx.cancel.is_set():
                ctx.on_batch(BatchSample(t_s=ctx.clock.now_s(), running=B, waiting=10))
                ctx.cancel.wait(0.05)
            return RuntimeResult(simulated=True)
        finally:
            os.killpg(child.pid, signal.SIGTERM)
            child.wait()


async def test_quit_mid_run_real_runner_kills_group_and_restores_limit(tmp_path):
    from mle_tui.core.clock import WallClock
    from mle_tui.core.dataset_types import Request
    from mle_tui.core.power.simulated import SimulatedPowerSource

    limiter = FakeLimiter()
    runtime = SpawningRuntime()
    made = []

    def factory(profile, out_dir, listener, profile_path):
        from mle_tui.core.runner import SweepRunner

        r = SweepRunner(profile, out_dir, listener=listener, power_source=SimulatedPowerSource(WallClock()),
                        limiter=limiter, runtime=runtime, clock_factory=WallClock,
                        requests=[Request(id=i, prompt="x", input_tokens=4, output_tokens=8) for i in range(16)],
                        limits_state_path=tmp_path / "limits.json")
        made.append(r)
        return r

    app = make_app(tmp_path, profiles=[write_profile(tmp_path)], runner_factory=factory)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: runtime.pgids and limiter.get_limit_w(0) == 400.0)
        pgid = runtime.pgids[-1]
        await pilot.pause(0.3)
        assert not _gone(pgid)
        await pilot.press("ctrl+q", "y")
        await wait_for(pilot, lambda: not app.is_running, timeout_s=20)
    assert app.finish(timeout_s=10)
    assert _gone(pgid)
    assert limiter.get_limit_w(0) == 700.0
    assert not (tmp_path / "limits.json").exists()
    assert made[0].pending()  # stopped early: unfinished configurations left to resume


def test_sighup_stops_the_run_cleanly(tmp_path):
    """The terminal goes away: SIGHUP stops the runner (children killed, limit restored)."""
    prof = write_profile(tmp_path)
    script = tmp_path / "hup.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from tui_fakes import FakeLimiter, fake_factory, no_gpu_probe, FrozenClock
        from mle_tui.tui.app import MleApp
        tmp = Path({str(tmp_path)!r})
        limiter = FakeLimiter(state_file=tmp / "limit.txt")
        fac = fake_factory(spawn_child=True, limiter=limiter, pause_at=(0, 3.0))

        class Auto(MleApp):
            def on_mount(self):
                super().on_mount()
                self.set_timer(0.5, lambda: self.screen.action_start())

        def started(r):
            # write then rename: the test polls for the file and must never read it half-written
            (tmp / "pgid.tmp").write_text(str(r.child_pgids[-1]))
            (tmp / "pgid.tmp").replace(tmp / "pgid.txt")

        app = Auto(profiles=[Path({str(prof)!r})], runner_factory=fac, gpu_probe=no_gpu_probe,
                   now_s=FrozenClock(), runs_root=tmp / "runs", cursor_blink=False)
        import threading
        def watch():
            while not fac.made or not fac.made[0].paused.wait(0.05):
                pass
            started(fac.made[0])
        threading.Thread(target=watch, daemon=True).start()
        app.run(headless=True, size=(80, 24))
        print("finished", app.finish(10), flush=True)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "pgid.txt").exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "run did not start"
            time.sleep(0.05)
        pgid = int((tmp_path / "pgid.txt").read_text())
        assert not _gone(pgid) and (tmp_path / "limit.txt").read_text().strip() == "400"
        proc.send_signal(signal.SIGHUP)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "finished True" in out
    assert _gone(pgid)
    assert float((tmp_path / "limit.txt").read_text()) == 700.0


# -- attach ----------------------------------------------------------------------------------------
async def test_attach_follows_a_run_started_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    profile = load_profile(write_profile(tmp_path))
    runner = FakeRunner(profile, tmp_path / "run", pause_at=(1, 4.0), gpus=2)
    th = threading.Thread(target=runner.run, daemon=True)
    th.start()
    assert runner.paused.wait(20)
    app = make_app(tmp_path, run_dir=str(tmp_path / "run"), attach=True, tick_s=0.05)
    assert app.no_color
    async with app.run_test(size=(80, 24)) as pilot:
        run = app.screen
        assert isinstance(run, RunScreen)
        await wait_for(pilot, lambda: app.live.current == "mns8-tp1-pl700")
        run.sync(force=True)
        await pilot.pause()
        text = screen_text(app)
        assert "ATTACHED" in text and "SIMULATED" in text and "2/6 B=8 700 W" in text
        assert "✓ B=8 400 W" in text  # finished before we attached
        # a run's warning (the client behind vLLM's engine) comes as a toast too, once
        app.live.apply(ev.LogLine(line=f"{ev.WARNING_PREFIX}the client received tokens 1.12x slower"))
        run.sync(force=True)
        run.sync(force=True)
        await pilot.pause()
        toasts = [n.message for n in app._notifications]
        assert toasts.count("the client received tokens 1.12x slower") == 1, toasts
        power = run.query_one("#power", PowerChart)
        assert len(power.data.per_gpu_w) == 2 and power.data.steady_start_s is not None
        plain = chart_text(power)
        assert "·" in plain and "│" in plain  # band and its edges without colour
        await pilot.press("x")  # no stop from an attached view
        assert runner.pending() and not runner._stop.is_set()
        runner.resume.set()
        th.join(20)
        await wait_for(pilot, lambda: app.live.finished is not None)
        run.sync(force=True)
        assert "FINISHED 6 done" in screen_text(app)
        await pilot.press("r")
        assert isinstance(app.screen, ResultsScreen)


# -- records, compare, help, palette ----------------------------------------------------------
async def test_records_open_and_compare(tmp_path):
    profile = load_profile(write_profile(tmp_path))
    FakeRunner(profile, tmp_path / "runs" / "a", seed=1).run()
    fast = FakeRunner(profile, tmp_path / "runs" / "b", seed=2)
    fast.run_id = "other-run"
    fast.run()
    app = make_app(tmp_path, run_dir=str(tmp_path / "runs"))
    async with app.run_test(size=(120, 32)) as pilot:
        rs = app.screen
        assert isinstance(rs, RecordsScreen)
        table = rs.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        await pilot.press("c")
        assert isinstance(app.screen, RecordsScreen)  # nothing marked yet
        await pilot.press("space", "down", "space", "c")
        cmp = app.screen
        assert isinstance(cmp, CompareScreen)
        await retype(pilot, cmp.query_one("#target", Input), "20ms")
        summary = str(cmp.query_one("#compare-summary", Static).render())
        assert "× the energy per request" in summary
        assert "★" in str(cmp.query_one("#cmp-head-0", Static).render())
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, RecordsScreen)
        await pilot.press("enter")
        assert isinstance(app.screen, ResultsScreen)


async def test_help_and_command_palette(tmp_path):
    fac = fake_factory(pause_at=(0, 2.0))
    app = make_app(tmp_path, profiles=[write_profile(tmp_path)], runner_factory=fac)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        assert "skip the current configuration" in screen_text(app)
        await pilot.press("escape")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for t in ("Start sweep", "Records", "Keys", "Quit"):
            assert t in titles
        await pilot.press("ctrl+r")
        await wait_for(pilot, fac.made[0].paused.is_set)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Stop sweep" in titles and "Skip configuration" in titles
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        # Skip asks first, then the configuration ends as failed and the sweep goes on.
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        fac.made[0].resume.set()
        await wait_for(pilot, lambda: app.live.rows["mns8-tp1-pl400"].status == "failed")
        assert app.live.rows["mns8-tp1-pl400"].reasons == ["skipped by user"]
        await wait_for(pilot, lambda: not app.run_active)
        await pilot.press("ctrl+p")
        await pilot.press(*"Records", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RecordsScreen))


async def test_no_gpu_offers_the_simulated_backend(tmp_path):
    llama = profiles_dir() / "llama3.1-8b-chat.toml"
    app = make_app(tmp_path, profiles=[llama], runner_factory=fake_factory())
    async with app.run_test(size=(80, 24)) as pilot:
        setup = app.screen
        await wait_for(pilot, lambda: app.gpu_info is not None)
        box = setup.query_one("#simulated")
        assert box.display and not box.value
        assert setup.query_one("#start", Button).disabled
        assert "No NVIDIA GPU detected" in str(setup.query_one("#gpu-info", Static).render())
        assert "tick the simulated backend" in str(setup.query_one("#form-error", Static).render())
        box.focus()
        await pilot.press("space")
        assert box.value and not setup.query_one("#start", Button).disabled
        assert setup.result.profile.gpu.simulated


async def test_gpus_detected_are_shown(tmp_path):
    app = make_app(tmp_path, profiles=[profiles_dir() / "llama3.1-8b-chat.toml"], gpu_probe=h100_probe)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.gpu_info is not None)
        setup = app.screen
        assert "2 × NVIDIA H100 80GB HBM3 · power limit 200–700 W" in str(
            setup.query_one("#gpu-info", Static).render())
        assert not setup.query_one("#simulated").display
        await retype(pilot, setup.query_one("#power_limit_w", Input), "100, 700")
        assert "outside the GPUs' range" in str(setup.query_one("#err-power_limit_w", Static).render())
        assert setup.query_one("#start", Button).disabled


def test_first_frame_does_not_import_zeus(tmp_path):
    code = textwrap.dedent("""
        import asyncio, sys
        from mle_tui.tui.app import MleApp
        async def main():
            app = MleApp(cursor_blink=False)
            async with app.run_test(size=(80, 24)) as pilot:
                for _ in range(100):
                    await pilot.pause(0.05)
                    if app.gpu_info is not None:
                        break
                assert app.gpu_info is not None
        asyncio.run(main())
        print("zeus" in sys.modules, "torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_run_app_rejects_bad_input(tmp_path):
    from mle_tui.core.errors import InputError
    from mle_tui.tui.app import run_app

    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n')
    with pytest.raises(InputError) as e:
        run_app(str(bad), None, False)
    assert str(bad) in e.value.line()
    with pytest.raises(InputError):
        run_app(None, str(tmp_path / "missing"), False)


async def test_run_profile_starts_at_once_into_the_given_directory(tmp_path):
    """``mle-tui run PROFILE --out DIR`` in a terminal: the app starts the sweep into DIR."""
    fac = fake_factory()
    prof = write_profile(tmp_path)
    app = make_app(tmp_path, profile_path=str(prof), run_dir=str(tmp_path / "out"), runner_factory=fac)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: bool(fac.made))
        assert isinstance(app.screen, RunScreen)
        assert Path(fac.made[0].out_dir) == tmp_path / "out"
        await wait_for(pilot, lambda: not app.run_active)
        assert len(list((tmp_path / "out" / "records").glob("*.json"))) == 6


async def test_opening_a_running_directory_shows_the_live_view(tmp_path):
    profile = load_profile(write_profile(tmp_path))
    runner = FakeRunner(profile, tmp_path / "run", pause_at=(0, 3.0))
    th = threading.Thread(target=runner.run, daemon=True)
    th.start()
    assert runner.paused.wait(20)
    try:
        app = make_app(tmp_path, run_dir=str(tmp_path / "run"))  # `mle-tui open DIR`
        async with app.run_test(size=(80, 24)) as pilot:
            assert isinstance(app.screen, RunScreen) and app.screen.tail is not None
            await wait_for(pilot, lambda: app.live.current == "mns8-tp1-pl400")
    finally:
        runner.resume.set()
        th.join(20)
    app = make_app(tmp_path, run_dir=str(tmp_path / "run"))  # finished now: the results
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, ResultsScreen)
