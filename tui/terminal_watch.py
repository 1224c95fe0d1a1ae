"""Leave within 2 s of losing the terminal, whatever Textual does.

Textual 8.2.8 can hang for ever when its terminal goes away: the writer thread dies on EIO, its
bounded queue fills, and the main thread blocks in ``WriterThread.stop`` → ``queue.put`` (SIGTERM
then never gets through the event loop). The sweep runs in its own process, so the app can exit
hard once nothing of its own is left to finish.

:class:`TerminalWatch` is a daemon thread that needs no lock the main thread could hold:

- the terminal is gone when SIGHUP (or SIGTERM) arrives — the handlers are plain Python signal
  handlers, which run even while the main thread waits in ``queue.put`` — or when ``poll`` reports
  ``POLLHUP``/``POLLERR``/``POLLNVAL`` on the terminal descriptors (a hangup without SIGHUP);
- then it asks the app to exit (``call_soon_threadsafe``, never blocking), waits until the app
  says nothing is left to finish (an in-process run: stopped), and ``os._exit`` s after
  ``grace_s`` if the process is still there.
"""

from __future__ import annotations

import os
import select
import signal
import termios
import threading
import time
from collections.abc import Callable

#: Exit status when the terminal was lost (128 + SIGHUP).
LOST_STATUS = 129


class TerminalWatch:
    def __init__(self, *, on_lost: Callable[[str], None], ready: Callable[[], bool],
                 grace_s: float = 1.0, period_s: float = 0.1, fds: tuple[int, ...] = (0, 1),
                 exit_fn: Callable[[int], None] = os._exit) -> None:
        """``on_lost(reason)``: called once, from this thread (must not block); ``ready()``: True
        when the process may exit (nothing of its own left to finish)."""
        self.on_lost = on_lost
        self.ready = ready
        self.grace_s = grace_s
        self.period_s = period_s
        self.fds = tuple(fd for fd in fds if _isatty(fd))
        self.exit_fn = exit_fn
        self.reason: str | None = None
        self._notified = False
        self._deadline: float | None = None
        self._stopped = False
        self._old: dict[int, object] = {}
        self._attrs = None
        self._thread = threading.Thread(target=self._loop, name="mle-tui-terminal-watch", daemon=True)

    # -- set-up (main thread) ---------------------------------------------------------------
    def install(self) -> None:
        if self.fds:
            try:
                self._attrs = termios.tcgetattr(self.fds[0])
            except termios.error:
                self._attrs = None
        for sig in (signal.SIGHUP, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._on_signal)
        self._thread.start()

    def uninstall(self) -> None:
        """After the app ended normally: the watch stands down, the handlers are restored."""
        self._stopped = True
        for sig, handler in self._old.items():
            try:
                signal.signal(sig, handler)  # type: ignore[arg-type]
            except (ValueError, TypeError):
                pass

    def _on_signal(self, signum: int, _frame) -> None:
        # Only plain assignments here: the main thread may be anywhere.
        if self.reason is None:
            self.reason = signal.Signals(signum).name

    # -- the watch --------------------------------------------------------------------------
    def _hung_up(self) -> bool:
        if not self.fds:
            return False
        p = select.poll()
        for fd in self.fds:
            p.register(fd, 0)  # only POLLHUP/POLLERR/POLLNVAL are reported
        try:
            return any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in p.poll(0))
        except OSError:
            return True

    def _loop(self) -> None:
        while not self._stopped:
            time.sleep(self.period_s)
            if self._stopped:
                return
            if self.reason is None and self._hung_up():
                self.reason = "terminal hung up"
            if self.reason is None:
                continue
            if not self._notified:
                self._notified = True
                try:
                    self.on_lost(self.reason)
                except Exception:  # noqa: BLE001 - exiting anyway
                    pass
            if self._deadline is None:
                try:
                    ok = self.ready()
                except Exception:  # noqa: BLE001
                    ok = True
                if ok:
                    self._deadline = time.monotonic() + self.grace_s
            elif time.monotonic() >= self._deadline and not self._stopped:
                self._restore_terminal()
                self.exit_fn(LOST_STATUS if self.reason != "SIGTERM" else 128 + signal.SIGTERM)
                return

    def _restore_terminal(self) -> None:
        """Best effort, never blocking: the terminal modes, if the terminal is still there."""
        if self._attrs is None or self._hung_up():
            return
        try:
            termios.tcsetattr(self.fds[0], termios.TCSANOW, self._attrs)
        except (termios.error, OSError):
            pass


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False
