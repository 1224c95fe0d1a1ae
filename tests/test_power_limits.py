"""Power limits are restored on every exit path: normal, exception, SIGTERM (runner in a
subprocess, fake GPU persisted to a file) and, after SIGKILL, by ``restore_stale``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mle_tui.core.errors import InputError
from mle_tui.core.power.limits import PowerLimitGuard, read_state, restore_stale

FILE_LIMITER = '''
import json, os
from pathlib import Path


class FileLimiter:
    """A fake GPU whose power limits live in a JSON file (so another process can read them)."""

    def __init__(self, path, initial_w=700.0, num_gpus=1, range_w=(200.0, 700.0)):
        self.path = Path(path)
        self.range_w = range_w
        if not self.path.exists():
            self._save({str(i): initial_w for i in range(num_gpus)}, [])

    def _load(self):
        return json.loads(self.path.read_text())

    def _save(self, limits, history):
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"limits": limits, "history": history}))
        os.replace(tmp, self.path)

    def get_limit_w(self, index):
        return float(self._load()["limits"][str(index)])

    def set_limit_w(self, index, limit_w):
        d = self._load()
        d["limits"][str(index)] = float(limit_w)
        d["history"].append([index, float(limit_w)])
        self._save(d["limits"], d["history"])

    def limit_range_w(self, index):
        return self.range_w
'''

ns: dict = {}
exec(FILE_LIMITER, ns)
FileLimiter = ns["FileLimiter"]


def limits(path: Path) -> dict[str, float]:
    return json.loads(path.read_text())["limits"]


def test_guard_sets_reads_back_and_restores(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json", num_gpus=2)
    state = tmp_path / "state" / "power_limits.json"
    run_state = tmp_path / "run" / "power_limits.state"
    with PowerLimitGuard(lim, [0, 1], 300, state_path=state, run_state_path=run_state) as g:
        assert g.enforced_w == [300.0, 300.0] and g.original_w == [700.0, 700.0]
        assert limits(tmp_path / "gpu.json") == {"0": 300.0, "1": 300.0}
        # The originals were on disk before the change, in both places.
        for p in (state, run_state):
            s = read_state(p)
            assert s["original_limits_w"] == {0: 700.0, 1: 700.0} and s["pid"] == os.getpid()
    assert limits(tmp_path / "gpu.json") == {"0": 700.0, "1": 700.0}
    assert not state.exists() and not run_state.exists()


def test_guard_restores_on_exception(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json")
    state = tmp_path / "s.json"
    with pytest.raises(ZeroDivisionError):
        with PowerLimitGuard(lim, [0], 250, state_path=state):
            assert lim.get_limit_w(0) == 250.0
            1 / 0
    assert lim.get_limit_w(0) == 700.0 and not state.exists()


def test_guard_none_changes_nothing(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json", initial_w=650.0)
    state = tmp_path / "s.json"
    with PowerLimitGuard(lim, [0], None, state_path=state) as g:
        assert g.enforced_w == [650.0] and g.original_w == [650.0]
        assert not state.exists()
    assert json.loads((tmp_path / "gpu.json").read_text())["history"] == []


def test_out_of_range_is_input_error_and_nothing_changes(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json")
    state = tmp_path / "s.json"
    with pytest.raises(InputError) as ei:
        with PowerLimitGuard(lim, [0], 150, state_path=state):
            pass
    assert ei.value.field == "sweep.power_limit_w" and "200-700" in ei.value.problem
    assert lim.get_limit_w(0) == 700.0 and not state.exists()


def test_guard_refuses_while_another_live_process_holds_the_state(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json")
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"pid": os.getppid(), "original_limits_w": {"0": 700.0}}))
    with pytest.raises(InputError) as ei:
        with PowerLimitGuard(lim, [0], 300, state_path=state):
            pass
    assert str(os.getppid()) in ei.value.problem
    assert lim.get_limit_w(0) == 700.0
    # restore_stale leaves a live owner's state alone too.
    assert restore_stale(state, lim) == {}
    assert state.exists()


def test_restore_stale_of_dead_process(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json")
    lim.set_limit_w(0, 333.0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"pid": dead.pid, "original_limits_w": {"0": 690.0}}))
    assert restore_stale(state, lim) == {0: 690.0}
    assert lim.get_limit_w(0) == 690.0 and not state.exists()
    assert restore_stale(state, lim) == {}  # nothing left to do


def test_corrupt_state_is_input_error(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    state.write_text("{oops")
    with pytest.raises(InputError) as ei:
        restore_stale(state, FileLimiter(tmp_path / "gpu.json"))
    assert ei.value.source == str(state)


CHILD = '''
import json, os, sys
from pathlib import Path
from mle_tui.core.clock import WallClock
from mle_tui.core.dataset_types import Request
from mle_tui.core.errors import RunFailure
from mle_tui.core.power.simulated import SimulatedPowerSource
from mle_tui.core.profile import decode_profile
from mle_tui.core.runner import SweepRunner
{file_limiter}

GPU, STATE, OUT, READY = map(Path, sys.argv[1:5])


class SlowRuntime:
    """Runs until cancelled (as a server would, its children in their own group)."""

    name = "sim"

    def run(self, ctx):
        READY.write_text(str(os.getpid()))
        while not ctx.cancel.wait(0.05):
            pass
        raise RunFailure("cancelled")

    def kill_children(self):
        (OUT.parent / "killed").write_text("1")


profile = decode_profile("""
name = "t"
task = "chat"
runtime = "sim"
[model]
id = "m"
[dataset]
name = "synthetic"
num_requests = 4
[sweep]
max_num_seqs = [8, 16]
power_limit_w = [300]
[gpu]
simulated = true
""")
clock = WallClock()
runner = SweepRunner(
    profile, OUT, power_source=SimulatedPowerSource(clock, 1), limiter=FileLimiter(GPU),
    runtime=SlowRuntime(), clock_factory=WallClock, limits_state_path=STATE,
    requests=[Request(id=i, input_tokens=8, output_tokens=8) for i in range(4)],
)
summary = runner.run()
print(json.dumps({{"stopped": summary.stopped, "completed": summary.completed, "failed": summary.failed}}))
'''


def _start_child(tmp_path: Path) -> tuple[subprocess.Popen, dict[str, Path]]:
    paths = {"gpu": tmp_path / "gpu.json", "state": tmp_path / "state.json", "out": tmp_path / "run",
             "ready": tmp_path / "ready"}
    FileLimiter(paths["gpu"])  # 700 W
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(file_limiter=textwrap.dedent(FILE_LIMITER)))
    proc = subprocess.Popen([sys.executable, str(script), *(str(paths[k]) for k in ("gpu", "state", "out", "ready"))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not paths["ready"].exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("child never started its configuration")
        time.sleep(0.05)
    return proc, paths


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_runner_restores_limit_on_signal(tmp_path: Path, sig: int) -> None:
    proc, p = _start_child(tmp_path)
    try:
        # Mid-run: the limit is changed and the originals are on disk in both state files.
        assert limits(p["gpu"]) == {"0": 300.0}
        assert read_state(p["state"])["original_limits_w"] == {0: 700.0}
        assert (p["out"] / "power_limits.state").exists()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"stopped": True, "completed": 0, "failed": 0}
    assert limits(p["gpu"]) == {"0": 700.0}
    assert json.loads(p["gpu"].read_text())["history"] == [[0, 300.0], [0, 700.0]]
    assert not p["state"].exists() and not (p["out"] / "power_limits.state").exists()
    # The interrupted configuration has no record: a resume runs it again.
    assert not list((p["out"] / "records").iterdir())
    assert "Traceback" not in err
    assert (tmp_path / "killed").exists()  # the runtime's children were killed at once


def test_restore_stale_after_sigkill(tmp_path: Path) -> None:
    proc, p = _start_child(tmp_path)
    try:
        assert limits(p["gpu"]) == {"0": 300.0}
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Killed outright: the limit is still changed, the state file remembers the original.
    assert limits(p["gpu"]) == {"0": 300.0}
    assert read_state(p["state"])["pid"] == proc.pid
    assert restore_stale(p["state"], FileLimiter(p["gpu"])) == {0: 700.0}
    assert limits(p["gpu"]) == {"0": 700.0} and not p["state"].exists()


def test_next_runner_start_restores_stale_limits(tmp_path: Path) -> None:
    from mle_tui.core.clock import WallClock
    from mle_tui.core.dataset_types import Request
    from mle_tui.core.power.simulated import SimulatedPowerSource
    from mle_tui.core.profile import decode_profile
    from mle_tui.core.runner import SweepRunner

    proc, p = _start_child(tmp_path)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert limits(p["gpu"]) == {"0": 300.0}
    profile = decode_profile(CHILD.split('decode_profile("""')[1].split('""")')[0])
    runner = SweepRunner(profile, p["out"], power_source=SimulatedPowerSource(WallClock(), 1),
                         limiter=FileLimiter(p["gpu"]), runtime=object(), clock_factory=WallClock,  # type: ignore[arg-type]
                         limits_state_path=p["state"], requests=[Request(id=0, output_tokens=2)])
    runner.prepare()
    assert limits(p["gpu"]) == {"0": 700.0}
    assert not p["state"].exists() and not (p["out"] / "power_limits.state").exists()


def test_state_of_another_host_is_left_alone(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json")
    lim.set_limit_w(0, 400.0)
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"pid": 1, "host": "some-other-node", "original_limits_w": {"0": 700.0}}))
    assert restore_stale(state, lim) == {}
    assert lim.get_limit_w(0) == 400.0 and state.exists()


def test_nvml_without_gpu_says_why() -> None:
    from mle_tui.core.clock import VirtualClock
    from mle_tui.core.power.nvml import NvmlLimiter, NvmlPowerSource, NvmlUnavailable

    try:
        NvmlPowerSource(VirtualClock()).close()
    except NvmlUnavailable as exc:
        assert str(exc)
        with pytest.raises(NvmlUnavailable):
            NvmlLimiter()
    else:
        pytest.skip("an NVIDIA GPU is readable here")
