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


def lock_holder(run_dir: Path) -> dict | None:
    """The holder's info if a process holds ``run_dir``'s lock now, else None (for listings:
    a running sweep on this host)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return RunLock(Path(run_dir)).holder() or {"pid": None}
    except OSError:
        return None
    finally:
        os.close(fd)
    return None
