"""Helpers for the Ray cluster tests: a local Ray cluster (head + worker nodes with logical
GPUs, started and stopped by pid, never ``ray stop``), the simulated profile both paths run,
and a runtime that holds one configuration on its first attempt (so a node can be killed in
the middle of it, without timing luck)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mle_tui.core.profile import Profile, decode_profile
from mle_tui.core.runtimes.sim import SimRuntime


def sweep_profile(num: int = 64, mns: str = "8, 16", power: str = "[300, 450, 600, 700]") -> Profile:
    """8 configurations of the sim runtime on a virtual clock (2 batch sizes x 4 limits)."""
    return decode_profile(f"""
name = "cluster-sim"
task = "chat"
runtime = "sim"
[model]
id = "sim/llama"
weights = "dummy"
[dataset]
name = "synthetic"
num_requests = {num}
repeats = 2
seed = 3
min_prompt_tokens = 32
max_prompt_tokens = 256
min_output_tokens = 32
max_output_tokens = 256
[sweep]
max_num_seqs = [{mns}]
power_limit_w = {power}
[steady_state]
rule = "request-count"
[gpu]
simulated = true
""", "cluster-sim.toml")


class HoldFirstAttempt(SimRuntime):
    """The sim runtime, except that the configuration ``key`` (when its GPUs' limit is set)
    writes ``marker`` (the node's Ray id) and waits until cancelled on its first attempt;
    later attempts (``marker`` exists) run normally."""

    def __init__(self, key: str, marker: str, node_id: bool = True) -> None:
        super().__init__()
        self.key, self.marker, self.node_id = key, marker, node_id

    def run(self, ctx):  # noqa: ANN001, ANN201
        if ctx.config.key() == self.key and not os.path.exists(self.marker):
            node_id = ""
            if self.node_id:
                import ray

                node_id = ray.get_runtime_context().get_node_id()
            Path(self.marker).write_text(json.dumps({"node_id": node_id, "pid": os.getpid()}))
            ctx.cancel.wait()
        return super().run(ctx)


class HoldUntilReleased(SimRuntime):
    """The sim runtime, except that each configuration in ``keys`` (when its GPUs' limit is
    set) writes ``marker_dir/KEY.json`` (its node's Ray id) and waits until the file
    ``release`` exists (or it is cancelled), then runs normally."""

    def __init__(self, keys: list[str], marker_dir: str, release: str) -> None:
        super().__init__()
        self.keys, self.marker_dir, self.release = set(keys), marker_dir, release

    def run(self, ctx):  # noqa: ANN001, ANN201
        if ctx.config.key() in self.keys:
            import ray

            node_id = ray.get_runtime_context().get_node_id()
            Path(self.marker_dir, f"{ctx.config.key()}.json").write_text(json.dumps({"node_id": node_id}))
            while not os.path.exists(self.release) and not ctx.cancel.wait(0.05):
                pass
        return super().run(ctx)
