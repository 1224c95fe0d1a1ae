"""Resuming a run directory on other hardware: another GPU model or another kind of power
source is refused (one line naming run.json's field, exit 2, nothing written); other GPUs of
the same model are allowed and said in the run log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mle_tui.core.errors import InputError
from mle_tui.core.records import GpuInfo, Manifest
from mle_tui.core.resume_check import check_resume_hardware

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "profiles" / "demo.toml"


def _gpu(i: int, name: str = "NVIDIA H200", uuid: str | None = None) -> GpuInfo:
    return GpuInfo(index=i, name=name, power_limit_w=700.0, min_power_limit_w=200.0, max_power_limit_w=700.0,
                   default_power_limit_w=700.0, uuid=uuid)


def _manifest(gpus: list[GpuInfo], kind: str = "nvml", host: str = "node-a") -> Manifest:
    return Manifest(run_id="r", created_unix_s=0.0, host=host, power_source=kind, gpus=gpus)  # type: ignore[arg-type]


def test_other_gpu_model_and_simulated_against_real_are_refused() -> None:
    before = _manifest([_gpu(0, uuid="GPU-aaaaaaaa-1")])
    with pytest.raises(InputError) as ei:
        check_resume_hardware(before, "nvml", "node-a", [_gpu(0, "NVIDIA H100 80GB HBM3")], [0], "d/run.json")
    assert ei.value.line().startswith("d/run.json: gpus: ")
    assert "NVIDIA H200" in ei.value.problem and "NVIDIA H100 80GB HBM3" in ei.value.problem
    with pytest.raises(InputError) as ei:
        check_resume_hardware(before, "simulated", "node-a", [_gpu(0)], [0], "d/run.json")
    assert ei.value.field == "power_source" and "simulated" in ei.value.problem


def test_only_the_pools_gpus_count() -> None:
    """A node with an H100 beside the H200 the sweep uses: the sweep's pool decides."""
    before = _manifest([_gpu(0), _gpu(1, "NVIDIA H100 80GB HBM3")])
    assert check_resume_hardware(before, "nvml", "node-a", [_gpu(0), _gpu(1, "NVIDIA A100")], [0], "x") == []
    with pytest.raises(InputError):
        check_resume_hardware(before, "nvml", "node-a", [_gpu(0), _gpu(1, "NVIDIA A100")], [1], "x")


def test_other_gpus_of_the_same_model_or_another_host_are_said() -> None:
    before = _manifest([_gpu(0, uuid="GPU-6b7c7fe4-8142")])
    same = check_resume_hardware(before, "nvml", "node-a", [_gpu(0, uuid="GPU-6b7c7fe4-8142")], [0], "x")
    assert same == []
    notes = check_resume_hardware(before, "nvml", "node-b", [_gpu(0, uuid="GPU-9df681c0-2314")], [0], "x")
    assert any("GPU-6b7c7fe4" in n and "GPU-9df681c0" in n for n in notes)
    assert any("node-b" in n and "node-a" in n for n in notes)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("CI", None)
    return subprocess.run([sys.executable, "-m", "mle_tui.tui.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=180, env=env, stdin=subprocess.DEVNULL)


def test_cli_refuses_to_resume_on_another_gpu_model_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = _cli("run", str(DEMO), "--headless", "--out", str(out))
    assert first.returncode == 0, first.stderr[-2000:]
    records = sorted((out / "records").iterdir())
    records[-1].unlink()  # one configuration left to resume
    manifest = json.loads((out / "run.json").read_text())
    for g in manifest["gpus"]:
        g["name"] = "Other GPU 9000"
    (out / "run.json").write_text(json.dumps(manifest))
    before = {p.name: p.read_bytes() for p in [*(out / "records").iterdir(), out / "run.json"]}
    again = _cli("run", str(DEMO), "--headless", "--out", str(out))
    assert again.returncode == 2, again.stderr[-2000:]
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "run.json: gpus:" in lines[0] and "Other GPU 9000" in lines[0], again.stderr
    assert {p.name: p.read_bytes() for p in [*(out / "records").iterdir(), out / "run.json"]} == before
