"""One sweep across a real local Ray cluster (a head and two worker nodes with two logical GPUs
each, simulated GPUs): the run directory it writes against the single-node run of the same
profile, and a worker node killed in the middle of a configuration. Ray processes are stopped
through the cluster object (by pid), never with ``ray stop``. The agent's lease is checked
without Ray (the agent is plain Python)."""

from __future__ import annotations

import functools
import json
import math
import socket
import threading
import time
from pathlib import Path

import pytest

from mle_tui.core.cluster.ray_env import import_ray
from mle_tui.core.errors import InputError

try:
    ray = import_ray()
except InputError:
    pytest.skip("Ray is not installed (the mle-tui[ray] extra)", allow_module_level=True)

import cluster_helpers  # noqa: E402
from cluster_helpers import HoldFirstAttempt, HoldUntilReleased, sweep_profile  # noqa: E402
from mle_tui.core.cluster.agent import NodeAgent  # noqa: E402
from mle_tui.core.cluster.driver import NODE_LABEL, ClusterRunner  # noqa: E402
from mle_tui.core.cluster.sim_device import read_device  # noqa: E402
from mle_tui.core.events import ConfigFinished, ConfigStarted, PowerSample, RunFinished, decode_event  # noqa: E402
from mle_tui.core.runner import SweepRunner  # noqa: E402
from mle_tui.core.store import RunStore  # noqa: E402
from mle_tui.core.sweep_prep import load_workload  # noqa: E402
from mle_tui.tui.live import DONE, INVALID, LiveState  # noqa: E402
from mle_tui.tui.live_nodes import node_rows  # noqa: E402

pytestmark = pytest.mark.slow

#: Record fields derived from the GPU's readings. A simulated GPU, like a real one, carries its
#: history from one configuration to the next (energy-counter tick phase, jitter slots), so they
#: depend on what ran on that GPU before: compared within READING_REL, never exactly.
READING_FIELDS = ("power_timeline", "per_gpu", "idle_gpus", "energy", "power_w", "accounting",
                  "tdp_overestimation", "steady_state.gates")
READING_REL = 0.01
#: Fields that name where and when a record was made.
HOST_FIELDS = ("run_id", "started_unix_s", "hardware.host", "hardware.node", "hardware.gpu_uuids")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    workers = {name: c.add_node(num_cpus=2, num_gpus=2, labels={NODE_LABEL: name}) for name in ("w1", "w2")}
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    ray.cloudpickle.register_pickle_by_value(cluster_helpers)
    try:
        yield c, workers
    finally:
        ray.shutdown()
        c.shutdown()


def _compare(local: object, remote: object, path: str, out: list[str]) -> None:
    if any(path.lstrip(".").startswith(h) for h in HOST_FIELDS):
        return
    if isinstance(local, dict) and isinstance(remote, dict):
        for k in sorted(set(local) | set(remote)):
            _compare(local.get(k), remote.get(k), f"{path}.{k}", out)
    elif isinstance(local, list) and isinstance(remote, list) and len(local) == len(remote):
        for i, (a, b) in enumerate(zip(local, remote)):
            _compare(a, b, f"{path}[{i}]", out)
    elif local != remote:
        numbers = isinstance(local, (int, float)) and isinstance(remote, (int, float))
        if numbers and "power_timeline" in path:
            return  # single samples: counter ticks and jitter slots fall elsewhere (same count)
        reading = any(f in path for f in READING_FIELDS)
        if reading and numbers and math.isclose(local, remote, rel_tol=READING_REL):
            return
        if reading and isinstance(local, str) and isinstance(remote, str) and " J " in local:
            return  # a gate's message quoting a reading
        out.append(f"{path}: {str(local)[:60]} != {str(remote)[:60]}")


def _state_files(node_dir: Path) -> list[Path]:
    """The power-limit state files (original limits of a changed GPU) in a node's directory."""
    return sorted((node_dir / "power-limits").glob("power-limit-*.json"))


def _records(run_dir: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_bytes()) for p in sorted((run_dir / "records").glob("*.json"))}


def _run_until_held(runner, marker: Path) -> tuple[threading.Thread, dict]:  # noqa: ANN001
    """Start ``runner`` in a thread; return once the held configuration has started."""
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(summary=runner.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert time.monotonic() < deadline and thread.is_alive(), "the held configuration never started"
        time.sleep(0.1)
    return thread, out


def test_cluster_sweep_matches_single_node_run(cluster, tmp_path: Path) -> None:
    profile = sweep_profile()
    assert len(profile.configs()) >= 8
    local = SweepRunner(profile, tmp_path / "local").run()
    events: list = []
    runner = ClusterRunner(profile, tmp_path / "cluster", node_dir_base=str(tmp_path / "nodes"),
                           listener=events.append)
    summary = runner.run()
    assert (summary.completed, summary.failed, summary.stopped) == (local.completed, local.failed, False)
    a, b = _records(tmp_path / "local"), _records(tmp_path / "cluster")
    assert sorted(a) == sorted(b) == sorted(f"{c.key()}.json" for c in profile.configs())
    problems: list[str] = []
    for name in a:
        _compare(a[name], b[name], "", problems)
    assert not problems, problems[:20]
    # Records carry the node; both nodes ran configurations; the local run has no node.
    nodes = {r["hardware"]["node"] for r in b.values()}
    assert nodes == {"w1", "w2"}
    assert all(r["hardware"]["host"] == socket.gethostname() for r in b.values())
    assert all(r["hardware"]["node"] is None for r in a.values())
    # Traces and logs arrived; the run directory is whole for report/reanalyse.
    for c in profile.configs():
        assert (tmp_path / "cluster" / "traces" / f"{c.key()}.msgpack.gz").stat().st_size > 0
        assert (tmp_path / "cluster" / "logs" / f"{c.key()}.log").exists()
    manifest = RunStore(tmp_path / "cluster").read_manifest()
    assert manifest is not None and manifest.finished
    assert sorted(n.name for n in manifest.nodes) == ["w1", "w2"] and manifest.nodes_to_restore == []
    # live.jsonl: every configuration finished, its record path in the run directory.
    live = [decode_event(line) for line in (tmp_path / "cluster" / "live.jsonl").read_bytes().splitlines()]
    finished = [e for e in live if isinstance(e, ConfigFinished)]
    assert sorted(e.key for e in finished) == sorted(c.key() for c in profile.configs())
    assert all(Path(e.record_path).parent == tmp_path / "cluster" / "records" for e in finished)
    assert [type(e).__name__ for e in events].count("ConfigFinished") == len(profile.configs())
    # Every event an agent forwarded carries its node; folded per node, every row is done.
    forwarded = [e for e in events if isinstance(e, (ConfigStarted, PowerSample, ConfigFinished))]
    assert forwarded and {e.node for e in forwarded} == {"w1", "w2"}
    state = LiveState()
    state.apply_all(events)
    assert sorted(state.nodes.order) == ["w1", "w2"] and {r.status for r in state.rows.values()} <= {DONE, INVALID}
    assert all(r["label"] is None for r in node_rows(state))
    # Every node's simulated GPUs back at their original limit; no limit state left; agents gone.
    for node in ("w1", "w2"):
        assert set(read_device(tmp_path / "nodes" / node).values()) == {700.0}
        assert not _state_files(tmp_path / "nodes" / node)
    assert not [a for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "mle-tui"]


def test_cli_run_headless_with_ray(cluster, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """``mle-tui run PROFILE --headless --ray ADDRESS``: the cluster driver, one run directory
    that ``report`` reads."""
    from mle_tui.core.toml_text import struct_to_toml
    from mle_tui.tui.cli import main

    c, _ = cluster
    profile = sweep_profile(mns="8", power="[400, 700]")
    path = tmp_path / "p.toml"
    path.write_text(struct_to_toml(profile))
    rc = main(["run", str(path), "--headless", "--out", str(tmp_path / "run"), "--ray", c.address])
    assert rc == 0, capsys.readouterr().err[-2000:]
    recs = _records(tmp_path / "run")
    assert sorted(recs) == ["mns8-tp1-pl400.json", "mns8-tp1-pl700.json"]
    assert {r["hardware"]["node"] for r in recs.values()} <= {"w1", "w2"}
    assert main(["report", str(tmp_path / "run")]) == 0
    assert "mns8-tp1-pl400" in capsys.readouterr().out



def test_stop_stops_every_agent_and_restores_every_node(cluster, tmp_path: Path) -> None:
    """request_stop (the app's x, SIGTERM of the runner) while a configuration holds a changed
    limit on one node: the sweep ends stopped, every node is back at its original limit, no
    agent is left, and the stopped configuration has no record (it runs again on resume)."""
    profile = sweep_profile()
    held = profile.configs()[0].key()
    marker = tmp_path / "held.json"
    runner = ClusterRunner(profile, tmp_path / "run", node_dir_base=str(tmp_path / "nodes"),
                           runtime_factory=functools.partial(HoldFirstAttempt, held, str(marker)))
    thread, out = _run_until_held(runner, marker)
    runner.request_stop()
    thread.join(timeout=300)
    assert not thread.is_alive() and out["summary"].stopped
    assert f"{held}.json" not in _records(tmp_path / "run")
    for node in ("w1", "w2"):
        assert set(read_device(tmp_path / "nodes" / node).values()) <= {700.0}
        assert not _state_files(tmp_path / "nodes" / node)
    assert not [a for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "mle-tui"]
    assert {c.key() for c in runner.pending()} >= {held}


def test_skip_targets_one_configuration_the_other_node_goes_on(cluster, tmp_path: Path) -> None:
    """request_skip(key) (the app's s on a node, the control channel's skip with a key) while
    one node holds that configuration: it ends ``skipped`` (no record; it runs again on resume),
    every other configuration gets its record, a key that runs nowhere is ignored with a line."""
    profile = sweep_profile()
    held = profile.configs()[0].key()
    marker = tmp_path / "held.json"
    events: list = []
    runner = ClusterRunner(profile, tmp_path / "run", node_dir_base=str(tmp_path / "nodes"), listener=events.append,
                           runtime_factory=functools.partial(HoldFirstAttempt, held, str(marker)))
    thread, out = _run_until_held(runner, marker)
    runner.request_skip("no-such-config")
    runner.request_skip(held)
    thread.join(timeout=300)
    assert not thread.is_alive() and not out["summary"].stopped
    recs = _records(tmp_path / "run")
    assert sorted(recs) == sorted([f"{held}.skipped.json", *(f"{c.key()}.json" for c in profile.configs()[1:])])
    assert recs[f"{held}.skipped.json"]["status"] == "skipped"
    finished = {e.key: e.status for e in events if isinstance(e, ConfigFinished)}
    assert finished[held] == "skipped" and all(v in ("ok", "invalid") for k, v in finished.items() if k != held)
    lines = [getattr(e, "line", "") for e in events]
    assert "skip no-such-config: no node runs it (unknown, queued or finished); ignored" in lines
    assert [c.key() for c in runner.pending()] == [held]
    for node in ("w1", "w2"):
        assert set(read_device(tmp_path / "nodes" / node).values()) <= {700.0}


def test_drain_finishes_the_running_ones_and_a_second_run_resumes_the_rest(cluster, tmp_path: Path) -> None:
    """request_drain while both nodes run a configuration (held until released): both finish
    and are written (drain, unlike stop, keeps them), nothing new starts, the run ends stopped
    with the other six pending; a second ClusterRunner on the same directory runs exactly those
    six, and the directory ends with every record once."""
    profile = sweep_profile()
    cfgs = profile.configs()
    held = [cfgs[0].key(), cfgs[4].key()]  # the first of each server group (B = 8, B = 16)
    assert [c.batch for c in cfgs] == [8] * 4 + [16] * 4
    markers, release = tmp_path / "markers", tmp_path / "release"
    markers.mkdir()
    events: list = []
    runner = ClusterRunner(profile, tmp_path / "run", node_dir_base=str(tmp_path / "nodes"), listener=events.append,
                           runtime_factory=functools.partial(HoldUntilReleased, held, str(markers), str(release)))
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(summary=runner.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 240
    while len(list(markers.iterdir())) < 2:  # both nodes busy: nothing else can have started
        assert time.monotonic() < deadline and thread.is_alive(), "the held configurations never started"
        time.sleep(0.1)
    runner.request_drain()
    while not any("draining" in getattr(e, "line", "") for e in events):
        assert time.monotonic() < deadline and thread.is_alive(), "no draining line"
        time.sleep(0.05)
    release.write_text("")
    thread.join(timeout=300)
    assert not thread.is_alive()
    summary = out["summary"]
    assert summary.stopped and (summary.completed, summary.failed) == (2, 0)
    lines = [getattr(e, "line", "") for e in events]
    assert "draining: 2 running configuration(s) finish, 6 stay queued" in lines
    assert [e.stopped for e in events if isinstance(e, RunFinished)] == [True]
    first = _records(tmp_path / "run")
    assert sorted(first) == sorted(f"{k}.json" for k in held)
    assert {r["status"] for r in first.values()} <= {"ok", "invalid"}
    assert sorted(c.key() for c in runner.pending()) == sorted(c.key() for c in cfgs if c.key() not in held)
    manifest = RunStore(tmp_path / "run").read_manifest()
    assert manifest is not None and not manifest.finished
    for node in ("w1", "w2"):
        assert set(read_device(tmp_path / "nodes" / node).values()) <= {700.0}
    # The second run resumes: the two written records are skipped, the six others run.
    events2: list = []
    again = ClusterRunner(profile, tmp_path / "run", node_dir_base=str(tmp_path / "nodes"), listener=events2.append)
    summary2 = again.run()
    assert not summary2.stopped and (summary2.completed, summary2.failed, summary2.skipped) == (6, 0, 2)
    ran = sorted(e.key for e in events2 if isinstance(e, ConfigStarted))
    assert ran == sorted(c.key() for c in cfgs if c.key() not in held)
    final = _records(tmp_path / "run")
    assert sorted(final) == sorted(f"{c.key()}.json" for c in cfgs)
    assert all(final[name] == first[name] for name in first)  # the drained run's records, untouched
    assert RunStore(tmp_path / "run").read_manifest().finished and not again.pending()



def test_a_cluster_run_resumes_a_directory_a_local_run_began(cluster, tmp_path: Path) -> None:
    """A sweep begun on one GPU without Ray (drained after two configurations) is finished over
    the cluster: the cluster run skips the two, runs the six others, and leaves every record once
    (the way a long grid is carried from a one-GPU slice to two Ray nodes). Nodes of another GPU
    model are refused first, as on one host."""
    profile = sweep_profile()
    cfgs = profile.configs()
    local: SweepRunner | None = None
    finished: list[str] = []

    def drain_after_two(e: object) -> None:
        if isinstance(e, ConfigFinished):
            finished.append(e.key)
            if len(finished) == 2 and local is not None:
                local.request_drain()

    local = SweepRunner(profile, tmp_path / "run", listener=drain_after_two)
    first = local.run()
    assert first.stopped and first.completed == 2
    before = _records(tmp_path / "run")
    # Nodes of another GPU model than the run began on are refused, before anything is written.
    manifest_path = tmp_path / "run" / "run.json"
    good = manifest_path.read_bytes()
    m = json.loads(good)
    m["gpus"] = [{**g, "name": "Other GPU 9000"} for g in m["gpus"]]
    manifest_path.write_text(json.dumps(m))
    with pytest.raises(InputError) as ei:
        ClusterRunner(profile, tmp_path / "run", node_dir_base=str(tmp_path / "nodes")).run()
    assert ei.value.field == "gpus" and "Other GPU 9000" in ei.value.problem
    assert _records(tmp_path / "run") == before and json.loads(manifest_path.read_bytes()) == m
    manifest_path.write_bytes(good)
    events: list = []
    again = ClusterRunner(profile, tmp_path / "run", node_dir_base=str(tmp_path / "nodes"), listener=events.append)
    summary = again.run()
    assert not summary.stopped and (summary.completed, summary.failed, summary.skipped) == (6, 0, 2)
    assert sorted(e.key for e in events if isinstance(e, ConfigStarted)) == sorted(
        c.key() for c in cfgs if f"{c.key()}.json" not in before)
    final = _records(tmp_path / "run")
    assert sorted(final) == sorted(f"{c.key()}.json" for c in cfgs)
    assert all(final[name] == before[name] for name in before)
    assert {final[n]["hardware"]["node"] for n in final if n not in before} <= {"w1", "w2"}
    assert RunStore(tmp_path / "run").read_manifest().finished


DRIVER = """
import functools, sys
sys.path.insert(0, {tests!r})
from mle_tui.core.cluster.ray_env import import_ray
ray = import_ray()
import cluster_helpers
from mle_tui.core.cluster.driver import ClusterRunner
ray.init(address={address!r}, log_to_driver=False)
ray.cloudpickle.register_pickle_by_value(cluster_helpers)
ClusterRunner(cluster_helpers.sweep_profile(), {out!r}, node_dir_base={nodes!r}, lease_s=2.0,
              runtime_factory=functools.partial(cluster_helpers.HoldFirstAttempt, {held!r}, {marker!r})).run()
"""


def test_driver_killed_agents_stop_and_restore_within_the_lease(cluster, tmp_path: Path) -> None:
    """The driver process is SIGKILLed while a node holds a changed limit: no one polls the
    agents any more; within their lease they stop, restore and exit."""
    import subprocess
    import sys

    c, _ = cluster
    held = sweep_profile().configs()[0].key()
    marker = tmp_path / "held.json"
    code = DRIVER.format(tests=str(Path(__file__).parent), address=c.address, out=str(tmp_path / "run"),
                         nodes=str(tmp_path / "nodes"), held=held, marker=str(marker))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert time.monotonic() < deadline and proc.poll() is None, "the held configuration never started"
            time.sleep(0.1)
        node = next(n for n in ("w1", "w2") if read_device(tmp_path / "nodes" / n).get(0) == 300.0)
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 120  # a hang guard; the lease is 2 s
        while read_device(tmp_path / "nodes" / node).get(0) != 700.0 or _state_files(tmp_path / "nodes" / node):
            assert time.monotonic() < deadline, "the agent did not restore its node after the driver died"
            time.sleep(0.2)
        while [a for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "mle-tui"]:
            assert time.monotonic() < deadline, "agents left behind after the driver died"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_node_lost_mid_configuration_fails_requeues_and_restores(cluster, tmp_path: Path) -> None:
    c, workers = cluster
    profile = sweep_profile()
    held = profile.configs()[0].key()  # first in the queue: a node takes it at once
    assert held.endswith("pl300")
    marker = tmp_path / "held.json"
    runner = ClusterRunner(profile, tmp_path / "run", node_dir_base=str(tmp_path / "nodes"),
                           runtime_factory=functools.partial(HoldFirstAttempt, held, str(marker)))
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(summary=runner.run()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 240
    while not marker.exists():  # the held configuration is running, its limit set
        assert time.monotonic() < deadline and thread.is_alive(), "the held configuration never started"
        time.sleep(0.1)
    where = json.loads(marker.read_text())["node_id"]
    lost = next(name for name, node in workers.items() if node.node_id == where)
    survivor = next(name for name in workers if name != lost)
    assert read_device(tmp_path / "nodes" / lost) == {0: 300.0}
    c.remove_node(workers[lost], allow_graceful=False)
    thread.join(timeout=400)
    assert not thread.is_alive()
    summary = out["summary"]
    assert not summary.stopped and summary.completed + summary.failed == len(profile.configs())
    # The lost attempt: a failed record naming the node, kept in attempts/; the rerun's record
    # (from the other node) is the configuration's record.
    attempt = json.loads((tmp_path / "run" / "attempts" / f"{held}.lost-1.json").read_bytes())
    assert attempt["status"] == "failed" and attempt["reasons"][0].startswith(f"node lost: {lost}")
    assert attempt["hardware"]["node"] == lost
    recs = _records(tmp_path / "run")
    assert sorted(recs) == sorted(f"{k.key()}.json" for k in profile.configs())
    assert recs[f"{held}.json"]["status"] in ("ok", "invalid")
    assert recs[f"{held}.json"]["hardware"]["node"] == survivor
    manifest = RunStore(tmp_path / "run").read_manifest()
    assert manifest is not None and manifest.nodes_to_restore == [lost]
    # The killed node's GPU still holds 300 W, its state file the original; the agent's next
    # start on that node (here without Ray, same node directory) restores it.
    assert read_device(tmp_path / "nodes" / lost) == {0: 300.0}
    assert _state_files(tmp_path / "nodes" / lost)
    agent = NodeAgent(profile, node=lost, run_id="restart", configs=profile.configs(),
                      requests=load_workload(profile, None, None, lambda line: None),
                      node_dir=str(tmp_path / "nodes" / lost), lease_s=0)
    try:
        assert any("restored power limits" in n for n in agent.info()["notes"])
    finally:
        agent.shutdown()
    assert read_device(tmp_path / "nodes" / lost) == {0: 700.0}
    assert not _state_files(tmp_path / "nodes" / lost)
    assert set(read_device(tmp_path / "nodes" / survivor).values()) == {700.0}


def test_agent_lease_runs_out_stops_and_restores(tmp_path: Path) -> None:
    """The driver stops polling (it died): the agent stops the configuration, restores the
    limit, releases the node and exits, within the lease."""
    profile = sweep_profile()
    held = profile.configs()[0].key()
    marker = tmp_path / "held.json"
    exited = threading.Event()
    agent = NodeAgent(profile, node="n1", run_id="lease", configs=profile.configs(),
                      requests=load_workload(profile, None, None, lambda line: None),
                      node_dir=str(tmp_path / "n1"), lease_s=1.0, exit_fn=exited.set,
                      runtime_factory=functools.partial(HoldFirstAttempt, held, str(marker), node_id=False))
    out: dict = {}
    thread = threading.Thread(target=lambda: out.update(r=agent.run_config(profile.configs()[0], 0, 8)), daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not marker.exists():  # the driver polls while the configuration starts
        agent.poll()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert read_device(tmp_path / "n1") == {0: 300.0}
    assert exited.wait(120), "the agent did not exit when its lease ran out"  # no more polls
    thread.join(timeout=60)
    assert out["r"]["status"] == "stopped"
    assert not [rel for rel in out["r"]["files"] if rel.startswith("records/")]
    assert read_device(tmp_path / "n1") == {0: 700.0}
    assert not _state_files(tmp_path / "n1")



def test_configurations_sharing_a_vllm_server_stay_on_one_node(tmp_path: Path) -> None:
    """vLLM keeps its server across power limits: the driver gives a node the configurations
    of one server in a row (promising the next one, which the runtime is told about), and free
    nodes the servers nobody has yet."""
    from mle_tui.core.cluster.nodes import Node
    from mle_tui.core.cluster.queue import ConfigQueue, next_for
    from mle_tui.core.profile import decode_profile

    profile = decode_profile("""
name = "plan"
task = "chat"
runtime = "vllm"
[model]
id = "m"
[dataset]
name = "synthetic"
num_requests = 8
[sweep]
max_num_seqs = [64, 256]
power_limit_w = [700, 400]
""", "plan.toml")
    runner = ClusterRunner(profile, tmp_path / "run")
    a, b = Node("a", "ida", 1, None), Node("b", "idb", 1, None)
    runner.nodes = [a, b]
    queue = ConfigQueue(enumerate(profile.configs()), runner._group)
    i, cfg, nxt = next_for(runner.nodes, a, queue, runner._group)
    a.job = (None, i, cfg, 0.0)
    promised_a = nxt
    assert nxt is not None and nxt.batch == cfg.batch and nxt.power_limit_w != cfg.power_limit_w
    i, cfg_b, nxt = next_for(runner.nodes, b, queue, runner._group)
    b.job = (None, i, cfg_b, 0.0)
    assert cfg_b.batch != cfg.batch  # the server nobody has yet
    assert nxt is not None and nxt.batch == cfg_b.batch and nxt.power_limit_w != cfg_b.power_limit_w
    assert not queue
    a.job = None
    assert next_for(runner.nodes, a, queue, runner._group)[1] == promised_a
