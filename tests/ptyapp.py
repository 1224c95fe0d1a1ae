"""Drive ``mle-tui`` on a pseudo-terminal, as an SSH session would: a new session whose
controlling terminal is the pty; closing the master is the dropped link (the kernel hangs the
terminal up and sends SIGHUP). Used by tests/test_faults_ssh.py and tests/bench_tui.py; no tmux."""

from __future__ import annotations

import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

_ANSI = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[PX^_][^\x1b]*\x1b\\|.)")


def _controlling_tty() -> None:  # in the child, after setsid
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyApp:
    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
                 cols: int = 80, rows: int = 24) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        full_env = dict(os.environ)
        full_env.update({"TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)})
        full_env.pop("TEXTUAL", None)
        full_env.update(env or {})
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "mle_tui.tui.cli", *args], cwd=cwd, env=full_env,
                                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     preexec_fn=_controlling_tty, close_fds=True)
        os.close(slave)
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self._buf += data

    def text(self) -> str:
        """Everything written so far, escape sequences removed."""
        with self._lock:
            raw = bytes(self._buf)
        return _ANSI.sub(b"", raw).decode("utf-8", "replace")

    def wait_for(self, needle: str, timeout_s: float = 60.0) -> float:
        """Seconds since start when ``needle`` appeared on screen; AssertionError on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            if needle in self.text():
                return time.monotonic() - self.t0
            if self.proc.poll() is not None and needle not in self.text():
                raise AssertionError(f"app exited ({self.proc.returncode}) before {needle!r}:\n{self.text()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not on screen after {timeout_s} s:\n{self.text()[-2000:]}")
            time.sleep(0.02)

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def hang_up(self) -> float:
        """Close the master (the SSH link drops); returns the monotonic time it happened."""
        t = time.monotonic()
        if not self._closed:
            self._closed = True
            os.close(self.master)
        return t

    def wait_exit(self, timeout_s: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.hang_up()
