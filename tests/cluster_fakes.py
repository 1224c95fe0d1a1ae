"""A fake two-node cluster event stream (what ``ClusterRunner`` forwards: events carrying their
node, two nodes' samples interleaved) and a runner double that emits it for the app. Shapes
only, deterministic: node w1 draws about 550 W, node w2 about 300 W."""

from __future__ import annotations

import math
import threading
from pathlib import Path

from mle_tui.core.events import (
    BatchSampleEvent, ConfigFinished, ConfigStarted, PowerSample, RequestProgress, RunFinished, RunStarted,
)
from mle_tui.core.profile import Profile
from mle_tui.core.runner import RunSummary

#: (node, its GPU index, base power W, running batch) of the fake cluster.
NODES = (("w1", 0, 550.0, 16.0), ("w2", 1, 300.0, 8.0))


def _samples(node: str, gpu: int, base_w: float, running: float, t0: float, n: int) -> list[list]:
    out = []
    for k in range(n):
        t = t0 + 0.1 * k
        w = base_w + 20.0 * math.sin(t / 2.0 + gpu)
        out.append([PowerSample(t_s=t, per_gpu_w=[w], total_w=w, node=node),
                    BatchSampleEvent(t_s=t, running=min(running, t * 4), waiting=2.0, node=node)])
    return out


def two_node_events(profile: Profile, run_dir: str = "/tmp/fake-cluster") -> list:
    """RunStarted; w1 runs configuration 0 to its end then starts 2; w2 runs 1 all along."""
    cfgs = profile.configs()
    n_req = profile.dataset.num_requests * profile.dataset.repeats
    out: list = [RunStarted(run_id="cluster-fake", run_dir=run_dir, configs=[c.key() for c in cfgs], skipped=[],
                            power_source="simulated", simulated=True)]

    def started(i: int, node: str, gpu: int) -> ConfigStarted:
        c = cfgs[i]
        return ConfigStarted(key=c.key(), index=i, total=len(cfgs), config=c, label=c.label(),
                             num_requests=n_req, power_limit_w=[float(c.power_limit_w or 700)],
                             gpu_indices=[gpu], node=node)

    (a, ga, wa, ba), (b, gb, wb, bb) = NODES
    out += [started(0, a, ga), started(1, b, gb)]
    for k, (sa, sb) in enumerate(zip(_samples(a, ga, wa, ba, 0.0, 200), _samples(b, gb, wb, bb, 0.0, 200))):
        out += sa + sb
        if k % 20 == 19:
            out += [RequestProgress(done=(k + 1) * n_req // 200, total=n_req, t_s=0.1 * k, node=a),
                    RequestProgress(done=(k + 1) * n_req // 400, total=n_req, t_s=0.1 * k, node=b)]
    out.append(ConfigFinished(key=cfgs[0].key(), status="ok", reasons=[], energy_per_request_j=812.0,
                              latency_value_s=0.021, record_path="", node=a))
    out.append(started(2, a, ga))
    for k, (sa, sb) in enumerate(zip(_samples(a, ga, wa + 50, ba, 0.0, 60), _samples(b, gb, wb, bb, 20.0, 60))):
        out += sa + sb
    out += [RequestProgress(done=n_req // 4, total=n_req, t_s=6.0, node=a),
            RequestProgress(done=n_req * 5 // 8, total=n_req, t_s=26.0, node=b)]
    return out


class FakeClusterRunner:
    """Runner double (SweepRunner's API) that emits :func:`two_node_events`, then waits until
    stopped (``paused`` is set while it waits) and ends the sweep stopped."""

    def __init__(self, profile: Profile, out_dir: Path, listener=None, profile_path: str | None = None) -> None:
        self.profile, self.out_dir = profile, Path(out_dir)
        self.listener = listener or (lambda e: None)
        self.profile_path = profile_path
        self.paused = threading.Event()
        self._stop = threading.Event()
        #: The keys request_skip was given (None: the running one(s)).
        self.skips: list[str | None] = []

    def configs(self):
        return self.profile.configs()

    def pending(self):
        return self.configs()

    def request_skip(self, key: str | None = None) -> None:
        self.skips.append(key)

    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> RunSummary:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for e in two_node_events(self.profile, str(self.out_dir)):
            self.listener(e)
        self.paused.set()
        self._stop.wait()
        self.listener(RunFinished(completed=1, failed=0, invalid=0, stopped=True))
        return RunSummary(run_dir=str(self.out_dir), completed=1, failed=0, invalid=0, skipped=0, stopped=True)


def cluster_factory():
    made: list[FakeClusterRunner] = []

    def factory(profile, out_dir, listener, profile_path):
        r = FakeClusterRunner(profile, out_dir, listener, profile_path)
        made.append(r)
        return r

    factory.made = made  # type: ignore[attr-defined]
    return factory
