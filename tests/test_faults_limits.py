"""Fault injection: two sweeps (real processes) on the same GPU and on different GPUs of one
host, a file-backed fake GPU per index, randomised rounds with normal exit, SIGTERM and SIGKILL
at random moments. After every round (and the stale restore the next start does) every GPU is
at its original limit, no state file is left, and no holder ever saw a limit it did not set.

Deterministic: the choices come from a seeded RNG; every wait is for an event (a file, an exit)
with a generous hang guard, and the assertions hold wherever a kill lands."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mle_tui.core.power.limits import restore_stale_report

ORIGINAL_W = 700.0
ROUNDS = 60

WORKER = r'''
import json, os, sys, time
from pathlib import Path
from mle_tui.core.errors import InputError
from mle_tui.core.power.limits import PowerLimitGuard


class DirLimiter:
    """One JSON file per GPU (so sweeps on different GPUs never share a file)."""

    def __init__(self, d):
        self.d = Path(d)

    def _p(self, i):
        return self.d / f"gpu{i}.json"

    def get_limit_w(self, i):
        return float(json.loads(self._p(i).read_text())["limit_w"])

    def set_limit_w(self, i, w):
        tmp = self.d / f".gpu{i}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"limit_w": float(w)}))
        os.replace(tmp, self._p(i))

    def limit_range_w(self, i):
        return (200.0, 700.0)


gpu_dir, state_dir, tag_dir, indices, limit = sys.argv[1:6]
tag = Path(tag_dir)
indices = [int(x) for x in indices.split(",")]
lim = DirLimiter(gpu_dir)
try:
    with PowerLimitGuard(lim, indices, float(limit), state_dir=Path(state_dir), run_dir=str(tag),
                         handle_signals=True):
        (tag / "holding").write_text(str(os.getpid()))
        while not (tag / "release").exists():
            for i in indices:
                seen = lim.get_limit_w(i)
                if abs(seen - float(limit)) > 1.0:
                    (tag / "violation").write_text(f"GPU {i}: {seen} W while holding {limit} W")
            time.sleep(0.005)
except InputError as exc:
    (tag / "refused").write_text(exc.line())
    sys.exit(3)
'''


def _wait(pred, proc: subprocess.Popen, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"hang guard: {what}")
        time.sleep(0.005)


class Side:
    def __init__(self, root: Path, name: str, script: Path, gpus: Path, state: Path,
                 indices: list[int], limit_w: int) -> None:
        self.tag = root / name
        self.tag.mkdir()
        self.indices, self.limit_w = indices, limit_w
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(gpus), str(state), str(self.tag),
             ",".join(map(str, indices)), str(limit_w)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def settled(self) -> bool:
        return (self.tag / "holding").exists() or self.proc.poll() is not None

    def end(self, how: str) -> None:
        if how == "release":
            (self.tag / "release").write_text("1")
        elif self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
        self.proc.communicate(timeout=60)


def _limits(gpus: Path, n: int) -> list[float]:
    return [json.loads((gpus / f"gpu{i}.json").read_text())["limit_w"] for i in range(n)]


@pytest.mark.slow
def test_two_sweeps_randomised_rounds_never_leave_a_wrong_limit(tmp_path: Path) -> None:
    rng = random.Random(20261129)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    counts = {"same_gpu_refused": 0, "side_by_side": 0, "killed_holding": 0, "killed_early": 0}
    for rnd in range(ROUNDS):
        root = tmp_path / f"r{rnd}"
        gpus, state = root / "gpus", root / "state"
        gpus.mkdir(parents=True)
        for i in range(2):
            (gpus / f"gpu{i}.json").write_text(json.dumps({"limit_w": ORIGINAL_W}))
        same = rng.random() < 0.5
        a_idx = [0]
        b_idx = [0] if same else [1]
        if rng.random() < 0.25:  # a TP=2 sweep overlapping the other
            a_idx = [0, 1]
        a = Side(root, "a", script, gpus, state, a_idx, rng.choice([250, 300, 400, 500]))
        early_kill = rng.random() < 0.2
        if early_kill:
            # SIGKILL A at a random moment of its start (before, during or after the guard's enter).
            time.sleep(rng.uniform(0.0, 0.15))
            a.end("kill")
            counts["killed_early"] += 1
        else:
            _wait(a.settled, a.proc, "A never took its GPUs")
            assert (a.tag / "holding").exists(), a.proc.stderr.read() if a.proc.stderr else ""
        b = Side(root, "b", script, gpus, state, b_idx, rng.choice([260, 350, 450]))
        _wait(b.settled, b.proc, "B neither held nor exited")
        overlap = bool(set(a_idx) & set(b_idx))
        if not early_kill and overlap:
            # Refused up front, naming A; nothing of A's changed.
            assert b.proc.wait(timeout=60) == 3
            line = (b.tag / "refused").read_text()
            assert "gpu.indices" in line and f"pid {a.proc.pid}" in line and str(a.tag) in line
            counts["same_gpu_refused"] += 1
        else:
            assert (b.tag / "holding").exists(), b.proc.stderr.read() if b.proc.stderr else ""
            if not early_kill:
                counts["side_by_side"] += 1
        order = [a, b] if rng.random() < 0.5 else [b, a]
        for side in order:
            how = rng.choice(["release", "term", "kill"])
            if how == "kill" and (side.tag / "holding").exists():
                counts["killed_holding"] += 1
            side.end(how)
        for side in (a, b):
            assert not (side.tag / "violation").exists(), (side.tag / "violation").read_text()
        # The next start restores what a killed sweep left: nothing may be lost or wrong.
        from tests_limiter_shim import DirLimiter  # noqa: E402 - the worker's limiter, in-process

        rep = restore_stale_report(state, DirLimiter(gpus))
        assert rep.problems == [], rep.problems
        assert _limits(gpus, 2) == [ORIGINAL_W, ORIGINAL_W], (rnd, counts)
        assert not list(state.glob("power-limit-*.json")), list(state.iterdir())
    # Every kind of round happened (the seed is fixed, so this is deterministic).
    print(counts)
    assert all(v >= 3 for v in counts.values()), counts


@pytest.fixture(autouse=True)
def _shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the worker's DirLimiter importable in-process as ``tests_limiter_shim``."""
    mod = tmp_path / "shim"
    mod.mkdir()
    (mod / "tests_limiter_shim.py").write_text(WORKER.split("gpu_dir, state_dir")[0])
    monkeypatch.syspath_prepend(str(mod))
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
