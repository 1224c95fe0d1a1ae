"""The in-process run: the runner in a thread worker of the app, its events folded into the live
state on the UI thread. A test seam (``MleApp(runner_factory=...)``): users' sweeps run in a
detached runner process (app_detached.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from textual import work
from textual.message import Message

from ..core.events import Event
from ..core.profile import Profile


class RunnerLike(Protocol):
    def run(self) -> Any: ...
    def request_skip(self, key: str | None = None) -> None: ...  # key: a cluster run's target
    def request_stop(self) -> None: ...
    def request_drain(self) -> None: ...  # the running configuration finishes, then the sweep ends


#: (profile, out_dir, listener, profile_path) -> runner
RunnerFactory = Callable[[Profile, Path, Callable[[Event], None], str | None], RunnerLike]


def default_runner_factory(profile: Profile, out_dir: Path, listener: Callable[[Event], None],
                           profile_path: str | None) -> RunnerLike:
    from ..core.runner import SweepRunner  # lazy: may import Zeus (seconds)

    allow = True if (profile.gpu.simulated or profile.gpu.allow_simulated or profile.runtime == "sim") else None
    return SweepRunner(profile, out_dir, profile_path=profile_path, listener=listener, allow_simulated=allow)


class EventsReady(Message):
    """Events are waiting in the app's queue (posted from the runner's thread)."""


class RunEnded(Message):
    def __init__(self, summary: Any, error: BaseException | None) -> None:
        super().__init__()
        self.summary = summary
        self.error = error


class InProcessRunMixin:
    """Part of :class:`~mle_tui.tui.app.MleApp`."""

    def _listener(self, event: Event) -> None:
        """Called by the runner, on its thread: queue the event, wake the UI once."""
        self._queue.append(event)
        if not self._wake:
            self._wake = True
            self.post_message(EventsReady())

    def on_events_ready(self, _: EventsReady) -> None:
        self._wake = False
        self._drain()

    def _drain(self, limit: int = 50_000) -> None:
        live, q = self.live, self._queue
        n = 0
        while q and n < limit:
            ev = q.popleft()
            if live is not None:
                live.apply(ev)
            n += 1
        if q and not self._wake:
            self._wake = True
            self.post_message(EventsReady())

    @work(thread=True, exclusive=True, group="run", exit_on_error=False)
    def _run_in_thread(self) -> None:
        runner = self.runner
        summary, error = None, None
        try:
            summary = runner.run()
        except BaseException as exc:  # reported on the UI; the runner restores limits itself
            error = exc
        finally:
            self._run_done.set()
            self.post_message(RunEnded(summary, error))

    def on_run_ended(self, message: RunEnded) -> None:
        self._drain()
        self.run_active = False
        self.run_summary, self.run_error = message.summary, message.error
        if self.live is not None:
            self.live.stopping = False
            if message.error is not None:
                self.live.error = f"{type(message.error).__name__}: {message.error}"
                self.live.version += 1
        if message.error is not None:
            self.notify(f"The run failed: {message.error!r}", severity="error", timeout=15)
        elif not self.quitting:
            stopped = bool(getattr(message.summary, "stopped", False))
            self.notify("Sweep stopped; finished records kept. Press r for results." if stopped
                        else "Sweep finished. Press r for results.", timeout=8)
