"""Fault injection: the SSH link drops during a sweep (the app's pseudo-terminal is closed, as
sshd does; the kernel hangs the terminal up and sends SIGHUP). The app must be gone within 2 s,
the runner must go on, a new ``mle-tui`` must list the sweep and reattach, and the sweep must
complete with every record. Also: the app with stdout not a terminal is one line and exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mle_tui.core import runs_registry as reg
from mle_tui.core.store import RunStore
from ptyapp import PtyApp
from test_detach import realtime_demo, started_configs, wait_until

#: What the issue asks: the app process is gone within 2 s of losing its terminal.
EXIT_WITHIN_S = 2.0


@pytest.fixture()
def env(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("MLE_TUI_STATE_DIR", str(state))
    return {"MLE_TUI_STATE_DIR": str(state)}


def _kill_runner(run: Path) -> None:
    info = reg.read_runner(run)
    if info is not None and reg.is_alive(info):
        os.kill(info.pid, signal.SIGKILL)


def test_ssh_drop_mid_run_app_exits_runner_continues_and_reattaches(tmp_path, env):
    prof = realtime_demo(tmp_path, time_scale=10.0)
    run = tmp_path / "run"
    app = PtyApp(["run", str(prof), "--out", str(run)], cwd=tmp_path, env=env)
    apps = [app]
    try:
        app.wait_for("ATTACHED", 90)
        wait_until(lambda: started_configs(run) >= 1, 90, "the first configuration")
        runner = reg.live_runner(run)
        assert runner is not None and runner.pid != app.proc.pid
        hung_up_at = app.hang_up()
        rc = app.wait_exit(30)  # generous: a hang is what this catches
        gone_after_s = time.monotonic() - hung_up_at
        assert rc is not None, "the app hangs after losing its terminal"
        assert gone_after_s <= EXIT_WITHIN_S, f"the app took {gone_after_s:.2f} s to exit"
        # The sweep goes on without a terminal.
        assert reg.live_runner(run) == runner
        assert not RunStore(run).read_manifest().finished
        listed = reg.running_sweeps()
        assert [s.run_dir for s in listed] == [str(run.resolve())] and listed[0].total == 2
        # A new session: `mle-tui` lists the running sweep; enter reattaches.
        again = PtyApp([], cwd=tmp_path, env=env)
        apps.append(again)
        again.wait_for("running on this host", 90)
        again.wait_for(str(runner.pid), 30)
        again.send("\r")
        again.wait_for("ATTACHED", 30)
        wait_until(lambda: reg.live_runner(run) is None, 180, "the sweep to finish")
        again.wait_for("FINISHED 2 done", 30)
        again.send("q")
        assert again.wait_exit(30) == 0
    finally:
        for a in apps:
            a.kill()
        _kill_runner(run)
    recs = RunStore(run).load_records()
    assert sorted(r.config_key for r in recs) == ["mns128-tp1-pl700", "mns64-tp1-pl700"]
    assert all(r.status == "ok" for r in recs)
    assert RunStore(run).read_manifest().finished
    lines = [json.loads(x) for x in (run / "live.jsonl").read_bytes().splitlines() if x.strip()]
    assert lines[-1]["type"] == "run_finished" and not lines[-1]["stopped"]
    assert "done: 2 ok" in (run / "runner.log").read_text()


@pytest.mark.parametrize("args", [[], ["open", "{run}"]])
def test_app_with_stdout_not_a_terminal_is_one_line_and_exit_2(tmp_path, args):
    run = tmp_path / "run"
    (run / "records").mkdir(parents=True)
    argv = [a.format(run=run) for a in args]
    out = subprocess.run([sys.executable, "-m", "mle_tui.tui.cli", *argv], stdin=subprocess.DEVNULL,
                         capture_output=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stdout == b""
    err = out.stderr.decode().splitlines()
    assert len(err) == 1 and err[0].startswith("mle-tui: ") and "not a terminal" in err[0]
