"""GPU indices under CUDA_VISIBLE_DEVICES (one raylet per GPU, a Slurm task, a user's mask):
the vLLM child gets the GPUs measured, Ray's assignment maps to our indices, limit state and
locks are per device (UUID), and an agent's InputError crosses Ray's pickling intact."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from mle_tui.core.errors import InputError
from mle_tui.core.power.limits import restore_stale_report
from mle_tui.core.power.visible import child_visible_devices, indices_of, visible_entries
from test_power_limits import FileLimiter, limits


def test_child_gets_the_entries_not_the_indices() -> None:
    assert visible_entries({}) is None and visible_entries({"CUDA_VISIBLE_DEVICES": " "}) is None
    assert child_visible_devices([0, 1], {}) == "0,1"
    # a process that sees only physical GPU 1 measures it as its GPU 0: vLLM must get "1"
    assert child_visible_devices([0], {"CUDA_VISIBLE_DEVICES": "1"}) == "1"
    assert child_visible_devices([1, 0], {"CUDA_VISIBLE_DEVICES": "3, 5"}) == "5,3"
    assert child_visible_devices([0], {"CUDA_VISIBLE_DEVICES": "GPU-aa"}) == "GPU-aa"
    with pytest.raises(ValueError, match="GPU 2"):
        child_visible_devices([2], {"CUDA_VISIBLE_DEVICES": "3,5"})


def test_ray_ids_become_positions_in_the_actors_mask() -> None:
    # Ray gives the raylet's entries and sets the actor's CUDA_VISIBLE_DEVICES to them
    assert indices_of(["1"], {}, {"CUDA_VISIBLE_DEVICES": "1"}) == [0]
    assert indices_of(["6", "2"], {}, {"CUDA_VISIBLE_DEVICES": "2,6"}) == [0, 1]
    # without a mask (RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES): NVML indices or UUIDs
    assert indices_of(["1"], {}, {}) == [1]
    assert indices_of(["GPU-bb"], {"GPU-bb": 3}, {}) == [3]
    assert indices_of(["GPU-cc", "x"], {"GPU-bb": 3}, {}) == []


def test_vllm_server_env_maps_through_the_parents_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    from mle_tui.core.profile import load_profile
    from mle_tui.core.runtimes.vllm_server import server_env

    profile = load_profile(str(Path(__file__).parent.parent / "profiles/gpu/llama3.1-8b-vllm-ray2-h200.toml"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    env = server_env(profile, "k", [0], simulated=False)
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert server_env(profile, "k", [1], simulated=False)["CUDA_VISIBLE_DEVICES"] == "1"


def test_stale_state_of_a_gpu_this_process_does_not_see_is_left_alone(tmp_path: Path) -> None:
    # Two raylets on one host share the state directory; each sees its own GPU as index 0. A
    # killed agent's state for GPU-aa must not be "restored" onto GPU-bb (index 0 here).
    lim = FileLimiter(tmp_path / "gpu.json", num_gpus=1)
    lim.set_limit_w(0, 350.0)
    state = tmp_path / "power-limit-GPU-aa.json"
    state.write_text(json.dumps({"index": 0, "original_limit_w": 700.0}))
    rep = restore_stale_report(tmp_path, lim, gpu_ids={0: "GPU-bb"})
    assert rep.restored == {} and limits(tmp_path / "gpu.json") == {"0": 350.0} and state.exists()
    # the process that sees GPU-aa restores it
    rep = restore_stale_report(tmp_path, lim, gpu_ids={0: "GPU-aa"})
    assert rep.restored == {0: 700.0} and limits(tmp_path / "gpu.json") == {"0": 700.0} and not state.exists()


def test_input_error_survives_pickling() -> None:
    err = pickle.loads(pickle.dumps(InputError("p.toml", "gpu.indices", "GPU 1 not found (visible: [0])")))
    assert isinstance(err, InputError) and err.line() == "p.toml: gpu.indices: GPU 1 not found (visible: [0])"


def test_error_tail_is_the_raised_error() -> None:
    from mle_tui.core.cluster.ray_env import error_tail

    text = "Failed to deserialize\nTraceback (most recent call last):\n  File \"x\", line 1\n" \
           "mle_tui.core.errors.InputError: p.toml: gpu.indices: GPU 1 not found\n"
    assert error_tail(RuntimeError(text)) == "mle_tui.core.errors.InputError: p.toml: gpu.indices: GPU 1 not found"
    assert error_tail(RuntimeError("")) == "RuntimeError" and len(error_tail(RuntimeError("x" * 999))) == 300


def test_health_reads_the_gpu_the_mask_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from mle_tui.core.power import health
    from mle_tui.core.power.visible import nvml_device

    assert nvml_device(1, {}) == 1 and nvml_device(0, {"CUDA_VISIBLE_DEVICES": "1"}) == 1
    assert nvml_device(0, {"CUDA_VISIBLE_DEVICES": "GPU-aa"}) == "GPU-aa"
    assert nvml_device(1, {"CUDA_VISIBLE_DEVICES": "1"}) is None
    asked: list = []
    temps = {0: 30.0, 1: 71.0}

    def by_index(i: int) -> int:
        asked.append(i)
        return i

    nv = types.SimpleNamespace(NVML_TEMPERATURE_GPU=0, NVML_CLOCK_SM=1, nvmlDeviceGetHandleByIndex=by_index,
                               nvmlDeviceGetTemperature=lambda h, _k: temps[h],
                               nvmlDeviceGetClockInfo=lambda h, _k: 1980, nvmlDeviceGetUtilizationRates=lambda h: None)
    monkeypatch.setattr(health, "_nvml", lambda: nv)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    r = health.read_health("nvml", [0, 1])
    assert asked == [1] and r[0].index == 0 and r[0].temperature_c == 71.0 and r[1] == health.HealthReading(index=1)
