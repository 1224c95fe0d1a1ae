"""The control channel of a run directory: skip/stop/drain from any attached app to the runner.

``<run_dir>/control.jsonl`` is append-only; one JSON object per line::

    {"id": "9f1c…", "cmd": "skip", "to": "<runner token>" | null, "t": 1764441600.25, "pid": 4242,
     "key": "mns64-tp1-pl400"}

``cmd``: ``skip`` (the running configuration), ``stop`` (the sweep, now) or ``drain`` (the
running configuration(s) finish and are written, none starts after them, the sweep ends).
``key`` (skip only, optional): the configuration to skip — a cluster run skips it on whichever
node runs it, the others go on. Without it (older senders, one-host runs): the running one(s).

Senders (:meth:`ControlChannel.send`) append one short line with a single ``write`` on an
``O_APPEND`` descriptor under ``flock`` (atomic between processes; a line is far below
``PIPE_BUF``). The runner (:meth:`ControlChannel.poll`, ~5 Hz: one ``stat`` when nothing came)
reads complete new lines from its offset and returns the commands addressed to it:

- ``to`` equal to its token, or ``to`` null and ``t`` at or after the runner's ``since``
  (when it was launched), so a ``stop`` left by an earlier runner in the same directory never
  stops a resumed one;
- each ``id`` once (a sender that retries with the same id is obeyed once).

Unknown commands and lines that do not decode are ignored (a newer writer). No pid guessing:
the runner is whoever polls the file.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec

CONTROL_NAME = "control.jsonl"
COMMANDS = ("skip", "stop", "drain")


class ControlMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    cmd: str
    to: str | None = None
    t: float = 0.0
    pid: int | None = None
    #: ``skip``: the configuration it targets (None: the running one, every one in a cluster).
    key: str | None = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ControlMessage)


class ControlChannel:
    """One run directory's channel. App side: :meth:`send`; runner side: :meth:`poll`."""

    def __init__(self, run_dir: Path | str, *, token: str | None = None, since: float | None = None) -> None:
        """``token``/``since``: the runner's identity and launch time (runner side only)."""
        self.path = Path(run_dir) / CONTROL_NAME
        self.token = token
        self.since = time.time() if since is None else since
        self._offset = 0
        self._partial = b""
        self._seen: set[str] = set()

    # -- app side ---------------------------------------------------------------------------
    def send(self, cmd: str, *, to: str | None = None, msg_id: str | None = None, key: str | None = None) -> str:
        """Append a command (``key``: the configuration a ``skip`` targets); returns its id.
        Raises ValueError for an unknown command and OSError when the run directory cannot be
        written."""
        if cmd not in COMMANDS:
            raise ValueError(f"unknown control command {cmd!r} (one of {', '.join(COMMANDS)})")
        msg = ControlMessage(id=msg_id or uuid.uuid4().hex, cmd=cmd, to=to, t=time.time(), pid=os.getpid(),
                             key=key if cmd == "skip" else None)
        line = _encoder.encode(msg) + b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                os.write(fd, line)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        return msg.id

    # -- runner side ------------------------------------------------------------------------
    def poll(self) -> list[str]:
        """New commands for this runner, oldest first (cheap when there are none)."""
        return [m.cmd for m in self.poll_messages()]

    def poll_messages(self) -> list[ControlMessage]:
        """As :meth:`poll`, the whole messages (a skip's ``key``)."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return []
        if size < self._offset:  # replaced or truncated: read it again (ids keep it idempotent)
            self._offset, self._partial = 0, b""
        if size == self._offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read(size - self._offset)
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        out: list[ControlMessage] = []
        for raw in lines:
            if not raw.strip():
                continue
            try:
                msg = _decoder.decode(raw)
            except msgspec.MsgspecError:
                continue
            if msg.cmd not in COMMANDS or msg.id in self._seen:
                continue
            if msg.to is not None:
                if msg.to != self.token:
                    continue
            elif msg.t < self.since:
                continue
            self._seen.add(msg.id)
            out.append(msg)
        return out


def follow_control(channel: ControlChannel, on_skip: Callable[[str | None], None], on_stop: Callable[[], None],
                   done: threading.Event, period_s: float = 0.2,
                   on_drain: Callable[[], None] | None = None) -> None:
    """Poll ``channel`` every ``period_s`` until ``done`` is set; 'skip' → ``on_skip(key)``
    (None: the running one(s)), 'stop' → ``on_stop()``, 'drain' → ``on_drain()`` (ignored
    without one). Run it in a daemon thread beside the sweep."""
    while True:
        try:
            msgs = channel.poll_messages()
        except OSError:
            msgs = []
        for msg in msgs:
            if msg.cmd == "skip":
                on_skip(msg.key)
            elif msg.cmd == "drain":
                if on_drain is not None:
                    on_drain()
            else:
                on_stop()
        if done.wait(period_s):
            return


def start_control_thread(run_dir: Path | str, runner, *, token: str | None = None,
                         since: float | None = None) -> threading.Event:
    """Start :func:`follow_control` for ``runner`` (``request_skip(key)``/``request_stop``/
    ``request_drain``) in a daemon thread; set the returned event to end it."""
    done = threading.Event()
    channel = ControlChannel(run_dir, token=token, since=since)
    threading.Thread(target=follow_control, args=(channel, runner.request_skip, runner.request_stop, done),
                     kwargs={"on_drain": getattr(runner, "request_drain", None)},
                     name="mle-tui-control", daemon=True).start()
    return done
