"""The sweep in its own process: launched detached by the app, followed through the run directory.

:func:`launch` starts ``python -m mle_tui.tui.cli run … --headless --detached-child`` in a new
session (``start_new_session``: no controlling terminal, so no SIGHUP when the SSH link drops),
stdin from ``/dev/null``, stdout and stderr appended to ``<run_dir>/runner.log``. The child
registers itself (core.runs_registry), polls the control channel (core.control) and writes
``live.jsonl`` as every runner does; the app follows that file (``attach``) and talks back through
``control.jsonl``. No Textual here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ..core.control import ControlChannel
from ..core.runs_registry import RUNNER_LOG_NAME, live_runner, new_token, read_runner


class DetachedRun:
    """Handle on a runner process (started here, or found running): skip, stop, drain, alive."""

    def __init__(self, run_dir: Path, *, token: str | None = None, proc: subprocess.Popen | None = None,
                 pid: int | None = None, created_dir: bool = False, launched_at: float | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.token = token
        self.proc = proc
        self.pid = proc.pid if proc is not None else pid
        self.created_dir = created_dir
        self.launched_at = launched_at
        self.channel = ControlChannel(self.run_dir)

    @classmethod
    def find(cls, run_dir: Path) -> DetachedRun | None:
        """The runner running ``run_dir`` now, or None."""
        info = live_runner(Path(run_dir))
        if info is None:
            return None
        return cls(Path(run_dir), token=info.token, pid=info.pid)

    # RunnerLike (what the app calls)
    def request_skip(self, key: str | None = None) -> None:
        """Skip the running configuration (``key``: that one, on whichever cluster node runs it)."""
        self._send("skip", key)

    def request_stop(self) -> None:
        self._send("stop")

    def request_drain(self) -> None:
        """The running configuration finishes and is written; the sweep ends after it."""
        self._send("drain")

    def _send(self, cmd: str, key: str | None = None) -> None:
        if self.token is None:
            info = read_runner(self.run_dir)
            self.token = info.token if info is not None else None
        self.channel.send(cmd, to=self.token, key=key)

    def returncode(self) -> int | None:
        """Exit status when this process started the runner and it has ended."""
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        info = live_runner(self.run_dir)
        return info is not None and (self.token is None or info.token == self.token)

    def wait(self, timeout_s: float) -> bool:
        """Wait until the runner is gone; True if it is."""
        deadline = time.monotonic() + timeout_s
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def log_tail(self, lines: int = 5) -> list[str]:
        try:
            with open(self.run_dir / RUNNER_LOG_NAME, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - 8192))
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return []
        return [ln for ln in text.splitlines() if ln.strip()][-lines:]

    def cleanup_failed_start(self) -> None:
        """A runner that exited before writing a manifest (bad input): remove what the launch
        made, so a failed validation leaves no empty run directory behind."""
        if not self.created_dir:
            return
        from mle_tui.core.store import RunStore

        RunStore(self.run_dir).remove_if_unused((RUNNER_LOG_NAME, "runner.json", "control.jsonl", "live.jsonl"))


def child_command(profile_file: Path, out_dir: Path, *, token: str, since: float, profile_path: str | None,
                  simulate: bool, record_format: str = "json") -> list[str]:
    cmd = [sys.executable, "-m", "mle_tui.tui.cli", "run", str(profile_file), "--out", str(out_dir),
           "--headless", "--detached-child", "--runner-token", token, "--control-since", repr(since),
           "--format", record_format]
    if profile_path:
        cmd += ["--profile-path", str(profile_path)]
    if simulate:
        cmd.append("--simulate")
    return cmd


def launch(profile, out_dir: Path, profile_path: str | None, *, simulate: bool,
           record_format: str = "json") -> DetachedRun:
    """Start the sweep of ``profile`` into ``out_dir`` in a detached runner process."""
    from ..core.toml_text import struct_to_toml

    out_dir = Path(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    token = new_token()
    since = time.time()
    # The profile as the app resolved it (form edits included); the child deletes it once read.
    prof_file = out_dir / f".launch-{token}.toml"
    prof_file.write_text(struct_to_toml(profile))
    log = open(out_dir / RUNNER_LOG_NAME, "ab")
    try:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} runner launched by pid "
                  f"{os.getpid()}\n".encode())
        log.flush()
        env = dict(os.environ)
        env.pop("TEXTUAL", None)
        proc = subprocess.Popen(
            child_command(prof_file, out_dir, token=token, since=since, profile_path=profile_path,
                          simulate=simulate, record_format=record_format),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True, env=env)
    finally:
        log.close()
    return DetachedRun(out_dir, token=token, proc=proc, created_dir=created, launched_at=since)
