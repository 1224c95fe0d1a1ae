"""The sweep in its own process: control channel, the host's list of running sweeps, liveness
without pid guessing, detach/stop/skip/resume through the app and the CLI (no terminal needed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgspec
import pytest

from mle_tui.core import runs_registry as reg
from mle_tui.core.control import CONTROL_NAME, ControlChannel
from mle_tui.core.profile import decode_profile, load_profile
from mle_tui.core.shipped import profiles_dir
from mle_tui.core.store import RunStore
from mle_tui.tui.runner_main import profiles_same, resumable_profile
from mle_tui.tui.sweep_process import DetachedRun, launch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MLE_TUI_STATE_DIR", str(tmp_path / "state"))


def realtime_demo(tmp_path: Path, *, time_scale: float = 10.0, mns: str = "[64, 128]", name: str = "rt.toml") -> Path:
    """The shipped demo on the wall clock (a sweep that lasts seconds, not microseconds)."""
    text = (profiles_dir() / "demo.toml").read_text()
    for a, b in [("realtime = false", f"realtime = true\ntime_scale = {time_scale}"),
                 ('max_num_seqs = "8..128 x2"', f"max_num_seqs = {mns}"),
                 ("power_limit_w = [400, 700]", "power_limit_w = 700")]:
        assert a in text, a  # the shipped demo still reads as this expects
        text = text.replace(a, b)
    p = tmp_path / name
    p.write_text(text)
    return p


def wait_until(cond, timeout_s: float, what: str, step_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(step_s)


def events(run_dir: Path) -> list[dict]:
    p = run_dir / "live.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_bytes().splitlines() if line.strip()]


def started_configs(run_dir: Path) -> int:
    return sum(1 for e in events(run_dir) if e["type"] == "config_started")


# -- control channel -----------------------------------------------------------------------------
def test_control_channel_delivers_each_command_once_to_its_runner(tmp_path):
    old = ControlChannel(tmp_path)
    old.send("stop")  # left by an earlier run of this directory
    since = time.time() + 0.001
    time.sleep(0.01)
    runner = ControlChannel(tmp_path, token="tok", since=since)
    assert runner.poll() == []  # the old stop is not for this runner
    app = ControlChannel(tmp_path)
    mid = app.send("skip", to="tok")
    app.send("skip", to="tok", msg_id=mid)  # a retry of the same command
    app.send("stop", to="another-runner")
    app.send("stop")  # unaddressed, after the runner started
    assert runner.poll() == ["skip", "stop"]
    assert runner.poll() == []
    # A half-written line waits for its end; garbage and unknown commands are ignored.
    with open(tmp_path / CONTROL_NAME, "ab") as fh:
        fh.write(b'not json\n{"id": "x1", "cmd": "reboot", "t": 1e12}\n{"id": "x2", "cmd": "sk')
    assert runner.poll() == []
    with open(tmp_path / CONTROL_NAME, "ab") as fh:
        fh.write(b'ip", "to": "tok"}\n')
    assert runner.poll() == ["skip"]
    with pytest.raises(ValueError):
        app.send("reboot")


def test_control_channel_concurrent_senders_lose_no_line(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from mle_tui.core.control import ControlChannel
        ch = ControlChannel({str(tmp_path)!r})
        for i in range(200):
            ch.send("skip", to="tok", msg_id=f"{{sys.argv[1]}}-{{i}}")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)]) for n in range(4)]
    assert [p.wait(60) for p in procs] == [0, 0, 0, 0]
    lines = (tmp_path / CONTROL_NAME).read_bytes().splitlines()
    assert len(lines) == 800 and all(json.loads(line)["cmd"] == "skip" for line in lines)
    assert len(ControlChannel(tmp_path, token="tok").poll()) == 800


# -- liveness and the list of running sweeps -------------------------------------------------------
def test_liveness_is_the_process_not_the_pid(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    info = reg.register(run, "tok1", detached=True)
    assert info.pid == os.getpid() and info.start_ticks is not None
    assert reg.live_runner(run) is not None
    assert [s.run_dir for s in reg.running_sweeps()] == [str(run.resolve())]
    # The same pid with another start time is another process (pid reuse): not running.
    stale = msgspec.structs.replace(info, start_ticks=info.start_ticks - 1)
    (run / reg.RUNNER_NAME).write_bytes(msgspec.json.encode(stale))
    assert reg.live_runner(run) is None
    assert reg.running_sweeps() == [] and not list(reg.registry_dir().glob("*.json"))  # pruned
    # A dead process.
    p = subprocess.Popen(["true"])
    p.wait()
    dead = msgspec.structs.replace(info, pid=p.pid, token="tok2")
    assert not reg.is_alive(dead)
    # The manifest names another pid: this runner.json is not the directory's runner.
    assert not reg.is_alive(info, manifest_pid=info.pid + 1)
    reg.unregister(info)


# -- resume a sweep written differently ----------------------------------------------------------
def test_resume_accepts_the_same_sweep_written_differently(tmp_path):
    from mle_tui.core.toml_text import struct_to_toml

    file_profile = load_profile(realtime_demo(tmp_path))
    assert file_profile.sweep.max_num_seqs == [64, 128]

    def written_as(mns: str):  # noqa: ANN202 - what the setup form hands the runner
        sweep = msgspec.structs.replace(file_profile.sweep, max_num_seqs=mns, power_limit_w="700",
                                        tensor_parallel="1")
        return decode_profile(struct_to_toml(msgspec.structs.replace(file_profile, sweep=sweep)))

    form_profile = written_as("64, 128")
    text = struct_to_toml(form_profile)
    assert text != struct_to_toml(file_profile)
    assert profiles_same(form_profile, file_profile)
    other = written_as("64, 256")
    assert not profiles_same(other, file_profile)
    run = tmp_path / "run"
    RunStore(run).ensure()
    from mle_tui.core.records import Manifest

    RunStore(run).write_manifest(Manifest(run_id="r", created_unix_s=0.0, host="h", power_source="simulated",
                                          profile_toml=struct_to_toml(form_profile)))
    chosen = resumable_profile(file_profile, run)
    assert struct_to_toml(chosen) == struct_to_toml(form_profile)  # byte-equal to the manifest
    assert resumable_profile(other, run) is other  # a different sweep: the runner refuses it


# -- the detached runner: survives SIGHUP, obeys stop and skip, resumes -----------------------------
def test_detached_runner_survives_sighup_stops_on_request_and_resumes(tmp_path):
    prof_path = realtime_demo(tmp_path)
    profile = load_profile(prof_path)
    run = tmp_path / "run"
    h = launch(profile, run, str(prof_path), simulate=True)
    try:
        wait_until(lambda: started_configs(run) >= 1, 60, "the first configuration")
        assert (run / "runner.log").exists() and not list(run.glob(".launch-*.toml"))
        info = reg.live_runner(run)
        assert info is not None and info.pid == h.pid and info.detached
        assert RunStore(run).read_manifest().pid == h.pid
        assert os.getsid(h.pid) == h.pid  # its own session: no terminal, no SIGHUP from one
        os.kill(h.pid, signal.SIGHUP)  # a stray hangup is ignored
        time.sleep(0.3)
        assert h.alive()
        other_app = DetachedRun.find(run)  # any app, through the run directory
        assert other_app is not None and other_app.pid == h.pid
        other_app.request_stop()
        assert h.proc.wait(60) == 1  # stopped early
    finally:
        if h.alive():
            h.proc.kill()
    evs = events(run)
    assert evs[-1]["type"] == "run_finished" and evs[-1]["stopped"]
    assert reg.live_runner(run) is None and reg.running_sweeps() == []
    done_before = RunStore(run).completed_keys()
    assert len(done_before) < 2
    # Resume: the rest of the sweep, in a new runner process; the old stop does not stop it.
    h2 = launch(profile, run, str(prof_path), simulate=True)
    assert h2.proc.wait(120) == 0, h2.log_tail(10)
    assert RunStore(run).completed_keys() == {"mns64-tp1-pl700", "mns128-tp1-pl700"}
    assert RunStore(run).read_manifest().finished


def test_skip_reaches_the_runner_and_the_sweep_goes_on(tmp_path):
    prof_path = realtime_demo(tmp_path)
    run = tmp_path / "run"
    h = launch(load_profile(prof_path), run, str(prof_path), simulate=True)
    try:
        wait_until(lambda: started_configs(run) >= 1, 60, "the first configuration")
        h.request_skip()
        assert h.proc.wait(120) in (0, 1), h.log_tail(10)
    finally:
        if h.alive():
            h.proc.kill()
    recs = {r.config_key: r for r in RunStore(run).load_records()}
    first = recs["mns64-tp1-pl700"]
    assert first.status in ("skipped", "failed") and any("skipped" in r for r in first.reasons)
    assert recs["mns128-tp1-pl700"].status == "ok"


def test_failed_validation_leaves_no_directory(tmp_path):
    prof = tmp_path / "bad.toml"
    prof.write_text(realtime_demo(tmp_path).read_text().replace("power_limit_w = 700", "power_limit_w = 5000"))
    run = tmp_path / "run"
    h = launch(load_profile(prof), run, str(prof), simulate=True)
    assert h.proc.wait(60) == 2
    line = h.log_tail(1)[0]
    assert line.startswith("mle-tui: ") and "power_limit_w" in line
    h.cleanup_failed_start()
    assert not run.exists()


# -- the app: start detached, quit by detaching, reattach, stop from the attached view -------------
async def test_app_detaches_and_a_new_app_reattaches_and_stops(tmp_path, monkeypatch):
    from mle_tui.tui.app import MleApp
    from mle_tui.tui.detach_ui import AttachedRunScreen, QuitScreen, RunningSweepsScreen
    from mle_tui.tui.modals import ConfirmScreen
    from tui_fakes import FrozenClock, no_gpu_probe, wait_for

    monkeypatch.chdir(tmp_path)
    prof = realtime_demo(tmp_path, time_scale=2.0)

    app = MleApp(profiles=[prof], gpu_probe=no_gpu_probe, now_s=FrozenClock(), runs_root=tmp_path / "runs",
                 records_roots=[tmp_path / "runs"], cursor_blink=False, tick_s=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+r")
        assert isinstance(app.screen, AttachedRunScreen) and app.detached_run
        run = app.run_dir
        await wait_for(pilot, lambda: app.live.current is not None, 60.0)
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("d")
        await wait_for(pilot, lambda: not app.is_running, 20)
    assert app.left_running == run
    handle = DetachedRun.find(run)
    assert handle is not None and handle.alive()
    try:
        app2 = MleApp(profiles=[prof], gpu_probe=no_gpu_probe, now_s=FrozenClock(), cursor_blink=False,
                      tick_s=0.1, offer_reattach=True)
        async with app2.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app2.screen, RunningSweepsScreen), 60.0)
            await pilot.press("enter")
            assert isinstance(app2.screen, AttachedRunScreen) and app2.run_active
            await wait_for(pilot, lambda: app2.live.current is not None, 60.0)
            await pilot.press("x")
            assert isinstance(app2.screen, ConfirmScreen)
            await pilot.press("y")
            await wait_for(pilot, lambda: not app2.run_active, 60)
            assert app2.live.finished is not None and app2.live.finished.stopped
            assert app2.run_error is None
    finally:
        if handle.alive():
            os.kill(handle.pid, signal.SIGKILL)
    assert handle.wait(10)


async def test_app_offers_resume_for_a_stopped_run_directory(tmp_path, monkeypatch):
    from mle_tui.tui.app import MleApp
    from mle_tui.tui.detach_ui import AttachedRunScreen
    from mle_tui.tui.modals import ConfirmScreen
    from tui_fakes import FrozenClock, no_gpu_probe

    monkeypatch.chdir(tmp_path)
    prof = realtime_demo(tmp_path)
    run = tmp_path / "run"
    h = launch(load_profile(prof), run, str(prof), simulate=True)
    wait_until(lambda: started_configs(run) >= 1, 60, "the first configuration")
    h.request_stop()
    assert h.proc.wait(60) == 1
    assert len(RunStore(run).completed_keys()) < 2 and not RunStore(run).read_manifest().finished
    app = MleApp(run_dir=str(run), gpu_probe=no_gpu_probe, now_s=FrozenClock(), cursor_blink=False, tick_s=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen) and "Resume" in app.screen.yes
        await pilot.press("y")
        assert isinstance(app.screen, AttachedRunScreen) and app.detached_run
        deadline = time.monotonic() + 120
        while app.run_active:
            assert time.monotonic() < deadline, "the resumed sweep did not finish"
            await pilot.pause(0.1)
        assert app.run_error is None, app.run_error
        assert app.live.finished is not None and not app.live.finished.stopped
    assert RunStore(run).completed_keys() == {"mns64-tp1-pl700", "mns128-tp1-pl700"}
    assert RunStore(run).read_manifest().finished


async def test_quit_and_stop_waits_for_the_runner_to_stop(tmp_path, monkeypatch):
    from mle_tui.tui.app import MleApp
    from mle_tui.tui.detach_ui import QuitScreen
    from tui_fakes import FrozenClock, no_gpu_probe

    monkeypatch.chdir(tmp_path)
    prof = realtime_demo(tmp_path, time_scale=2.0)
    app = MleApp(profiles=[prof], gpu_probe=no_gpu_probe, now_s=FrozenClock(), runs_root=tmp_path / "runs",
                 records_roots=[tmp_path / "runs"], cursor_blink=False, tick_s=0.1)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+r")
        handle = app.runner
        deadline = time.monotonic() + 60
        while app.live.current is None:
            assert time.monotonic() < deadline
            await pilot.pause(0.05)
        await pilot.press("ctrl+q")
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("s")
        deadline = time.monotonic() + 60
        while app.is_running:
            assert time.monotonic() < deadline, "the app did not exit after stopping"
            await pilot.pause(0.05)
    try:
        assert not handle.alive() and handle.returncode() == 1  # stopped, then the app left
        assert app.left_running is None
        evs = events(handle.run_dir)
        assert evs[-1]["type"] == "run_finished" and evs[-1]["stopped"]
    finally:
        if handle.alive():
            handle.proc.kill()
