"""Issue 12 on one multi-GPU host: a sweep on one GPU (``--local``), or split over a local Ray
cluster of one raylet per GPU (``--gpus N``: a head without GPUs and N nodes, node i seeing
only GPU i through CUDA_VISIBLE_DEVICES, labelled ``gpu<i>``). Prints the sweep's wall time and
appends it to OUT.wall.jsonl (a resumed sweep adds its next call's time: sum the lines).
The Ray processes are this script's children and are stopped through the cluster object (by
pid), never with ``ray stop``.

    python tests/gpu/ray_two_gpu.py PROFILE OUT --local          # GPU 0 only
    python tests/gpu/ray_two_gpu.py PROFILE OUT --gpus 2         # two Ray nodes, one GPU each
    python tests/gpu/ray_two_gpu.py PROFILE OUT --gpus 2 --budget-s 510 [--server-start-s 120]

--budget-s (Ray only; one GPU: tests/gpu/run_budgeted.py), for machines whose commands are
limited in time: counted from this script's start (the Ray cluster's start included; leave
room for the end: servers stopped, Ray shut down). When a configuration finishes and the next
one its node would start cannot finish within what is left (the longest configuration seen on
any node without its server start, plus the longest server start seen, or --server-start-s
before any, when it needs a new server; a node's next configuration of the same server needs
none), the sweep drains: the running configurations finish and are written, nothing new
starts. Run the same command again to resume the directory.

Exit status: 0 all configurations done, 3 drained for the budget (run again to resume),
1 a configuration failed or the sweep stopped otherwise, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

T_START = time.monotonic()  # the budget counts from here (before the imports below)

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from budget import StartEstimate, log_wall  # noqa: E402
from mle_tui.core.errors import InputError
from mle_tui.core.events import ConfigFinished, ConfigStarted, Event, LogLine
from mle_tui.core.profile import load_profile
from mle_tui.tui.headless import ProgressPrinter


class BudgetDrain:
    """Listener that drains the cluster sweep before a configuration that would not fit in
    ``budget_s`` counted from ``t0`` (see the module's text). ``runner`` (set before the run)
    needs ``next_start(node)`` and ``request_drain()``."""

    def __init__(self, budget_s: float, server_start_s: float, t0: float, *,
                 clock=time.monotonic, out=sys.stderr) -> None:  # noqa: ANN001
        self.budget_s, self.t0 = budget_s, t0
        self.clock, self.out = clock, out
        self.runner = None
        self.estimate = StartEstimate(server_start_s)  # per node
        self.drained = False

    @property
    def slowest_s(self) -> float:
        return self.estimate.slowest_s

    @property
    def start_s(self) -> float | None:
        return self.estimate.start_s

    def _say(self, now: float, text: str) -> None:
        print(f"[{now - self.t0:6.0f} s] {text}", file=self.out, flush=True)

    def __call__(self, e: Event) -> None:
        now = self.clock()
        if isinstance(e, ConfigStarted):
            self.estimate.started(e.node, now)
        elif isinstance(e, LogLine) and "ready after" in e.line:
            self.estimate.ready(e.node, now)
        elif isinstance(e, ConfigFinished) and self.estimate.finished(e.node, now) is not None:
            nxt = None if self.drained else self.runner.next_start(e.node)
            if nxt is None:
                return
            cfg, new_server = nxt
            need = self.estimate.need_s(new_server)
            if now - self.t0 + need > self.budget_s:
                self._say(now, f"draining for the budget: node {e.node} would start {cfg.key()} "
                               f"(needs ~{need:.0f} s, {self.budget_s - (now - self.t0):.0f} s left)")
                self.drained = True
                self.runner.request_drain()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("out")
    ap.add_argument("--local", action="store_true", help="one GPU (GPU 0), no Ray")
    ap.add_argument("--gpus", type=int, default=2, help="Ray nodes, one GPU each (default 2)")
    ap.add_argument("--budget-s", type=float, help="drain before a configuration that would end past this "
                    "(s from this script's start); exit 3 when drained")
    ap.add_argument("--server-start-s", type=float, default=120.0,
                    help="a server start's estimate before one is seen (default 120)")
    args = ap.parse_args()
    if args.local and args.budget_s is not None:
        print("mle-tui: --budget-s: with Ray only (one GPU: tests/gpu/run_budgeted.py)", file=sys.stderr)
        return 2
    try:
        profile = load_profile(args.profile)
    except InputError as exc:
        print(f"mle-tui: {exc.line()}", file=sys.stderr)
        return 2
    printer = ProgressPrinter(sys.stderr)
    budget = BudgetDrain(args.budget_s, args.server_start_s, T_START) if args.budget_s is not None else None

    def listener(e: Event) -> None:
        printer(e)
        if budget is not None:
            budget(e)

    cluster = None
    t0 = time.monotonic()
    try:
        if args.local:
            from mle_tui.core.runner import SweepRunner

            profile = msgspec.structs.replace(profile, gpu=msgspec.structs.replace(profile.gpu, indices=[0]))
            runner = SweepRunner(profile, Path(args.out), profile_path=args.profile, listener=printer)
        else:
            from mle_tui.core.cluster.driver import NODE_LABEL, ClusterRunner
            from mle_tui.core.cluster.ray_env import import_ray

            ray = import_ray()
            from ray.cluster_utils import Cluster

            cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
            before = os.environ.get("CUDA_VISIBLE_DEVICES")
            for i in range(args.gpus):  # each raylet reads its GPUs from this when it is added
                os.environ["CUDA_VISIBLE_DEVICES"] = str(i)
                cluster.add_node(num_cpus=4, num_gpus=1, labels={NODE_LABEL: f"gpu{i}"})
            if before is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES")
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = before
            ray.init(address=cluster.address, log_to_driver=False)
            cluster.wait_for_nodes()
            print(f"ray cluster up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
            t0 = time.monotonic()
            runner = ClusterRunner(profile, Path(args.out), profile_path=args.profile, listener=listener)
            if budget is not None:
                budget.runner = runner
        summary = runner.run()
    except InputError as exc:
        print(f"mle-tui: {exc.line()}", file=sys.stderr)
        return 2
    finally:
        wall_s = time.monotonic() - t0
        if cluster is not None:
            import ray

            ray.shutdown()
            cluster.shutdown()
    extra = {"drained_for_budget": budget.drained} if budget is not None else {}
    line = log_wall(args.out, "local" if args.local else f"ray x{args.gpus}", wall_s, summary, **extra)
    print(json.dumps(line))
    if budget is not None and budget.drained and summary.stopped:
        return 3
    return 0 if not (summary.failed or summary.stopped) else 1


if __name__ == "__main__":
    sys.exit(main())
