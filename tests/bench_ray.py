"""What the Ray cluster driver costs per configuration, and its memory for a large sweep.

Two parts (figures printed, nothing asserted):

- ``real``: a local Ray cluster (head + ``--nodes`` worker nodes with logical GPUs) runs a sim
  sweep of ``--configs`` configurations through :class:`ClusterRunner`; the same sweep runs on
  :class:`SweepRunner` for comparison. Prints wall times and the driver process's CPU time per
  configuration (what limits how many nodes one driver can keep busy: with configurations of
  D seconds, about D / cpu_per_config nodes).
- ``model``: the driver's own loop with ``--model-nodes`` agents (64) that finish at once,
  in-process (Ray's calls replaced by a stand-in, so Ray's RPC cost is not in it), over
  ``--model-configs`` configurations (10,000; the profile checks cap real sweeps at 1,024):
  driver CPU per configuration (scheduling, event forwarding, record writes) and its peak
  Python memory. 64 real raylets do not fit a 2-core box; this is the model of that cluster.

    python tests/bench_ray.py [--part real|model|both] [--nodes 2] [--configs 64]
"""

from __future__ import annotations

import argparse
import itertools
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mle_tui.core.config import Config  # noqa: E402
from mle_tui.core.events import ConfigFinished, ConfigStarted, encode_event  # noqa: E402
from mle_tui.core.records import Hardware, Record  # noqa: E402
from mle_tui.core.store import encode_record  # noqa: E402


def real(nodes: int, configs: int) -> None:
    from cluster_helpers import sweep_profile

    from mle_tui.core.cluster.driver import NODE_LABEL, ClusterRunner
    from mle_tui.core.cluster.ray_env import import_ray
    from mle_tui.core.runner import SweepRunner

    ray = import_ray()
    from ray.cluster_utils import Cluster

    side = max(1, int(configs ** 0.5))
    mns = ", ".join(str(8 + i) for i in range(side))
    limits = "[" + ", ".join(str(300 + 10 * i) for i in range(max(1, configs // side))) + "]"
    profile = sweep_profile(num=32, mns=mns, power=limits)
    n = len(profile.configs())
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        t0, c0 = time.monotonic(), time.process_time()
        SweepRunner(profile, tmp / "local").run()
        local_s, local_cpu = time.monotonic() - t0, time.process_time() - c0
        t0 = time.monotonic()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        for i in range(nodes):
            cluster.add_node(num_cpus=1, num_gpus=1, labels={NODE_LABEL: f"n{i}"})
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        up_s = time.monotonic() - t0
        try:
            runner = ClusterRunner(profile, tmp / "cluster", node_dir_base=str(tmp / "nodes"))
            t0, c0 = time.monotonic(), time.process_time()
            runner.prepare()
            prep_s = time.monotonic() - t0
            t1, c1 = time.monotonic(), time.process_time()
            summary = runner.run()
            run_s, run_cpu = time.monotonic() - t1, time.process_time() - c1
        finally:
            ray.shutdown()
            cluster.shutdown()
        print(f"real: {n} sim configurations, {nodes} worker nodes (cluster up in {up_s:.1f} s)")
        print(f"  single node (SweepRunner): {local_s:.2f} s wall, {1000 * local_cpu / n:.1f} ms CPU per configuration")
        print(f"  cluster: agents started in {prep_s:.1f} s; sweep {run_s:.2f} s wall "
              f"({1000 * run_s / n:.0f} ms per configuration), driver CPU {1000 * run_cpu / n:.1f} ms per "
              f"configuration; {summary.completed} done, {summary.failed} failed")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------ the model


class _Ref:
    def __init__(self, value: object) -> None:
        self.value = value


class _Method:
    def __init__(self, fn) -> None:  # noqa: ANN001
        self.fn = fn

    def remote(self, *a, **k) -> _Ref:  # noqa: ANN002, ANN003
        return _Ref(self.fn(*a, **k))


class _InstantAgent:
    """An agent whose configurations finish at once, with their events and a small record."""

    def __init__(self, name: str, template: Record) -> None:
        self.name, self.template, self.events = name, template, []
        for m in ("poll", "run_config", "stop", "skip", "shutdown"):
            setattr(self, m, _Method(getattr(self, "_" + m)))

    def _poll(self) -> list:
        out, self.events = self.events, []
        return out

    def _run_config(self, cfg: Config, index: int, total: int, nxt: Config | None = None) -> dict:
        key = cfg.key()
        self.events += [(True, encode_event(ConfigStarted(key=key, index=index, total=total, config=cfg,
                                                          label=key, num_requests=1))),
                        (True, encode_event(ConfigFinished(key=key, status="ok", reasons=[], energy_per_request_j=1.0,
                                                           latency_value_s=0.1, record_path="")))]
        rec = Record(**{**{f: getattr(self.template, f) for f in self.template.__struct_fields__},
                        "config_key": key, "config": cfg})
        return {"status": "ok", "files": {f"records/{key}.json": encode_record(rec)}}

    def _stop(self) -> None:
        return None

    def _skip(self, key: str | None = None) -> None:
        return None

    def _shutdown(self) -> bool:
        return True


class _RayStandIn:
    """What the driver's loop calls on ``ray``: every call is done when made."""

    @staticmethod
    def wait(refs, num_returns=1, timeout=None):  # noqa: ANN001, ANN205
        return list(refs), []

    @staticmethod
    def get(ref, timeout=None):  # noqa: ANN001, ANN205
        return ref.value

    @staticmethod
    def kill(handle) -> None:  # noqa: ANN001
        return None


def model(nodes: int, configs: int) -> None:
    from mle_tui.core.cluster.driver import ClusterRunner
    from mle_tui.core.cluster.nodes import Node
    from mle_tui.core.profile import decode_profile

    profile = decode_profile("""
name = "model"
task = "chat"
runtime = "sim"
[model]
id = "sim/llama"
[dataset]
name = "synthetic"
num_requests = 8
[sweep]
max_num_seqs = [8]
[gpu]
simulated = true
""", "model.toml")
    cfgs = [Config(max_num_seqs=b, power_limit_w=w) for b, w in itertools.islice(
        itertools.product(range(1, 10_001), range(200, 701)), configs)]
    template = Record(run_id="model", config_key="", config=cfgs[0], status="ok", task="chat", runtime="sim",
                      model="sim/llama", weights="dummy", hardware=Hardware(power_source="simulated", gpu_names=["g"],
                                                                            gpu_indices=[0], tdp_w=700.0),
                      started_unix_s=0.0, duration_s=1.0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-model-"))
    try:
        runner = ClusterRunner(profile, tmp / "run", requests=[])
        runner._configs = cfgs
        runner._ray = _RayStandIn()
        runner.store.ensure()
        runner.run_id, runner.power_kind = "model", "simulated"
        runner.nodes = [Node(f"n{i}", f"id{i}", 1, _InstantAgent(f"n{i}", template)) for i in range(nodes)]
        for n in runner.nodes:
            n.info = {"kind": "simulated", "simulated": True, "message": "", "notes": [], "gpus": [], "host": "h"}
        runner._restore_before = []
        runner._write_manifest(finished=False)
        tracemalloc.start()
        t0, c0 = time.monotonic(), time.process_time()
        summary = runner._run()
        wall_s, cpu_s = time.monotonic() - t0, time.process_time() - c0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"model: {len(cfgs)} configurations on {nodes} instant agents (Ray's RPC cost not included)")
        print(f"  driver: {1000 * cpu_s / len(cfgs):.2f} ms CPU and {1000 * wall_s / len(cfgs):.2f} ms wall per "
              f"configuration (records written, events forwarded, live.jsonl); {summary.completed} done")
        print(f"  driver memory: peak {peak / 2**20:.1f} MiB of Python objects during the sweep; "
              f"process max RSS {rss_mib:.0f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("real", "model", "both"), default="both")
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--configs", type=int, default=64)
    ap.add_argument("--model-nodes", type=int, default=64)
    ap.add_argument("--model-configs", type=int, default=10_000)
    args = ap.parse_args()
    if args.part in ("model", "both"):
        model(args.model_nodes, args.model_configs)
    if args.part in ("real", "both"):
        real(args.nodes, args.configs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
