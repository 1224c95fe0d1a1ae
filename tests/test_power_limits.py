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
from mle_tui.core.power.limits import PowerLimitGuard, read_state, restore_stale, restore_stale_report

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


def state_file(d: Path, index: int = 0) -> Path:
    return d / f"power-limit-gpu-{index}.json"


def test_guard_sets_reads_back_and_restores(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json", num_gpus=2)
    sd = tmp_path / "state"
    with PowerLimitGuard(lim, [0, 1], 300, state_dir=sd, run_dir="/runs/x") as g:
        assert g.enforced_w == [300.0, 300.0] and g.original_w == [700.0, 700.0]
        assert limits(tmp_path / "gpu.json") == {"0": 300.0, "1": 300.0}
        # The originals were on disk (one file per GPU, 0600 in a 0700 dir) before the change.
        for i in (0, 1):
            s = read_state(state_file(sd, i))
            assert s["original_limit_w"] == 700.0 and s["pid"] == os.getpid() and s["index"] == i
            assert s["run_dir"] == "/runs/x"
            assert state_file(sd, i).stat().st_mode & 0o777 == 0o600
        assert sd.stat().st_mode & 0o777 == 0o700
    assert limits(tmp_path / "gpu.json") == {"0": 700.0, "1": 700.0}
    assert not list(sd.glob("*.json"))
    assert sorted(p.name for p in sd.glob("*.lock")) == ["power-limit-gpu-0.lock", "power-limit-gpu-1.lock"]


def test_guard_restores_on_exception(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json")
    with pytest.raises(ZeroDivisionError):
        with PowerLimitGuard(lim, [0], 250, state_dir=tmp_path):
            assert lim.get_limit_w(0) == 250.0
            1 / 0
    assert lim.get_limit_w(0) == 700.0 and not state_file(tmp_path).exists()


def test_guard_none_changes_nothing_but_still_owns_the_gpu(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json", initial_w=650.0)
    with PowerLimitGuard(lim, [0], None, state_dir=tmp_path) as g:
        assert g.enforced_w == [650.0] and g.original_w == [650.0]
        assert not state_file(tmp_path).exists()
        with pytest.raises(InputError) as ei:
            with PowerLimitGuard(lim, [0], 300, state_dir=tmp_path):
                pass
        assert ei.value.field == "gpu.indices" and f"pid {os.getpid()}" in ei.value.problem
    assert json.loads((tmp_path / "gpu.json").read_text())["history"] == []


def test_out_of_range_is_input_error_and_nothing_changes(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json")
    with pytest.raises(InputError) as ei:
        with PowerLimitGuard(lim, [0], 150, state_dir=tmp_path):
            pass
    assert ei.value.field == "sweep.power_limit_w" and "200-700" in ei.value.problem
    assert lim.get_limit_w(0) == 700.0 and not state_file(tmp_path).exists()
    with PowerLimitGuard(lim, [0], 300, state_dir=tmp_path):  # the lock was released
        pass


def test_second_guard_on_the_same_gpu_is_refused_naming_the_holder(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json", num_gpus=2)
    with PowerLimitGuard(lim, [0], 300, state_dir=tmp_path, run_dir="/runs/a"):
        with pytest.raises(InputError) as ei:
            with PowerLimitGuard(lim, [1, 0], 400, state_dir=tmp_path, source="b.toml"):
                pass
        line = ei.value.line()
        assert line.startswith("b.toml: gpu.indices: GPU 0 (gpu-0)") and "/runs/a" in line
        assert f"pid {os.getpid()}" in line
        assert lim.get_limit_w(0) == 300.0 and lim.get_limit_w(1) == 700.0  # nothing touched
        # restore_stale leaves a live owner's state alone.
        assert restore_stale(tmp_path, lim) == {}
        assert state_file(tmp_path).exists()
        # Another GPU of the same host is free.
        with PowerLimitGuard(lim, [1], 400, state_dir=tmp_path) as g:
            assert g.enforced_w == [400.0]
    assert limits(tmp_path / "gpu.json") == {"0": 700.0, "1": 700.0}


def _dead_pid() -> int:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def test_restore_stale_of_dead_process(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json")
    lim.set_limit_w(0, 333.0)
    state_file(tmp_path).write_text(json.dumps({"pid": _dead_pid(), "index": 0, "gpu_id": "gpu-0",
                                                "original_limit_w": 690.0}))
    assert restore_stale(tmp_path, lim) == {0: 690.0}
    assert lim.get_limit_w(0) == 690.0 and not state_file(tmp_path).exists()
    assert restore_stale(tmp_path, lim) == {}  # nothing left to do


def test_guard_restores_a_dead_owners_state_before_reading_the_original(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json")
    lim.set_limit_w(0, 333.0)  # left by a killed sweep
    state_file(tmp_path).write_text(json.dumps({"index": 0, "original_limit_w": 700.0}))
    with PowerLimitGuard(lim, [0], 400, state_dir=tmp_path) as g:
        assert g.original_w == [700.0] and "700" in g.notes[0]
    assert lim.get_limit_w(0) == 700.0


@pytest.mark.parametrize("content", ["", "{oops", "[]", '{"original_limit_w": NaN, "index": 0}',
                                     '{"original_limit_w": "700", "index": 0}',
                                     '{"original_limit_w": -1, "index": 0}',
                                     '{"original_limit_w": 700, "index": 0, "gpu_id": "GPU-other"}',
                                     '{"original_limit_w": 700, "index": 0, "host": "other-node"}'])
def test_unusable_state_never_blocks_and_is_reported(tmp_path: Path, content: str) -> None:
    lim = FileLimiter(tmp_path / "gpu.json", num_gpus=2)
    lim.set_limit_w(0, 333.0)
    lim.set_limit_w(1, 444.0)
    state_file(tmp_path, 0).write_text(content)
    state_file(tmp_path, 1).write_text(json.dumps({"index": 1, "original_limit_w": 650.0}))
    rep = restore_stale_report(tmp_path, lim)
    assert rep.restored == {1: 650.0} and lim.get_limit_w(1) == 650.0  # the good one: restored
    assert len(rep.problems) == 1 and "GPU 0" in rep.problems[0] and "nvidia-smi" in rep.problems[0]
    assert not state_file(tmp_path, 0).exists()
    assert len(list(tmp_path.glob("power-limit-gpu-0.json.bad-*"))) == 1  # kept for a person
    with pytest.raises(RuntimeError):  # the raising form says so too, after restoring
        state_file(tmp_path, 0).write_text(content)
        restore_stale(tmp_path, lim)
    # A limiter that knows the default limit puts the GPU there.
    lim.default_limit_w = lambda index: 700.0
    state_file(tmp_path, 0).write_text(content)
    rep = restore_stale_report(tmp_path, lim)
    assert rep.restored == {0: 700.0} and lim.get_limit_w(0) == 700.0 and "default" in rep.problems[0]
    with PowerLimitGuard(lim, [0], 300, state_dir=tmp_path):  # never blocks a new sweep
        pass


def test_legacy_per_host_file_is_migrated(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json", num_gpus=2)
    lim.set_limit_w(0, 333.0)
    lim.set_limit_w(1, 333.0)
    legacy = tmp_path / "power_limits.json"
    legacy.write_text(json.dumps({"version": 1, "pid": _dead_pid(), "original_limits_w": {"0": 700.0, "1": 650.0}}))
    # GPU 1 is owned by a live sweep now: restore GPU 0, keep GPU 1 in the file, say so.
    with PowerLimitGuard(lim, [1], None, state_dir=tmp_path):
        rep = restore_stale_report(legacy, lim)
    assert rep.restored == {0: 700.0} and "GPU 1 is held by" in rep.problems[0]
    assert read_state(legacy)["original_limits_w"] == {1: 650.0}
    assert restore_stale(legacy, lim) == {1: 650.0}
    assert not legacy.exists() and limits(tmp_path / "gpu.json") == {"0": 700.0, "1": 650.0}


def test_corrupt_legacy_file_is_reported_not_fatal(tmp_path: Path) -> None:
    legacy = tmp_path / "s.json"
    legacy.write_text("{oops")
    rep = restore_stale_report(legacy, FileLimiter(tmp_path / "gpu.json"))
    assert rep.restored == {} and str(legacy) in rep.problems[0]
    assert (tmp_path / "s.json.bad").exists()


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
NUM_GPUS = int(sys.argv[5])


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
tensor_parallel = [%d]
[gpu]
simulated = true
""" % NUM_GPUS)
clock = WallClock()
runner = SweepRunner(
    profile, OUT, power_source=SimulatedPowerSource(clock, NUM_GPUS), limiter=FileLimiter(GPU, num_gpus=NUM_GPUS),
    runtime=SlowRuntime(), clock_factory=WallClock, limits_state_path=STATE,
    requests=[Request(id=i, input_tokens=8, output_tokens=8) for i in range(4)],
)
summary = runner.run()
print(json.dumps({{"stopped": summary.stopped, "completed": summary.completed, "failed": summary.failed}}))
'''


def _start_child(tmp_path: Path, num_gpus: int = 1) -> tuple[subprocess.Popen, dict[str, Path]]:
    paths = {"gpu": tmp_path / "gpu.json", "state": tmp_path / "state.json", "out": tmp_path / "run",
             "ready": tmp_path / "ready"}
    FileLimiter(paths["gpu"], num_gpus=num_gpus)  # 700 W
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(file_limiter=textwrap.dedent(FILE_LIMITER)))
    proc = subprocess.Popen([sys.executable, str(script), *(str(paths[k]) for k in ("gpu", "state", "out", "ready")),
                             str(num_gpus)],
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
        assert read_state(state_file(tmp_path))["original_limit_w"] == 700.0
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"stopped": True, "completed": 0, "failed": 0}
    assert limits(p["gpu"]) == {"0": 700.0}
    assert json.loads(p["gpu"].read_text())["history"] == [[0, 300.0], [0, 700.0]]
    assert not state_file(tmp_path).exists()
    # The interrupted configuration has no record: a resume runs it again.
    assert not list((p["out"] / "records").iterdir())
    assert "Traceback" not in err
    assert (tmp_path / "killed").exists()  # the runtime's children were killed at once


@pytest.mark.parametrize("k", [2, 8])
def test_sigterm_mid_configuration_restores_all_k_gpus(tmp_path: Path, k: int) -> None:
    """A TP = k configuration changes the limit of all its k GPUs; a SIGTERM mid-configuration
    puts every one of them back and leaves no state file."""
    proc, p = _start_child(tmp_path, k)
    try:
        assert limits(p["gpu"]) == {str(i): 300.0 for i in range(k)}
        assert all(read_state(state_file(tmp_path, i))["original_limit_w"] == 700.0 for i in range(k))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["stopped"] is True
    assert limits(p["gpu"]) == {str(i): 700.0 for i in range(k)}
    history = json.loads(p["gpu"].read_text())["history"]
    assert sorted(history) == sorted([[i, 300.0] for i in range(k)] + [[i, 700.0] for i in range(k)])
    assert not any(state_file(tmp_path, i).exists() for i in range(k))


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
    assert read_state(state_file(tmp_path))["pid"] == proc.pid
    assert restore_stale(p["state"], FileLimiter(p["gpu"])) == {0: 700.0}
    assert limits(p["gpu"]) == {"0": 700.0} and not state_file(tmp_path).exists()


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
    profile = decode_profile(CHILD.split('decode_profile("""')[1].split('""" % NUM_GPUS)')[0].replace("%d", "1"))
    runner = SweepRunner(profile, p["out"], power_source=SimulatedPowerSource(WallClock(), 1),
                         limiter=FileLimiter(p["gpu"]), runtime=object(), clock_factory=WallClock,  # type: ignore[arg-type]
                         limits_state_path=p["state"], requests=[Request(id=0, output_tokens=2)])
    runner.prepare()
    assert limits(p["gpu"]) == {"0": 700.0}
    assert not state_file(tmp_path).exists()


def test_state_of_another_host_is_left_alone(tmp_path: Path) -> None:
    lim = FileLimiter(tmp_path / "gpu.json")
    lim.set_limit_w(0, 400.0)
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"pid": 1, "host": "some-other-node", "original_limits_w": {"0": 700.0}}))
    assert restore_stale(state, lim) == {}  # a legacy per-host file of another node
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


def test_gpu_ids_by_uuid_keep_ownership_per_device(tmp_path: Path) -> None:
    from mle_tui.core.power.gpu_lock import gpu_ids_from
    from mle_tui.core.records import GpuInfo

    ids = gpu_ids_from([GpuInfo(index=0, name="H100", uuid="GPU-aaaa"), GpuInfo(index=1, name="H100")])
    assert ids == {0: "GPU-aaaa"}
    lim = FileLimiter(tmp_path / "gpu.json", num_gpus=2)
    with PowerLimitGuard(lim, [0, 1], 300, state_dir=tmp_path, gpu_ids=ids):
        assert (tmp_path / "power-limit-GPU-aaaa.json").exists() and state_file(tmp_path, 1).exists()
        with pytest.raises(InputError, match="GPU-aaaa"):
            with PowerLimitGuard(lim, [0], 400, state_dir=tmp_path, gpu_ids=ids):
                pass
    assert limits(tmp_path / "gpu.json") == {"0": 700.0, "1": 700.0}


def test_claim_refuses_up_front_and_holds_between_configurations(tmp_path: Path) -> None:
    from mle_tui.core.power.gpu_lock import GpuClaim

    lim = FileLimiter(tmp_path / "gpu.json", num_gpus=2)
    with GpuClaim(lim, [0, 1], tmp_path, run_dir="/runs/a", source="a.toml") as claim:
        for limit in (300, 400):  # one guard per configuration, on the claim's locks
            with PowerLimitGuard(lim, [0, 1], limit, claim=claim) as g:
                assert g.enforced_w == [float(limit)] * 2
            # Between configurations the GPUs stay ours: another sweep is refused.
            with pytest.raises(InputError) as ei:
                GpuClaim(lim, [1], tmp_path, source="b.toml").acquire()
            assert ei.value.line().startswith("b.toml: gpu.indices: GPU 1") and "/runs/a" in ei.value.line()
    assert limits(tmp_path / "gpu.json") == {"0": 700.0, "1": 700.0}
    with GpuClaim(lim, [1], tmp_path):  # released at the sweep's end
        pass


def test_claim_sweep_gpus_restores_then_owns(tmp_path: Path) -> None:
    from mle_tui.core.power.limits import claim_sweep_gpus

    lim = FileLimiter(tmp_path / "gpu.json", num_gpus=2)
    lim.set_limit_w(1, 333.0)
    state_file(tmp_path, 1).write_text(json.dumps({"index": 1, "original_limit_w": 700.0}))
    state_file(tmp_path, 0).write_text("")  # unusable: a note, not a refusal
    claim, notes = claim_sweep_gpus(lim, object(), [0, 1], "simulated", tmp_path, "p.toml")
    try:
        assert lim.get_limit_w(1) == 700.0 and any("700" in n for n in notes) and any("GPU 0" in n for n in notes)
        with pytest.raises(InputError) as ei:
            claim_sweep_gpus(lim, object(), [1], "simulated", tmp_path, "q.toml")
        assert ei.value.line().startswith("q.toml: gpu.indices: GPU 1")
        with PowerLimitGuard(lim, [0, 1], 300, claim=claim, source="p.toml") as g:
            assert g.enforced_w == [300.0, 300.0]
    finally:
        claim.release()
    assert limits(tmp_path / "gpu.json") == {"0": 700.0, "1": 700.0}
