"""Skip in a cluster run targets one configuration: the control channel carries its key (old
lines without one still mean "the running one"), the driver skips it only on the node that runs
it (the others go on; a key that runs nowhere is ignored with a log line), the agent skips only
the configuration it names, and the app's ``s`` names the selected node's configuration. Without
Ray: the driver's bookkeeping is exercised with stand-in agent handles."""

from __future__ import annotations

import functools
import json
import threading
import time
from pathlib import Path

from mle_tui.core.cluster.agent import NodeAgent
from mle_tui.core.cluster.driver import ClusterRunner
from mle_tui.core.cluster.nodes import Node
from mle_tui.core.control import CONTROL_NAME, ControlChannel, follow_control
from mle_tui.core.events import LogLine
from mle_tui.core.profile import load_profile
from mle_tui.core.sweep_prep import load_workload
from mle_tui.tui.app import MleApp
from mle_tui.tui.modals import ConfirmScreen
from cluster_fakes import cluster_factory
from cluster_helpers import HoldFirstAttempt, sweep_profile
from tui_fakes import FrozenClock, no_gpu_probe, write_profile


# -- the control channel ------------------------------------------------------------------------
def test_skip_key_round_trips_and_old_lines_mean_the_running_one(tmp_path: Path) -> None:
    app = ControlChannel(tmp_path)
    runner = ControlChannel(tmp_path, token="tok", since=0.0)
    app.send("skip", to="tok", key="mns64-tp1-pl400")
    app.send("stop", to="tok", key="ignored-for-stop")
    # An older sender's line: no key field at all.
    with open(tmp_path / CONTROL_NAME, "a") as fh:
        fh.write(json.dumps({"id": "old", "cmd": "skip", "to": "tok", "t": 1.0}) + "\n")
    msgs = runner.poll_messages()
    assert [(m.cmd, m.key) for m in msgs] == [("skip", "mns64-tp1-pl400"), ("stop", None), ("skip", None)]
    assert b'"key"' not in (tmp_path / CONTROL_NAME).read_bytes().splitlines()[1]  # omitted when None


def test_follow_control_passes_the_key_to_the_runner(tmp_path: Path) -> None:
    class KeyRunner:
        def __init__(self) -> None:
            self.skips: list = []

        def request_skip(self, key: str | None = None) -> None:
            self.skips.append(key)

    app = ControlChannel(tmp_path)
    app.send("skip", key="a")
    app.send("skip")
    app.send("stop")
    got, stops, done = [], [], threading.Event()
    done.set()  # one pass
    follow_control(ControlChannel(tmp_path, since=0.0), got.append, lambda: stops.append(1), done, period_s=0.0)
    assert got == ["a", None] and stops == [1]
    keyed = KeyRunner()
    for key in got:
        keyed.request_skip(key)
    assert keyed.skips == ["a", None]


def test_the_local_runner_skips_its_running_configuration_whatever_the_key(tmp_path: Path) -> None:
    """One host runs one configuration at a time: a key (sent only by a cluster run's app)
    changes nothing."""
    from mle_tui.core.runner import SweepRunner

    for key in ("a", None):
        local = SweepRunner(sweep_profile(), tmp_path / f"run-{key}")
        local.request_skip(key)
        assert local._flags.skip.is_set() and not local._flags.stop.is_set()


# -- the driver's bookkeeping (no Ray) ----------------------------------------------------------
class _Remote:
    def __init__(self, calls: list, name: str, method: str) -> None:
        self.calls, self.name, self.method = calls, name, method

    def remote(self, *args) -> None:
        self.calls.append((self.name, self.method, *args))


class _Handle:
    """A stand-in for an agent's actor handle: records ``skip.remote(key)`` / ``stop.remote()``."""

    def __init__(self, calls: list, name: str) -> None:
        self.skip, self.stop = _Remote(calls, name, "skip"), _Remote(calls, name, "stop")


def _driver(tmp_path: Path):
    profile = sweep_profile()
    events: list = []
    runner = ClusterRunner(profile, tmp_path / "run", listener=events.append)
    calls: list = []
    cfgs = profile.configs()
    runner.nodes = [Node(n, f"id-{n}", 1, _Handle(calls, n)) for n in ("w1", "w2", "w3")]
    runner.nodes[0].job = (None, 0, cfgs[0], 0.0)
    runner.nodes[1].job = (None, 1, cfgs[1], 0.0)  # w3 idle
    return runner, cfgs, calls, events


def test_driver_skips_only_the_named_configuration(tmp_path: Path) -> None:
    runner, cfgs, calls, events = _driver(tmp_path)
    runner.request_skip(cfgs[1].key())
    runner._act_on_requests()
    assert calls == [("w2", "skip", cfgs[1].key())]  # w1's configuration goes on
    assert [e.line for e in events] == [f"node w2: skipping {cfgs[1].key()}"]
    runner._act_on_requests()  # a request is acted on once
    assert len(calls) == 1


def test_driver_ignores_a_key_that_runs_nowhere(tmp_path: Path) -> None:
    runner, cfgs, calls, events = _driver(tmp_path)
    for key in ("no-such-config", cfgs[5].key()):  # unknown; queued (or finished): not running
        runner.request_skip(key)
    runner._act_on_requests()
    assert calls == []
    lines = [e.line for e in events if isinstance(e, LogLine)]
    assert lines == [f"skip {k}: no node runs it (unknown, queued or finished); ignored"
                     for k in sorted(("no-such-config", cfgs[5].key()))]


def test_driver_skip_without_key_skips_every_running_one(tmp_path: Path) -> None:
    runner, cfgs, calls, events = _driver(tmp_path)
    runner.request_skip()
    runner._act_on_requests()
    assert calls == [("w1", "skip", cfgs[0].key()), ("w2", "skip", cfgs[1].key())]
    runner.nodes[1].alive = False  # a lost node is never asked
    runner.request_skip(cfgs[1].key())
    runner._act_on_requests()
    assert len(calls) == 2 and "no node runs it" in events[-1].line


# -- the agent (plain Python, simulated GPU) -----------------------------------------------------
def test_agent_skips_only_the_configuration_it_runs(tmp_path: Path) -> None:
    profile = sweep_profile(num=8)
    cfg, other = profile.configs()[0], profile.configs()[1]
    marker = tmp_path / "held.json"
    agent = NodeAgent(profile, node="n1", run_id="skip", configs=profile.configs(),
                      requests=load_workload(profile, None, None, lambda line: None),
                      node_dir=str(tmp_path / "n1"), lease_s=0.0,
                      runtime_factory=functools.partial(HoldFirstAttempt, cfg.key(), str(marker), node_id=False))
    try:
        assert agent.skip(cfg.key()) is False  # nothing runs: nothing to skip later
        out: dict = {}
        thread = threading.Thread(target=lambda: out.update(r=agent.run_config(cfg, 0, 8)), daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not marker.exists():  # the configuration holds until cancelled
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.02)
        assert agent.skip(other.key()) is False and thread.is_alive()  # another node's key
        assert agent.skip(cfg.key()) is True
        thread.join(timeout=60)
        assert out["r"]["status"] == "skipped"
        assert any(rel.endswith(f"{cfg.key()}.skipped.json") for rel in out["r"]["files"])
    finally:
        agent.shutdown()


# -- the app --------------------------------------------------------------------------------------
async def _until(pilot, cond, timeout_s: float = 20.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {cond}"
        await pilot.pause(0.05)


async def test_s_in_a_cluster_run_names_the_selected_nodes_configuration(tmp_path: Path) -> None:
    fac = cluster_factory()
    path = write_profile(tmp_path)
    cfgs = load_profile(path).configs()
    app = MleApp(gpu_probe=no_gpu_probe, now_s=FrozenClock(), runs_root=tmp_path / "runs",
                 records_roots=[tmp_path / "runs"], cursor_blink=False, profiles=[path], runner_factory=fac)
    async with app.run_test(size=(100, 30)) as pilot:
        await _until(pilot, lambda: app.gpu_info is not None)
        await pilot.press("ctrl+r")
        await _until(pilot, lambda: bool(fac.made) and fac.made[0].paused.is_set())
        await _until(pilot, lambda: not app._queue and not app._wake)
        runner = fac.made[0]
        assert app.live.nodes.selected == "w1"  # w1 runs configuration 2, w2 configuration 1
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        assert f"{cfgs[2].key()} ({cfgs[2].label()}) on node w1" in app.screen.question
        await pilot.press("n")  # declined: nothing sent
        assert runner.skips == []
        await pilot.press("n")  # the next node
        await _until(pilot, lambda: app.live.nodes.selected == "w2")
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        assert f"{cfgs[1].key()} ({cfgs[1].label()}) on node w2" in app.screen.question
        await pilot.press("y")
        await _until(pilot, lambda: runner.skips == [cfgs[1].key()])
        runner.request_stop()
        await _until(pilot, lambda: not app.run_active)
