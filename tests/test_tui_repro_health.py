"""core/repro.py (the `c` command line) and core/power/health.py (GPU health)."""

from __future__ import annotations

import os
import shlex
import types

from mle_tui.core.clock import VirtualClock
from mle_tui.core.config import Config
from mle_tui.core.events import HealthSample, decode_event, encode_event
from mle_tui.core.power import health
from mle_tui.core.power.health import HealthReading, health_line, process_tree, read_health, throttle_names
from mle_tui.core.power.simulated import SimulatedGPU
from mle_tui.core.profile import decode_profile
from mle_tui.core.records import Hardware, Manifest
from mle_tui.core.repro import repro_command
from mle_tui.core.toml_text import struct_to_toml

from record_factory import llm_record

VLLM_TOML = """\
name = "h200"
task = "chat"
runtime = "vllm"

[model]
id = "meta-llama/Llama-3.1-8B-Instruct"
weights = "dummy"
dtype = "bfloat16"

[dataset]
name = "synthetic"

[sweep]
max_num_seqs = [64, 128]
power_limit_w = [400, 700]

[server]
max_model_len = 4096
gpu_memory_utilization = 0.9
enforce_eager = true
extra_args = ["--swap-space", "8"]
env = { VLLM_USE_V1 = "1", HF_TOKEN = "hf_secret_value" }
"""


def _vllm_record(indices=(1, 2), limits=(400.0, 401.0)):
    r = llm_record(128, 400, tpot_s=0.03, energy_j=100.0, simulated=False)
    r.config = Config(max_num_seqs=128, tensor_parallel=2, power_limit_w=400)
    r.config_key = r.config.key()
    r.hardware = Hardware(power_source="nvml", gpu_names=["NVIDIA H200"] * 2, gpu_indices=list(indices),
                          tdp_w=700.0, power_limit_w=list(limits))
    return r


def _manifest(toml: str) -> Manifest:
    return Manifest(run_id="r", created_unix_s=1.7e9, host="h", power_source="nvml", profile_toml=toml)


def test_repro_has_every_server_flag_env_and_a_limit_per_gpu():
    text = repro_command(_vllm_record(), _manifest(VLLM_TOML))
    lines = text.splitlines()
    assert lines[0].startswith("# mle-tui test-run mns128-tp2-pl400")
    assert lines[1] == "sudo nvidia-smi -i 1 -pl 400"
    assert lines[2] == "sudo nvidia-smi -i 2 -pl 401"
    words = shlex.split(lines[3])
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    assert env["CUDA_VISIBLE_DEVICES"] == "1,2" and env["VLLM_USE_V1"] == "1"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert "hf_secret_value" not in text and 'HF_TOKEN="$HF_TOKEN"' in lines[3]
    cmd = words[words.index("vllm"):]
    assert cmd[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"]
    flags = " ".join(cmd)
    for part in ("--max-num-seqs 128", "--tensor-parallel-size 2", "--pipeline-parallel-size 1",
                 "--max-model-len 4096", "--gpu-memory-utilization 0.9", "--load-format dummy",
                 "--dtype bfloat16", "--enforce-eager", "--no-enable-prefix-caching", "--swap-space 8"):
        assert part in flags, part
    for per_run in ("--host", "--port", "--api-key"):
        assert per_run not in cmd


def test_repro_names_the_gpus_by_uuid_where_the_record_has_them():
    # indices count the GPUs the run saw (a CUDA_VISIBLE_DEVICES mask); UUIDs name the devices
    r = _vllm_record(indices=(0, 1))
    r.hardware.gpu_uuids = ["GPU-aa", "GPU-bb"]
    lines = repro_command(r, _manifest(VLLM_TOML)).splitlines()
    assert lines[1:3] == ["sudo nvidia-smi -i GPU-aa -pl 400", "sudo nvidia-smi -i GPU-bb -pl 401"]
    assert "CUDA_VISIBLE_DEVICES=GPU-aa,GPU-bb" in lines[3]
    r.hardware.gpu_uuids = ["GPU-aa", None]  # one unknown: indices for all
    assert "CUDA_VISIBLE_DEVICES=0,1" in repro_command(r, _manifest(VLLM_TOML))


def test_repro_without_prefix_caching_flag_when_one_limit_and_no_limit_lines_when_untouched():
    toml = VLLM_TOML.replace("power_limit_w = [400, 700]", "")
    r = _vllm_record(limits=())
    r.config = Config(max_num_seqs=128, tensor_parallel=2)
    r.hardware.power_limit_w = None
    text = repro_command(r, _manifest(toml))
    assert "nvidia-smi" not in text
    assert "--no-enable-prefix-caching" not in text
    assert "--load-format dummy" in text


def test_repro_for_a_simulated_in_process_run_says_so():
    r = llm_record(8, 700, tpot_s=0.02, energy_j=10.0, simulated=True)
    text = repro_command(r, None)
    assert "SIMULATED" in text.splitlines()[0]
    assert "sudo nvidia-smi -i 0 -pl 700" in text
    assert "runs in-process" in text


def test_throttle_bits_and_health_line():
    assert throttle_names(0x4 | 0x40) == ["power cap", "hw thermal"]
    r = HealthReading(index=0, temperature_c=61.4, sm_clock_mhz=1755, utilisation_pct=97,
                      throttle=["power cap"], processes=[], strangers=[health.GpuProcess(pid=9)])
    line = health_line([r, HealthReading(index=1)])
    assert line.startswith("GPU0 61°C 1755MHz 97% ⚠ power cap, 1 other process")
    assert "GPU1 —°C —MHz —%" in line
    ev = HealthSample(t_s=1.0, gpus=[r])
    assert decode_event(encode_event(ev)) == ev


def test_simulated_health_follows_load_and_limit():
    clock = VirtualClock()
    g = SimulatedGPU(clock, 0, tdp_w=700.0, idle_w=75.0)
    idle = read_health("simulated", [0], sim_gpus=[g])[0]
    assert idle.utilisation_pct == 0 and idle.throttle == ["idle"]
    g.set_load(1.0)
    busy = read_health("simulated", [0], sim_gpus=[g], own_pids=[os.getpid()])[0]
    assert busy.utilisation_pct > 95 and busy.throttle == [] and busy.strangers == []
    assert busy.temperature_c > idle.temperature_c
    g.set_limit_w(300.0)
    capped = read_health("simulated", [0], sim_gpus=[g])[0]
    assert capped.throttle == ["power cap"] and capped.sm_clock_mhz < busy.sm_clock_mhz
    assert read_health("simulated", [3], sim_gpus=[g])[0] == HealthReading(index=3)


class _Err(Exception):
    pass


def _fake_pynvml(procs, fail=()):
    def maybe(name, value):
        def fn(*a):
            if name in fail:
                raise _Err(name)
            return value
        return fn
    return types.SimpleNamespace(
        NVML_TEMPERATURE_GPU=0, NVML_CLOCK_SM=1,
        nvmlDeviceGetHandleByIndex=lambda i: ("h", i),
        nvmlDeviceGetTemperature=maybe("temp", 64),
        nvmlDeviceGetClockInfo=maybe("clock", 1980),
        nvmlDeviceGetUtilizationRates=maybe("util", types.SimpleNamespace(gpu=88)),
        nvmlDeviceGetCurrentClocksEventReasons=maybe("reasons", 0x4),
        nvmlDeviceGetComputeRunningProcesses=maybe("procs", procs),
        nvmlDeviceGetGraphicsRunningProcesses=maybe("gprocs", []),
    )


def test_nvml_health_maps_errors_to_none_and_finds_strangers(monkeypatch):
    procs = [types.SimpleNamespace(pid=os.getpid(), usedGpuMemory=2**30),
             types.SimpleNamespace(pid=999_999_1, usedGpuMemory=None)]
    monkeypatch.setattr(health, "_nvml", lambda: _fake_pynvml(procs))
    r = read_health("nvml", [0], own_pids=[os.getpid()])[0]
    assert (r.temperature_c, r.sm_clock_mhz, r.utilisation_pct, r.throttle) == (64, 1980, 88, ["power cap"])
    assert [p.pid for p in r.processes] == [os.getpid(), 999_999_1]
    assert [p.pid for p in r.strangers] == [999_999_1]
    monkeypatch.setattr(health, "_nvml", lambda: _fake_pynvml(procs, fail={"temp", "reasons", "procs", "gprocs"}))
    r = read_health("nvml", [0])[0]
    assert r.temperature_c is None and r.throttle is None and r.processes is None and r.strangers is None
    assert r.sm_clock_mhz == 1980
    monkeypatch.setattr(health, "_nvml", lambda: None)
    assert read_health("nvml", [0, 1]) == [HealthReading(index=0), HealthReading(index=1)]


def test_process_tree_contains_self_and_children():
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        tree = process_tree(os.getpid())
        assert os.getpid() in tree and child.pid in tree
        assert 1 not in tree or os.getpid() == 1
    finally:
        child.kill()
        child.wait()


def test_stranger_log_names_each_process_once():
    from mle_tui.core.power.health import GpuProcess, StrangerLog

    log = StrangerLog()
    assert log.reason() is None
    p = GpuProcess(pid=4242, name="python")
    for _ in range(3):
        log.add([HealthReading(index=1, strangers=[p]), HealthReading(index=0, strangers=None)])
    assert log.reason() == "other processes on the measured GPUs: pid 4242 (python) on GPU 1"
