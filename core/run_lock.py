"""The run directory's lock: one process runs a sweep into a directory at a time.

``fcntl.flock`` on ``<run dir>/.lock``, held from before the manifest is read until the run
ends; the kernel drops it when the holder's process ends (SIGKILL included), so a stale lock
never needs cleaning. The holder writes its pid, host and start time into the file for the
refusal message. The file itself is never removed (removing it would race with a locker).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from .errors import InputError
from .safe_io import os_problem

LOCK_NAME = ".lock"


class RunLock:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> dict:
        try:
            data = json.loads(self.path.read_text() or "{}")
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "RunLock":
        """Take the lock or raise InputError(run dir, "--out", who holds it). Creates the
        directory if needed (a run directory is created by its first run)."""
        if self._fd is not None:
            return self
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise InputError(str(self.run_dir), "--out", f"cannot lock the run directory: {os_problem(exc)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder()
            who = (f"pid {h.get('pid', '?')} on host {h.get('host', '?')}" if h
                   else "another process (holder details not written yet)")
            raise InputError(str(self.run_dir), "--out",
                             f"run directory is in use by {who}; follow it with `mle-tui attach "
                             f"{self.run_dir}`, or use another --out directory") from None
        except OSError as exc:
            os.close(fd)
            raise InputError(str(self.run_dir), "--out", f"cannot lock the run directory: {os_problem(exc)}") from None
        self._fd = fd
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since_unix_s": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError:
            pass
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _proc_locks_pid(path: Path) -> int | None | bool:
    """The pid holding an flock on ``path`` per /proc/locks; None if none; False if unknown."""
    try:
        st = os.stat(path)
        text = Path("/proc/locks").read_text()
    except OSError:
        return False
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in text.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (blocked waiters have "->")
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        if parts[5] == want:
            return int(parts[4])
    return None


def lock_holder(run_dir: Path) -> dict | None:
    """The holder's info if a process holds ``run_dir``'s lock now, else None (for listings of
    running sweeps). Reads /proc/locks, so it never takes the lock itself (a probe with flock
    could make a run starting at that moment fail)."""
    path = Path(run_dir) / LOCK_NAME
    if not os.path.lexists(path):
        return None
    pid = _proc_locks_pid(path)
    if pid is None:
        return None
    info = RunLock(Path(run_dir)).holder()
    if pid is not False:
        info["pid"] = pid
        return info
    # No /proc/locks (not Linux): probe with a shared lock, released at once.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return info or {"pid": None}
    except OSError:
        return None
    finally:
        os.close(fd)
    return None
