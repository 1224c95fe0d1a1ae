"""A sweep as a Slurm job array (``mle-tui export-slurm``), for sites without Ray.

Layout of the shared run directory ``RUN_DIR`` (on a file system every node mounts):

- ``RUN_DIR/run.json``: written once by ``export-slurm`` (the whole profile, every
  configuration); no process writes into ``RUN_DIR`` itself afterwards.
- ``RUN_DIR/tasks/<KEY>/``: array task *i* runs configuration *i* of the grid (profile order)
  into its own run directory there: its own lock, manifest (the same profile), record, trace,
  log and ``live.jsonl``. No two tasks share a directory, so the run directory's one-writer
  lock is never contended, and a task Slurm requeues resumes its own directory.
- ``report``, ``compare`` and ``open`` on ``RUN_DIR`` read ``RUN_DIR/records`` and every
  ``tasks/*/records`` (:meth:`.store.RunStore._record_files`); ``attach``/``reanalyse`` take
  one task's directory.

A task checks that the profile it was given is the one ``RUN_DIR/run.json`` holds (the index
means nothing for another profile) and uses the GPUs Slurm gave it.
"""

from __future__ import annotations

import os
import shlex
import time
import uuid
from pathlib import Path

from .errors import InputError
from .manifest import build_manifest
from .power.visible import visible_entries
from .profile import Profile, decode_profile
from .profile_checks import profiles_equal
from .runner import SweepRunner
from .store import RunStore
from .sweep_prep import open_run_dir

TASKS_DIR = "tasks"


def task_dir(run_dir: Path, key: str) -> Path:
    return Path(run_dir) / TASKS_DIR / key


class _NoGpus:
    """The manifest's GPUs at export time: none known (the login node); each task's own
    manifest names the GPUs it ran on."""

    def gpus(self) -> list:
        return []


def prepare_run_dir(profile: Profile, profile_path: str, run_dir: Path) -> None:
    """Write ``RUN_DIR/run.json`` (under the run directory's lock; a directory started with
    another profile refuses, the same profile again is a no-op)."""
    src = profile_path or ""
    if profile.sweep.strategy != "grid":
        raise InputError(src, "sweep.strategy", "a Slurm array runs the whole grid (strategy = \"grid\", "
                         "no --adaptive)")
    store = RunStore(Path(run_dir))
    with store.lock():
        if open_run_dir(store, profile) is not None:
            return
        m = build_manifest(run_id=uuid.uuid4().hex[:12], created_unix_s=time.time(), profile=profile,
                           profile_path=str(Path(profile_path).resolve()) if profile_path else None,
                           configs=profile.configs(), source=_NoGpus(),  # type: ignore[arg-type]
                           power_kind="simulated" if profile.gpu.simulated else "nvml", finished=False)
        m.pid = None  # no process writes here: nothing to follow
        store.write_manifest(m)


def sbatch_script(profile: Profile, profile_path: str, run_dir: Path, *, partition: str | None = None,
                  gpus_per_task: int | None = None, workdir: Path | None = None) -> str:
    """The array script: one task per configuration of the grid."""
    cfgs = profile.configs()
    gpus = gpus_per_task or max(c.num_gpus for c in cfgs)
    too_many = [c.key() for c in cfgs if c.num_gpus > gpus]
    if too_many:
        raise InputError("command line", "--gpus-per-task",
                         f"{gpus} GPU(s) per task is fewer than {too_many[0]} needs")
    run_dir, prof = Path(run_dir).resolve(), Path(profile_path).resolve()
    q = shlex.quote
    lines = ["#!/bin/bash", f"#SBATCH --job-name={q('mle-tui-' + profile.name)}", f"#SBATCH --array=0-{len(cfgs) - 1}",
             "#SBATCH --ntasks=1", f"#SBATCH --gpus-per-task={gpus}",
             f"#SBATCH --output={q(str(run_dir / 'slurm' / '%A_%a.out'))}"]
    if partition:
        lines.append(f"#SBATCH --partition={q(partition)}")
    lines += [
        f"# mle-tui sweep {profile.name!r}: {len(cfgs)} configurations, one array task each.",
        f"# Task i runs configuration i into {run_dir}/{TASKS_DIR}/KEY/ (its own run directory);",
        f"# `mle-tui report {run_dir}` reads every task's record. Submit: sbatch THIS_FILE",
        *(f"#   {i}: {c.key()}" for i, c in enumerate(cfgs)),
        "set -euo pipefail",
        f"cd {q(str(Path(workdir or os.getcwd()).resolve()))}",
        'MLE_TUI="${MLE_TUI:-mle-tui}"',
        "# The task measures the GPUs Slurm gave it (CUDA_VISIBLE_DEVICES, mapped to NVML indices).",
        f'exec $MLE_TUI run {q(str(prof))} --out {q(str(run_dir))} --task-index "$SLURM_ARRAY_TASK_ID" --headless',
    ]
    return "\n".join(lines) + "\n"


def task_out(profile: Profile, profile_path: str, run_dir: Path, index: int) -> Path:
    """Where array task ``index`` runs: its configuration's directory under ``tasks/``.
    InputError when the index is out of range or the profile is not the run directory's."""
    src = profile_path or ""
    cfgs = profile.configs()
    if not 0 <= index < len(cfgs):
        raise InputError("command line", "--task-index", f"{index} is not a configuration index (0..{len(cfgs) - 1})")
    store = RunStore(Path(run_dir))
    m = store.read_manifest()
    if m is None or not m.profile_toml:
        raise InputError(str(store.manifest_path), "", "missing: write the run directory with "
                         "`mle-tui export-slurm PROFILE --out DIR` first")
    if not profiles_equal(decode_profile(m.profile_toml, str(store.manifest_path)), profile):
        raise InputError(src, "", f"not the profile {store.manifest_path} was exported with (a task index "
                         "names a configuration of that profile)")
    return task_dir(run_dir, cfgs[index].key())


class TaskRunner(SweepRunner):
    """The local runner, for one configuration of the grid (``index``): the manifest holds the
    whole profile, the record its index among all configurations."""

    def __init__(self, profile: Profile, out_dir: Path, *, index: int, **kw) -> None:  # noqa: ANN003
        super().__init__(profile, out_dir, **kw)
        self._only = self._configs[index].key()
        # tasks/KEY -> the shared run directory's run id: every task's record carries it.
        shared = RunStore(Path(out_dir).parent.parent).read_manifest()
        self._shared_run_id = shared.run_id if shared is not None else None

    def _prepare(self) -> None:
        super()._prepare()
        if self._shared_run_id and self.run_id != self._shared_run_id:
            self.run_id = self._shared_run_id
            self._write_manifest(created=self._manifest_created(), finished=False)

    def _plan(self):  # noqa: ANN202
        plan = super()._plan()
        plan._todo = [c for c in plan._todo if c.key() == self._only]
        return plan

    def _verify_reuse(self, plan, pool) -> None:  # noqa: ANN001
        """Nothing to check: the task started its own server for its one configuration."""


def task_visible_devices(visible: str | None, uuids: list[str | None]) -> str | None:
    """The GPUs Slurm gave a task, as the CUDA_VISIBLE_DEVICES every part of mle-tui reads the
    same way: NVML indices. Zeus counts GPUs through that mask (our index ``i`` is its ``i``-th
    entry, :mod:`.power.visible`), so a mask of indices needs nothing (None), and one of UUIDs,
    which Zeus cannot read, becomes their NVML indices (``uuids``: NVML's, in index order). None
    when nothing is set. InputError for an entry that names no GPU here."""
    ids = visible_entries({"CUDA_VISIBLE_DEVICES": visible or ""}) or []
    if not ids or all(i.isdigit() for i in ids):
        return None
    by_uuid = {u: i for i, u in enumerate(uuids) if u}
    out = []
    for i in ids:
        if i in by_uuid:
            out.append(by_uuid[i])
        elif i.isdigit() and int(i) < len(uuids):
            out.append(int(i))
        else:
            raise InputError("CUDA_VISIBLE_DEVICES", "", f"{i!r} names no GPU NVML sees here; set gpu.indices "
                             "or --gpus")
    return ",".join(map(str, out))


def nvml_uuids() -> list[str | None]:
    """The UUID of every GPU NVML sees, in index order ([] without NVML)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVML: the power source reports it
        return []
    try:
        from .power.nvml import nvml_uuid

        out: list[str | None] = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            try:
                out.append(nvml_uuid(pynvml, pynvml.nvmlDeviceGetHandleByIndex(i)))
            except Exception:  # noqa: BLE001
                out.append(None)
        return out
    except Exception:  # noqa: BLE001
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
