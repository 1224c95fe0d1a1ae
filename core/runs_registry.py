"""Sweeps running on this host: who runs a run directory, and is it still that process.

A runner process writes ``<run_dir>/runner.json`` (:class:`RunnerInfo`: pid, the process's start
time from ``/proc/<pid>/stat``, a random token, host) and a pointer
``$XDG_STATE_HOME/mle-tui/runs/<token>.json`` (``~/.local/state`` by default;
``MLE_TUI_STATE_DIR`` overrides the ``mle-tui`` directory), and removes both when it ends.

Liveness is never a bare ``kill(pid, 0)``: the pid must exist *and* have the recorded start
time (pid reuse gives another start time) *and* be the pid in the run's manifest once the
runner has written it. A runner killed outright leaves its files; they read as not running and
the pointer is pruned by :func:`running_sweeps`.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from pathlib import Path

import msgspec

RUNNER_NAME = "runner.json"
RUNNER_LOG_NAME = "runner.log"


class RunnerInfo(msgspec.Struct, kw_only=True):
    pid: int
    token: str
    host: str
    #: Field 22 of /proc/<pid>/stat (clock ticks after boot); None where /proc is missing.
    start_ticks: int | None = None
    started_unix_s: float = 0.0
    run_dir: str = ""
    #: Launched detached by the app or `mle-tui run` in a terminal (vs a foreground --headless run).
    detached: bool = False


class RunningSweep(msgspec.Struct, kw_only=True):
    """One row of the reattach list."""

    run_dir: str
    pid: int
    token: str
    started_unix_s: float
    name: str = ""
    done: int = 0
    total: int = 0
    gpus: str = ""
    simulated: bool = False


def state_dir() -> Path:
    explicit = os.environ.get("MLE_TUI_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mle-tui"


def registry_dir() -> Path:
    return state_dir() / "runs"


def new_token() -> str:
    return secrets.token_hex(8)


def proc_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot, or None (no such process, a zombie
    that has ended but is not reaped yet, or no /proc)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    try:
        fields = data[data.rindex(b")") + 2:].split()
        if fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])
    except (ValueError, IndexError):
        return None


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def register(run_dir: Path, token: str, *, detached: bool) -> RunnerInfo:
    """Called by the runner process itself, before the sweep starts."""
    run_dir = Path(run_dir).resolve()
    pid = os.getpid()
    info = RunnerInfo(pid=pid, token=token, host=socket.gethostname(), start_ticks=proc_start_ticks(pid),
                      started_unix_s=time.time(), run_dir=str(run_dir), detached=detached)
    data = msgspec.json.encode(info) + b"\n"
    _write(run_dir / RUNNER_NAME, data, 0o644)
    try:
        d = registry_dir()
        d.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write(d / f"{token}.json", data, 0o600)
    except OSError:
        pass  # the list of running sweeps is a convenience; the run directory is the truth
    return info


def unregister(info: RunnerInfo) -> None:
    """Called by the runner process when the sweep ends (runner.json stays, as a last word)."""
    try:
        os.unlink(registry_dir() / f"{info.token}.json")
    except OSError:
        pass


def read_runner(run_dir: Path) -> RunnerInfo | None:
    try:
        return msgspec.json.decode(Path(run_dir, RUNNER_NAME).read_bytes(), type=RunnerInfo)
    except (OSError, msgspec.MsgspecError):
        return None


def is_alive(info: RunnerInfo, manifest_pid: int | None = None) -> bool:
    """Is ``info``'s process still running, and is it really that runner?"""
    if info.host != socket.gethostname():
        return False
    if manifest_pid is not None and manifest_pid != info.pid:
        return False
    ticks = proc_start_ticks(info.pid)
    if info.start_ticks is not None:
        return ticks == info.start_ticks
    if ticks is not None:  # recorded without /proc but /proc now exists: cannot tell, say no
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _manifest_pid(run_dir: Path, info: RunnerInfo) -> int | None:
    """The manifest's pid when the manifest is this runner's (written after it started)."""
    from .store import RunStore

    try:
        m = RunStore(Path(run_dir)).read_manifest()
    except Exception:  # noqa: BLE001 - an unreadable manifest does not make the runner dead
        return None
    if m is None or m.pid is None:
        return None
    try:
        fresh = os.stat(Path(run_dir) / "run.json").st_mtime >= info.started_unix_s - 1.0
    except OSError:
        return None
    return m.pid if fresh else None


def live_runner(run_dir: Path) -> RunnerInfo | None:
    """The runner process of ``run_dir`` if one is running now, else None."""
    info = read_runner(run_dir)
    if info is None:
        return None
    return info if is_alive(info, _manifest_pid(run_dir, info)) else None


def running_sweeps(*, prune: bool = True) -> list[RunningSweep]:
    """Sweeps running on this host, newest first. Pointers of dead runners are removed."""
    d = registry_dir()
    try:
        entries = sorted(d.glob("*.json"))
    except OSError:
        return []
    out: list[RunningSweep] = []
    for entry in entries:
        try:
            ptr = msgspec.json.decode(entry.read_bytes(), type=RunnerInfo)
        except (OSError, msgspec.MsgspecError):
            ptr = None
        info = read_runner(Path(ptr.run_dir)) if ptr is not None else None
        if ptr is None or info is None or info.token != ptr.token or live_runner(Path(ptr.run_dir)) is None:
            if prune:
                try:
                    entry.unlink()
                except OSError:
                    pass
            continue
        out.append(describe(Path(info.run_dir), info))
    out.sort(key=lambda r: r.started_unix_s, reverse=True)
    return out


def describe(run_dir: Path, info: RunnerInfo) -> RunningSweep:
    """Progress, GPUs and name of a running sweep, from its run directory."""
    from .store import RunStore

    row = RunningSweep(run_dir=str(run_dir), pid=info.pid, token=info.token, started_unix_s=info.started_unix_s,
                       name=Path(run_dir).name)
    store = RunStore(run_dir)
    try:
        m = store.read_manifest()
    except Exception:  # noqa: BLE001
        m = None
    try:
        row.done = len(store.completed_keys())
    except OSError:
        pass
    if m is not None:
        row.total = len(m.configs)
        row.simulated = m.power_source == "simulated"
        gpus = list(m.gpus)
        wanted = _profile_gpu_indices(m.profile_toml)
        if wanted:
            gpus = [g for g in gpus if g.index in wanted]
        if gpus:
            names = sorted({g.name for g in gpus})
            idx = ",".join(str(g.index) for g in gpus)
            row.gpus = f"{idx} ({'/'.join(names)})"
    return row


def _profile_gpu_indices(profile_toml: str) -> list[int]:
    if not profile_toml:
        return []
    try:
        from .profile import decode_profile

        return list(decode_profile(profile_toml).gpu.indices or [])
    except Exception:  # noqa: BLE001 - display only
        return []
