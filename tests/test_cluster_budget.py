"""tests/gpu/ray_two_gpu.py --budget-s without Ray or GPUs: the listener drains the sweep when
the next configuration a node would start cannot end within the budget (the longest one seen
without its server start, plus a server start when it needs a new server), and only then."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

from mle_tui.core.config import Config
from mle_tui.core.events import ConfigFinished, ConfigStarted, LogLine

_spec = importlib.util.spec_from_file_location("ray_two_gpu", Path(__file__).parent / "gpu" / "ray_two_gpu.py")
ray_two_gpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ray_two_gpu)  # type: ignore[union-attr]


class _Runner:
    def __init__(self) -> None:
        self.next: dict[str, tuple[Config, bool] | None] = {}
        self.drains = 0

    def next_start(self, node: str) -> tuple[Config, bool] | None:
        return self.next.get(node)

    def request_drain(self) -> None:
        self.drains += 1


def _budget(budget_s: float = 540.0) -> tuple:
    now = [0.0]
    b = ray_two_gpu.BudgetDrain(budget_s, 120.0, 0.0, clock=lambda: now[0], out=io.StringIO())
    b.runner = runner = _Runner()
    return b, runner, now


def _started(node: str, key: str = "k") -> ConfigStarted:
    return ConfigStarted(key=key, index=0, total=4, config=Config(max_num_seqs=8), label=key, num_requests=1, node=node)


def _finished(node: str, key: str = "k") -> ConfigFinished:
    return ConfigFinished(key=key, status="ok", reasons=[], energy_per_request_j=1.0, latency_value_s=0.1,
                          record_path="", node=node)


def test_default_server_start_before_one_is_seen() -> None:
    b, runner, now = _budget()
    runner.next["a"] = (Config(max_num_seqs=16, power_limit_w=400), True)
    b(_started("a"))
    now[0] = 300.0  # 300 s run, no server start seen: the next needs 300 + 120 > 240 left
    b(_finished("a"))
    assert runner.drains == 1 and b.drained
    assert "draining for the budget: node a would start mns16-tp1-pl400" in b.out.getvalue()


def test_same_server_needs_no_start_and_each_node_is_timed_apart() -> None:
    b, runner, now = _budget()
    b(_started("a"))
    now[0] = 50.0
    b(_started("b"))
    b(LogLine(line="mle-tui: vLLM server ready after 89.0 s", node="a"))  # a paid 50 s (its own clock)
    now[0] = 150.0
    b(LogLine(line="mle-tui: vLLM server ready after 99.0 s", node="b"))  # b paid 100 s: the longest
    now[0] = 200.0
    runner.next["a"] = (Config(max_num_seqs=8, power_limit_w=700), False)  # a's promise
    b(_finished("a"))  # a: 200 s, 50 of them its server start: slowest 150
    assert b.slowest_s == 150.0 and b.start_s == 100.0 and runner.drains == 0
    b(_started("a"))
    now[0] = 340.0
    runner.next["b"] = (Config(max_num_seqs=32), True)  # b: 290 - 100 = 190; 340 + 190 + 100 > 540
    b(_finished("b"))
    assert runner.drains == 1
    now[0] = 500.0
    b(_finished("a"))  # already drained: not asked again
    assert runner.drains == 1


def test_fits_no_drain_and_nothing_left_no_drain() -> None:
    b, runner, now = _budget()
    b(_started("a"))
    now[0] = 100.0
    runner.next["a"] = (Config(max_num_seqs=8), False)
    b(_finished("a"))  # 100 + 100 <= 540
    b(_started("a"))
    now[0] = 530.0
    runner.next["a"] = None  # nothing left for this node
    b(_finished("a"))
    assert runner.drains == 0 and not b.drained
