"""Child process groups: start a server in its own session, kill the whole group, and a
per-owner registry of live groups so a signal handler can kill them all."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time


def pid_alive(pid: int | None) -> bool:
    """True if a process with this pid exists (also one we may not signal)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists (zombies included until reaped)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pgid: int, proc: subprocess.Popen | None = None, grace_s: float = 5.0) -> None:
    """SIGTERM the group, wait up to ``grace_s`` for it to go, then SIGKILL it.

    ``proc`` (the group leader, our child) is reaped so it does not linger as a zombie."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if proc is not None:
            proc.poll()
        if not group_alive(pgid):
            break
        time.sleep(0.05)
    else:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if proc is not None:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    # Grandchildren re-parented to init vanish once init reaps them; give that a moment.
    deadline = time.monotonic() + 2.0
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


class ProcessGroups:
    """Live child process groups of one owner (a runtime instance). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[int, subprocess.Popen | None] = {}

    def add(self, pgid: int, proc: subprocess.Popen | None = None) -> None:
        with self._lock:
            self._groups[pgid] = proc

    def discard(self, pgid: int) -> None:
        with self._lock:
            self._groups.pop(pgid, None)

    def pgids(self) -> list[int]:
        with self._lock:
            return list(self._groups)

    def kill_all(self, grace_s: float = 5.0) -> None:
        """Kill every registered group (SIGTERM, ``grace_s``, SIGKILL) and forget them."""
        with self._lock:
            groups = list(self._groups.items())
        for pgid, proc in groups:
            kill_group(pgid, proc, grace_s)
            self.discard(pgid)
