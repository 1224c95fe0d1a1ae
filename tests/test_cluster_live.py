"""A cluster run's events carry their node: the app's live state keeps one state per node (the
charts follow the selected one), the single-host path (no node) is unchanged, old live.jsonl
lines still decode, and the headless progress names each finished configuration once."""

from __future__ import annotations

import io

import msgspec
import numpy as np

from mle_tui.core.events import ConfigFinished, PowerSample, RunFinished, decode_event, encode_event
from mle_tui.core.profile import load_profile
from mle_tui.tui.headless import ProgressPrinter
from mle_tui.tui.live import DONE, PENDING, RUNNING, LiveState
from mle_tui.tui.live_nodes import fractions, node_rows
from cluster_fakes import two_node_events
from tui_fakes import FrozenClock, write_profile


def _profile(tmp_path):
    return load_profile(write_profile(tmp_path))


def test_old_live_line_without_node_decodes() -> None:
    old = b'{"type":"power","t_s":1.5,"per_gpu_w":[300.0],"total_w":300.0}'
    e = decode_event(old)
    assert isinstance(e, PowerSample) and e.node is None
    assert decode_event(encode_event(msgspec.structs.replace(e, node="w1"))).node == "w1"


def test_live_state_keeps_each_node_apart(tmp_path) -> None:
    profile = _profile(tmp_path)
    keys = [c.key() for c in profile.configs()]
    live = LiveState(now_s=FrozenClock())
    live.apply_all(two_node_events(profile))
    assert live.nodes.order == ["w1", "w2"] and live.nodes.selected == "w1"
    # The selected node's configuration and charts: w1's second configuration only.
    assert live.current == keys[2] and live.config_started.node == "w1"
    t, v = live.power.arrays()
    assert len(t) == 60 and min(v[0]) > 550.0  # w1 ran 600 ± 20 W; w2's 300 W never mixed in
    assert live.progress.done == live.progress.total // 4
    assert [live.rows[k].status for k in keys[:4]] == [DONE, RUNNING, RUNNING, PENDING]
    rows = {r["node"]: r for r in node_rows(live)}
    assert rows["w1"]["label"] == profile.configs()[2].label() and rows["w1"]["gpus"] == [0]
    assert rows["w2"]["label"] == profile.configs()[1].label() and rows["w2"]["gpus"] == [1]
    assert 250.0 < rows["w2"]["total_w"] < 350.0 < 550.0 < rows["w1"]["total_w"]
    assert fractions(live) == {keys[2]: 0.25, keys[1]: 0.625}
    # Node-local state is untouched by reading it, and n selects w2: its configuration, its charts.
    assert live.current == keys[2] and live.nodes.selected == "w1"
    live.nodes.cycle(live)
    assert live.nodes.selected == "w2" and live.current == keys[1]
    t, v = live.power.arrays()
    assert len(t) == 260 and max(v[0]) < 350.0
    live.nodes.cycle(live)
    assert live.nodes.selected == "w1" and live.current == keys[2]
    # The sweep stops: the configurations running on both nodes are pending again.
    live.apply(RunFinished(completed=1, failed=0, invalid=0, stopped=True))
    assert [live.rows[k].status for k in keys[:3]] == [DONE, PENDING, PENDING]
    assert all(r["label"] is None for r in node_rows(live))


def test_single_host_path_is_unchanged(tmp_path) -> None:
    """One node's events with and without the node field fold into the same state."""
    profile = _profile(tmp_path)
    w1 = [e for e in two_node_events(profile) if getattr(e, "node", "w1") == "w1"]
    plain = [msgspec.structs.replace(e, node=None) if hasattr(e, "node") else e for e in w1]
    a, b = LiveState(now_s=FrozenClock()), LiveState(now_s=FrozenClock())
    a.apply_all(plain)
    b.apply_all(w1)
    assert not a.nodes and b.nodes.order == ["w1"]
    assert (a.current, a.progress.done, a.total) == (b.current, b.progress.done, b.total)
    assert [r.status for r in a.rows.values()] == [r.status for r in b.rows.values()]
    ta, va = a.power.arrays()
    tb, vb = b.power.arrays()
    assert np.array_equal(ta, tb) and np.array_equal(np.asarray(va), np.asarray(vb), equal_nan=True)
    assert len(a.batch) == len(b.batch)


def test_requeued_configuration_leaves_the_lost_node(tmp_path) -> None:
    profile = _profile(tmp_path)
    events = two_node_events(profile)
    live = LiveState(now_s=FrozenClock())
    live.apply_all(events)
    # w2's configuration starts again on w1 (w2 was lost): w2 runs nothing any more.
    again = next(e for e in events if getattr(e, "key", None) == profile.configs()[1].key())
    live.apply(msgspec.structs.replace(again, node="w1"))
    rows = {r["node"]: r for r in node_rows(live)}
    assert rows["w2"]["label"] is None and rows["w1"]["label"] == profile.configs()[1].label()


def test_headless_counter_does_not_repeat(tmp_path) -> None:
    """Two nodes start configurations 1 and 2, then finish them: each finished line names its own."""
    profile = _profile(tmp_path)
    cfgs = profile.configs()
    events = [e for e in two_node_events(profile) if not isinstance(e, ConfigFinished)]
    start = [e for e in events if type(e).__name__ == "ConfigStarted"][:2]
    out = io.StringIO()
    p = ProgressPrinter(out, tty=False, clock=FrozenClock())
    p(events[0])
    p(start[0])
    p(start[1])
    for e in events[3:]:
        if type(e).__name__ == "ConfigStarted":
            break
        p(e)
    for i, node in ((1, "w2"), (0, "w1")):
        p(ConfigFinished(key=cfgs[i].key(), status="ok", reasons=[], energy_per_request_j=1.0,
                         latency_value_s=None, record_path="", node=node))
    lines = out.getvalue().splitlines()[1:]
    assert lines[0].startswith(f"[2/{len(cfgs)}] {cfgs[1].label()}: ok") and "on w2" in lines[0]
    assert lines[1].startswith(f"[1/{len(cfgs)}] {cfgs[0].label()}: ok") and "on w1" in lines[1]


def test_headless_eta_counts_both_nodes(tmp_path) -> None:
    profile = _profile(tmp_path)
    clock = FrozenClock()
    p = ProgressPrinter(io.StringIO(), tty=False, clock=clock)
    events = two_node_events(profile)
    for e in events[:events.index(next(e for e in events if isinstance(e, ConfigFinished)))]:
        p(e)
    # w1 has done all of its requests, w2 half: 1.5 configurations of work done.
    assert abs(p._fraction_done() - 1.5) < 1e-9
    clock.t += 30.0
    assert abs(p.eta_s() - 30.0 / 1.5 * (len(profile.configs()) - 1.5)) < 1e-6
    assert p.status_line().startswith("w2 +1 [2/")


def test_eta_while_draining_is_the_longest_node_remainder(tmp_path) -> None:
    """f (finish then stop) on a cluster: the queue no longer counts, and the nodes finish what
    they run side by side: the ETA is the longest of their remainders, not their sum."""
    profile = _profile(tmp_path)
    keys = [c.key() for c in profile.configs()]
    clock = FrozenClock()
    live = LiveState(now_s=clock)
    for e in two_node_events(profile):
        clock.t += 0.05  # wall time passes as events arrive
        live.apply(e)
    before = live.eta_s()
    live.draining = True
    after = live.eta_s()
    assert before is not None and after is not None and 0 < after < before
    lefts = []
    for _ in live.nodes.each(live):  # each node's own remainder, by its progress
        frac = live.current_fraction()
        span = clock.t - live._config_wall_start_s
        lefts.append(span * (1 - frac) / frac)
    assert after == max(lefts) and after < sum(lefts)
    live.rows[keys[3]].status = DONE  # the queue no longer matters
    assert live.eta_s() == after
