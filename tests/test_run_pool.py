"""`report DIR DIR ...`: several run directories' records as one front (a grid measured in
parts): a configuration in more than one part comes from the last, and parts that measured
different things are refused with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from mle_tui.core.errors import InputError
from mle_tui.core.run_pool import pool_records
from record_factory import llm_record

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "records"


def _rec(mns: int, j: float):  # noqa: ANN202
    return llm_record(mns, 700, tpot_s=0.01, energy_j=j)


def test_a_configuration_in_two_parts_comes_from_the_last() -> None:
    a = [_rec(16, 30.0), _rec(256, 9.0)]
    b = [_rec(256, 7.5), _rec(512, 7.4)]
    pooled = pool_records([("grid", a), ("rows", b)])
    by = {r.config_key: r for r in pooled.records}
    assert len(by) == 3 and by[b[0].config_key].energy_per_request_j == 7.5
    assert pooled.notes[:2] == ["grid: 2 records", "rows: 2 records"]
    assert pooled.notes[2] == f"{b[0].config_key}: from rows (also in grid)"


@pytest.mark.parametrize("field", ["task", "model", "gpu", "simulated"])
def test_parts_that_measured_different_things_are_refused(field: str) -> None:
    a = [_rec(16, 30.0)]
    other = _rec(32, 20.0)
    if field == "gpu":
        other = msgspec.structs.replace(other, hardware=msgspec.structs.replace(other.hardware,
                                                                                   gpu_names=["NVIDIA H100"]))
    elif field == "simulated":
        other = msgspec.structs.replace(other, simulated=not other.simulated)
    else:
        other = msgspec.structs.replace(other, **{field: "something-else"})
    with pytest.raises(InputError) as exc:
        pool_records([("grid", a), ("rows", [other])])
    line = str(exc.value)
    assert line.startswith("rows: records: ") and "\n" not in line and "grid" in line


def test_report_pools_shipped_h200_runs_and_refuses_a_diffusion_run() -> None:
    """The one-API-server H200 run's B = 256 / 700 W lagged (invalid); the stream-interval run
    measured it again in pace: pooled, the later one is used and becomes the recommendation at
    20 ms (B = 512 / 700 W needs 34.6 ms a token)."""
    cmd = [sys.executable, "-m", "mle_tui.tui.cli", "report", str(RECORDS / "h200-vllm-llama3.1-8b-dummy"),
           str(RECORDS / "h200-vllm-llama3.1-8b-stream-interval"), "--target", "20ms"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "Pareto report: 2 run directories pooled" in out.stdout
    assert "mns256-tp1-pl700: from " in out.stdout and "Recommended mns256-tp1-pl700" in out.stdout
    js = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=120, cwd=REPO)
    rows = {r["key"]: r for r in json.loads(js.stdout)["rows"]}
    assert rows["mns256-tp1-pl700"]["status"] == "ok" and "mns512-tp1-pl700" in rows
    assert "mns32-tp1-pl400" in rows  # the first part's own configurations stay
    bad = subprocess.run([sys.executable, "-m", "mle_tui.tui.cli", "report",
                          str(RECORDS / "h200-vllm-llama3.1-8b-dummy"), str(RECORDS / "h100-diffusers-sd2.1-dummy")],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert bad.returncode == 2 and bad.stdout == ""
    err = bad.stderr.strip().splitlines()
    assert len(err) == 1 and "h100-diffusers-sd2.1-dummy: records:" in err[0], bad.stderr


def test_compare_takes_a_run_measured_in_parts_as_one(tmp_path: Path) -> None:
    """`compare GRID+ROWS OTHER`: the first run pooled from two directories; its GPU time is that
    of the configurations in the pool. A directory whose own name has a + is itself."""
    dummy, si8 = RECORDS / "h200-vllm-llama3.1-8b-dummy", RECORDS / "h200-vllm-llama3.1-8b-stream-interval"
    out = subprocess.run([sys.executable, "-m", "mle_tui.tui.cli", "compare", f"{dummy}+{si8}", str(dummy),
                          "--target", "20ms"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"{dummy}+{si8}: recommended mns256-tp1-pl700")
    pooled = "h200-vllm-llama3.1-8b-dummy+h200-vllm-llama3.1-8b-stream-interval"
    assert any(line.startswith(f"  different recommendation: {pooled} mns256-tp1-pl700") for line in lines), lines
    gpu = next(line for line in lines if line.startswith("  GPU time: "))
    assert f"{pooled} " in gpu and "(9 measured)" in gpu  # 8 + 2, one configuration in both
    from mle_tui.tui.cli_report import _run_group

    plus = tmp_path / "a+b"
    (plus / "records").mkdir(parents=True)
    assert _run_group(str(plus)) == [plus]
    with pytest.raises(InputError) as exc:
        _run_group(f"{dummy}+{tmp_path / 'missing'}")
    assert "no such run directory" in str(exc.value)
