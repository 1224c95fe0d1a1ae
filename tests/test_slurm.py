"""``mle-tui export-slurm``: the sbatch array script (one task per configuration), the shared run
directory it prepares, array tasks each writing their own ``tasks/KEY`` directory (the script
itself run with bash, as Slurm would, no Slurm needed), and ``report`` reading every task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mle_tui.core.profile import load_profile
from mle_tui.core.store import RunStore
from mle_tui.tui.cli import main

PROFILE = """
name = "slurm-sim"
task = "chat"
runtime = "sim"
[model]
id = "sim/llama"
weights = "dummy"
[dataset]
name = "synthetic"
num_requests = 32
seed = 3
min_output_tokens = 32
max_output_tokens = 128
[sweep]
max_num_seqs = [8, 16]
power_limit_w = [400, 700]
[steady_state]
rule = "request-count"
[gpu]
simulated = true
"""


def _profile(tmp_path: Path) -> Path:
    p = tmp_path / "slurm-sim.toml"
    p.write_text(PROFILE)
    return p


def test_export_writes_the_array_and_the_shared_run_dir(tmp_path, capsys) -> None:
    prof = _profile(tmp_path)
    keys = [c.key() for c in load_profile(prof).configs()]
    out = tmp_path / "run"
    assert main(["export-slurm", str(prof), "--out", str(out), "--partition", "gpu", "--gpus-per-task", "2"]) == 0
    script = (out / "slurm" / "sweep.sbatch").read_text()
    assert f"#SBATCH --array=0-{len(keys) - 1}\n" in script
    assert "#SBATCH --gpus-per-task=2\n" in script and "#SBATCH --partition=gpu\n" in script
    assert all(f"#   {i}: {k}\n" in script for i, k in enumerate(keys))
    assert '--task-index "$SLURM_ARRAY_TASK_ID"' in script
    m = RunStore(out).read_manifest()
    assert m is not None and m.configs == keys and m.pid is None and not m.finished
    # Exporting again is a no-op; another profile into the same directory refuses.
    run_id = m.run_id
    assert main(["export-slurm", str(prof), "--out", str(out)]) == 0
    assert RunStore(out).read_manifest().run_id == run_id
    other = tmp_path / "other.toml"
    other.write_text(PROFILE.replace("[8, 16]", "[8, 32]"))
    capsys.readouterr()
    assert main(["export-slurm", str(other), "--out", str(out)]) == 2
    assert "different profile" in capsys.readouterr().err


def test_tasks_run_their_configuration_and_report_reads_them_all(tmp_path, capsys) -> None:
    prof = _profile(tmp_path)
    keys = [c.key() for c in load_profile(prof).configs()]
    out = tmp_path / "run"
    assert main(["export-slurm", str(prof), "--out", str(out)]) == 0
    script = out / "slurm" / "sweep.sbatch"
    # Two array tasks, as Slurm runs them: the script with its task id (the installed command
    # replaced by this interpreter on this checkout).
    env = dict(os.environ, MLE_TUI=f"{sys.executable} -m mle_tui.tui.cli")
    for task in (1, 3):
        proc = subprocess.run(["bash", str(script)], env=dict(env, SLURM_ARRAY_TASK_ID=str(task)),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    for task in (1, 3):
        d = out / "tasks" / keys[task]
        assert [p.name for p in (d / "records").glob("*.json")] == [f"{keys[task]}.json"]
        m = RunStore(d).read_manifest()
        assert m is not None and m.configs == keys and m.finished
        assert (d / "logs" / f"{keys[task]}.log").exists()
    assert not (out / "records" / f"{keys[1]}.json").exists()  # nothing written into RUN_DIR itself
    # The record keeps its index among all configurations (not 0 of 1).
    rec = json.loads((out / "tasks" / keys[3] / "records" / f"{keys[3]}.json").read_bytes())
    assert rec["config_key"] == keys[3]
    # Every task's record and manifest carry the shared run directory's run id.
    run_id = RunStore(out).read_manifest().run_id
    assert rec["run_id"] == run_id == RunStore(out / "tasks" / keys[1]).read_manifest().run_id
    # report on the shared directory: both tasks' records.
    capsys.readouterr()
    assert main(["report", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    text = json.dumps(rows)
    assert keys[1] in text and keys[3] in text and keys[0] not in text
    assert {r.config_key for r in RunStore(out).scan(keys, heads=True).records} == {keys[1], keys[3]}


def test_task_refuses_a_bad_index_or_another_profile(tmp_path, capsys) -> None:
    prof = _profile(tmp_path)
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["run", str(prof), "--out", str(out), "--task-index", "0", "--headless"]) == 2
    assert "export-slurm" in capsys.readouterr().err  # not exported yet
    assert main(["export-slurm", str(prof), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", str(prof), "--out", str(out), "--task-index", "4", "--headless"]) == 2
    assert "--task-index" in capsys.readouterr().err
    other = tmp_path / "other.toml"
    other.write_text(PROFILE.replace("[400, 700]", "[300, 700]"))
    assert main(["run", str(other), "--out", str(out), "--task-index", "0", "--headless"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exported with" in err
    assert not (out / "tasks").exists()


def test_task_gpus_from_cuda_visible_devices() -> None:
    """The GPUs Slurm gave a task: a mask of NVML indices is read as it is (Zeus counts the GPUs
    through it; the task's GPU 0 is the mask's first); one of UUIDs becomes NVML indices."""
    from mle_tui.core.errors import InputError
    from mle_tui.core.slurm import task_visible_devices

    uuids = ["GPU-a", "GPU-b", "GPU-c", "GPU-d"]
    assert task_visible_devices("2,3", uuids) is None
    assert task_visible_devices("GPU-d,GPU-b", uuids) == "3,1"
    assert task_visible_devices("GPU-c", ["GPU-c"]) == "0"  # confined job: its one GPU is NVML's 0
    assert task_visible_devices("", uuids) is None and task_visible_devices(None, uuids) is None
    try:
        task_visible_devices("MIG-x", uuids)
    except InputError as exc:
        assert "MIG-x" in exc.line()
    else:
        raise AssertionError("an unknown device must refuse")
