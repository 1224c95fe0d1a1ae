"""Issue 12 on one multi-GPU host: a sweep on one GPU (``--local``), or split over a local Ray
cluster of one raylet per GPU (``--gpus N``: a head without GPUs and N nodes, node i seeing
only GPU i through CUDA_VISIBLE_DEVICES, labelled ``gpu<i>``). Prints the sweep's wall time and
appends it to OUT.wall.jsonl (a resumed sweep adds its next call's time: sum the lines).
The Ray processes are this script's children and are stopped through the cluster object (by
pid), never with ``ray stop``.

    python tests/gpu/ray_two_gpu.py PROFILE OUT --local          # GPU 0 only
    python tests/gpu/ray_two_gpu.py PROFILE OUT --gpus 2         # two Ray nodes, one GPU each
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import msgspec

from mle_tui.core.errors import InputError
from mle_tui.core.profile import load_profile
from mle_tui.tui.headless import ProgressPrinter


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile")
    ap.add_argument("out")
    ap.add_argument("--local", action="store_true", help="one GPU (GPU 0), no Ray")
    ap.add_argument("--gpus", type=int, default=2, help="Ray nodes, one GPU each (default 2)")
    args = ap.parse_args()
    try:
        profile = load_profile(args.profile)
    except InputError as exc:
        print(f"mle-tui: {exc.line()}", file=sys.stderr)
        return 2
    printer = ProgressPrinter(sys.stderr)
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
            runner = ClusterRunner(profile, Path(args.out), profile_path=args.profile, listener=printer)
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
    line = {"mode": "local" if args.local else f"ray x{args.gpus}", "wall_s": round(wall_s, 1),
            "completed": summary.completed, "failed": summary.failed, "stopped": summary.stopped,
            "unix_s": time.time()}
    with open(f"{args.out.rstrip('/')}.wall.jsonl", "a") as fh:
        fh.write(json.dumps(line) + "\n")
    print(json.dumps(line))
    return 0 if not (summary.failed or summary.stopped) else 1


if __name__ == "__main__":
    sys.exit(main())
