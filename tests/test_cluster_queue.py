"""The cluster queue without Ray: free nodes get the server group with the most work left
(longest first; ties in profile order), a node keeps its server's next configuration (the
promise), and what a free node would start next can be read without changing the queue."""

from __future__ import annotations

from mle_tui.core.cluster.nodes import Node
from mle_tui.core.cluster.queue import ConfigQueue, ServerGroups, config_work, next_for, upcoming
from mle_tui.core.dataset_types import Request
from mle_tui.core.profile import decode_profile
from mle_tui.core.sweep_prep import requests_for


def _profile(mns: str, per_seq: int = 4, power: str = "700, 400"):  # noqa: ANN202
    return decode_profile(f"""
name = "lpt"
task = "chat"
runtime = "vllm"
[model]
id = "m"
[dataset]
name = "synthetic"
num_requests = 8
requests_per_seq = {per_seq}
[sweep]
max_num_seqs = [{mns}]
power_limit_w = [{power}]
""", "lpt.toml")


def _take(nodes: list[Node], node: Node, queue: ConfigQueue, group) -> tuple:  # noqa: ANN001
    """``node`` takes its next configuration (as the driver does); (B, W, promised B or None)."""
    i, cfg, nxt = next_for(nodes, node, queue, group)
    node.job = (None, i, cfg, 0.0)
    return cfg.batch, cfg.power_limit_w, None if nxt is None else (nxt.batch, nxt.power_limit_w)


def test_work_is_the_configurations_request_count() -> None:
    profile = _profile("16, 96")
    base = [Request(id=i, prompt="p", input_tokens=4, output_tokens=4) for i in range(8)]
    work = config_work(profile, len(base))
    for cfg in profile.configs():
        assert work(cfg) == len(requests_for(profile, base, cfg))
    assert [work(c) for c in profile.configs()] == [64, 64, 384, 384]
    flat = _profile("16, 96", per_seq=0)  # no requests_per_seq: every configuration the same
    assert {config_work(flat, 8)(c) for c in flat.configs()} == {8}


def test_free_nodes_get_the_group_with_most_work_first_and_keep_their_promise() -> None:
    # Profile order (B ascending, then W) 32, 64, 128; work 2x128, 2x256, 2x512 requests:
    # 128 first, then 64, then 32.
    profile = _profile("32, 64, 128")
    group = ServerGroups(profile)
    queue = ConfigQueue(enumerate(profile.configs()), group, config_work(profile, 8))
    a, b = Node("a", "ida", 1, None), Node("b", "idb", 1, None)
    nodes = [a, b]
    assert _take(nodes, a, queue, group) == (128, 400, (128, 700))
    assert _take(nodes, b, queue, group) == (64, 400, (64, 700))
    assert upcoming(nodes, b, queue, group)[1] is False  # b's promise: its server goes on
    # b finishes first: it keeps its server's next configuration, whatever else is queued.
    b.job = None
    assert _take(nodes, b, queue, group) == (64, 700, None)
    b.job = None
    cfg, new_server = upcoming(nodes, b, queue, group)
    assert (cfg.batch, new_server) == (32, True)
    assert len(queue) == 2  # upcoming changed nothing
    assert _take(nodes, b, queue, group) == (32, 400, (32, 700))
    a.job = None
    assert _take(nodes, a, queue, group) == (128, 700, None)
    a.job = None
    assert upcoming(nodes, a, queue, group) is None and not queue


def test_ties_keep_profile_order_and_counts_weigh_in() -> None:
    profile = _profile("32, 64, 128", per_seq=0)  # every configuration 8 requests: equal groups
    group = ServerGroups(profile)
    nodes = [Node(n, n, 1, None) for n in "abc"]
    queue = ConfigQueue(enumerate(profile.configs()), group, config_work(profile, 8))
    assert [_take(nodes, n, queue, group)[0] for n in nodes] == [32, 64, 128]
    # One configuration of B = 32 already done (resume): 64 and 128 have more left, in profile order.
    nodes = [Node(n, n, 1, None) for n in "abc"]
    items = [(i, c) for i, c in enumerate(profile.configs()) if (c.batch, c.power_limit_w) != (32, 700)]
    queue = ConfigQueue(items, group, config_work(profile, 8))
    assert [_take(nodes, n, queue, group)[0] for n in nodes] == [64, 128, 32]


def test_all_groups_taken_a_free_node_opens_the_biggest_again() -> None:
    profile = _profile("32, 128", power="700, 600, 500, 400")  # groups of 4 configurations
    group = ServerGroups(profile)
    queue = ConfigQueue(enumerate(profile.configs()), group, config_work(profile, 8))
    a, b, c = (Node(n, n, 1, None) for n in "abc")
    nodes = [a, b, c]
    assert _take(nodes, a, queue, group)[0] == 128
    assert _take(nodes, b, queue, group)[0] == 32
    cfg, new_server = upcoming(nodes, c, queue, group)
    assert (cfg.batch, new_server) == (128, True)  # a second server of the biggest group
    assert _take(nodes, c, queue, group)[0] == 128


def test_diffusion_keeps_profile_order() -> None:
    profile = decode_profile("""
name = "img"
task = "text-to-image"
runtime = "diffusers"
[model]
id = "m"
[dataset]
name = "synthetic"
num_requests = 4
[sweep]
batch_size = [1, 4, 2]
num_inference_steps = [4]
power_limit_w = [700, 400]
""", "img.toml")
    group = ServerGroups(profile)
    queue = ConfigQueue(enumerate(profile.configs()), group, config_work(profile, 4))
    node = Node("a", "a", 1, None)
    order = []
    while queue:
        i, cfg, nxt = next_for([node], node, queue, group)
        assert nxt is None
        order.append(i)
    assert order == list(range(len(profile.configs())))
