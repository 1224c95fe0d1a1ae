"""The mle-tui Textual app: setup → run (live) → results, records browser, attach.

The app drives the core: it builds a runner through ``runner_factory`` (default: the core's
:class:`~mle_tui.core.runner.SweepRunner`, imported only when a run starts), runs it in a
thread worker owned by the App, and folds its events into a :class:`LiveState` on the UI
thread. Tests inject a fake runner factory, a fake GPU probe and a frozen clock.
"""

from __future__ import annotations

import asyncio
import collections
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from ..core.errors import InputError
from ..core.events import Event
from ..core.profile import Profile, load_profile
from .form import shipped_profiles
from .gpus import GpuProbe, probe_gpus
from .live import LiveState
from .modals import ConfirmScreen, HelpScreen

REPO_ROOT = Path(__file__).resolve().parents[1]


class RunnerLike(Protocol):
    def run(self) -> Any: ...
    def request_skip(self) -> None: ...
    def request_stop(self) -> None: ...


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


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"


class MleApp(App[int]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "mle-tui"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("q", "quit", "Quit", show=False),
        Binding("question_mark", "help", "Keys", show=False),
        Binding("f1", "help", "Keys", show=False),
    ]

    def __init__(
        self,
        *,
        profile_path: str | None = None,
        run_dir: str | Path | None = None,
        attach: bool = False,
        runner_factory: RunnerFactory | None = None,
        gpu_probe: Callable[[], GpuProbe] = probe_gpus,
        now_s: Callable[[], float] = time.time,
        runs_root: Path | None = None,
        records_roots: list[Path] | None = None,
        profiles: list[Path] | None = None,
        tick_s: float = 0.25,
        cursor_blink: bool = True,
        stop_timeout_s: float = 120.0,
    ) -> None:
        super().__init__()
        self.profile_path = profile_path
        self.start_dir = Path(run_dir) if run_dir else None
        self.attach_mode = attach
        self.runner_factory = runner_factory or default_runner_factory
        self.gpu_probe = gpu_probe
        self.now_s = now_s
        self.runs_root = runs_root or Path("runs")
        self.records_roots = records_roots or _default_records_roots()
        self.profiles = profiles if profiles is not None else shipped_profiles()
        self.tick_s = tick_s
        self.cursor_blink_enabled = cursor_blink
        self.stop_timeout_s = stop_timeout_s
        self.gpu_info: GpuProbe | None = None
        self.live: LiveState | None = None
        self.runner: RunnerLike | None = None
        self.run_dir: Path | None = None
        self.run_active = False
        self.run_summary: Any = None
        self.run_error: BaseException | None = None
        self.quitting = False
        self.last_export: Path | None = None
        self.last_copied: str | None = None
        self.last_figures: list[Path] | None = None
        self._queue: collections.deque[Event] = collections.deque()
        self._wake = False
        self._run_done = threading.Event()
        self._run_done.set()

    # -- start-up -----------------------------------------------------------------------
    def on_mount(self) -> None:
        self._install_signal_handlers()
        if self.start_dir is not None and self.attach_mode:
            self.attach(self.start_dir)
        elif self.start_dir is not None and self.profile_path is not None:
            # `mle-tui run PROFILE [--out DIR]`: run it now (resuming DIR if it has records).
            self.push_setup(self.profile_path)
            try:
                profile = load_profile(self.profile_path)
            except InputError as exc:
                self.notify(exc.line(), severity="error", timeout=15)
                return
            self.start_run(profile, self.profile_path, out_dir=self.start_dir)
        elif self.start_dir is not None:
            self.open_run_dir(self.start_dir, root=True)
        else:
            self.push_setup(self.profile_path)

    def push_setup(self, initial: str | None = None) -> None:
        from .screen_setup import SetupScreen

        profiles = list(self.profiles)
        if initial and Path(initial) not in profiles:
            profiles.insert(0, Path(initial))
        self.push_screen(SetupScreen(profiles, initial=initial))

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGHUP, signal.SIGTERM):
                loop.add_signal_handler(sig, self._on_terminate_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass

    def _on_terminate_signal(self, sig: int) -> None:
        """SIGHUP (terminal gone) or SIGTERM: stop the run cleanly, then exit."""
        if self.runner is not None and self.run_active:
            self.runner.request_stop()
        self.run_worker(self._stop_and_exit(), group="quit", exclusive=True)

    # -- screens --------------------------------------------------------------------------
    def open_run_dir(self, path: Path, info=None, root: bool = False) -> None:
        from ..core.procgroup import pid_alive
        from .rundirs import find_run_dirs, is_run_dir, load_run
        from .screen_records import RecordsScreen

        path = Path(path)
        if not is_run_dir(path):
            if root and find_run_dirs([path]):
                self.push_screen(RecordsScreen([path]))
                return
            self.notify(f"{path}: not a run directory", severity="error")
            if root:
                self.push_screen(RecordsScreen([path]))
            return
        info = info or load_run(path)
        m = info.manifest
        if m is not None and not m.finished and pid_alive(m.pid) and (path / "live.jsonl").exists():
            self.attach(path)
            return
        self.open_results(path, info=info)

    def open_results(self, path: Path, info=None) -> None:
        from .rundirs import load_run
        from .screen_results import ResultsScreen

        info = info or load_run(path)
        if info.error:
            self.notify(info.error, severity="error")
        if not info.records:
            self.notify(f"{path}: no finished configuration yet", severity="warning")
            if len(self.screen_stack) > 1:
                return
        self.push_screen(ResultsScreen(info))

    def attach(self, path: Path) -> None:
        from .screen_run import RunScreen

        self.live = LiveState(now_s=self.now_s)
        self.live.run_dir = str(path)
        self.push_screen(RunScreen(self.live, attach_dir=Path(path), tick_s=self.tick_s))

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_records(self) -> None:
        from .screen_records import RecordsScreen

        roots = list(self.records_roots)
        if self.run_dir is not None:
            roots.append(self.run_dir.parent)
        self.push_screen(RecordsScreen(_unique(roots)))

    def action_setup(self) -> None:
        from .screen_setup import SetupScreen

        for s in self.screen_stack:
            if isinstance(s, SetupScreen):
                while self.screen is not s:
                    self.pop_screen()
                return
        self.push_setup()

    def action_show_run(self) -> None:
        from .screen_run import RunScreen

        if any(isinstance(s, RunScreen) for s in self.screen_stack):
            while not isinstance(self.screen, RunScreen):
                self.pop_screen()

    def action_results(self) -> None:
        if self.run_dir is not None:
            self.open_results(self.run_dir)
        else:
            self.action_records()

    # -- command palette ------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        from .screen_records import CompareScreen
        from .screen_results import ResultsScreen
        from .screen_setup import SetupScreen

        yield SystemCommand("Keys", "Show the keys of every screen (?)", self.action_help)
        if isinstance(screen, SetupScreen):
            yield SystemCommand("Start sweep", "Start the sweep set up on this screen (ctrl+r)",
                                screen.action_start)
        if self.run_active:
            yield SystemCommand("Skip configuration", "Stop the current configuration, go on", self.action_skip_config)
            yield SystemCommand("Stop sweep", "Stop the sweep cleanly (limits restored)", self.action_stop_run)
            yield SystemCommand("Show run", "Back to the live run", self.action_show_run)
        yield SystemCommand("Records", "Browse run directories and compare runs", self.action_records)
        yield SystemCommand("Setup", "Pick a profile and set up a sweep", self.action_setup)
        if self.run_dir is not None:
            yield SystemCommand("Results", "Pareto table and recommendation of the current run", self.action_results)
        if isinstance(screen, ResultsScreen):
            yield SystemCommand("Export", "Export records and the Pareto table (CSV)", screen.action_export)
            yield SystemCommand("Copy recommended", "Copy the recommended configuration (OSC 52)", screen.action_copy)
            yield SystemCommand("Export figures", "Pareto front, energy vs batch, timelines as PNG (f)",
                                screen.action_figures)
        if isinstance(screen, CompareScreen):
            yield SystemCommand("Export figures", "The runs' fronts on one chart, PNG (f)", screen.action_figures)
        yield SystemCommand("Quit", "Quit (asks first during a run)", self.action_quit)
        yield from (c for c in super().get_system_commands(screen) if c.title not in ("Quit", "Keys"))

    # -- running --------------------------------------------------------------------------
    def start_run(self, profile: Profile, profile_path: str | None, out_dir: Path | None = None) -> bool:
        from .screen_run import RunScreen

        if self.run_active:
            self.notify("A sweep is already running.", severity="warning")
            return False
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.now_s()))
        out_dir = out_dir or self.runs_root / f"{_safe_name(profile.name)}-{stamp}"
        live = LiveState(now_s=self.now_s)
        live.run_dir = str(out_dir)
        live.started_at_s = self.now_s()
        try:
            runner = self.runner_factory(profile, Path(out_dir), self._listener, profile_path)
        except InputError as exc:
            self.notify(exc.line(), severity="error", timeout=10)
            return False
        self.live, self.runner, self.run_dir = live, runner, Path(out_dir)
        self.run_active, self.run_summary, self.run_error = True, None, None
        self._run_done.clear()
        self.push_screen(RunScreen(live, tick_s=self.tick_s))
        self._run_in_thread()
        return True

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

    def action_skip_config(self) -> None:
        if not self.run_active or self.runner is None:
            return

        def done(yes: bool | None) -> None:
            if yes and self.run_active and self.runner is not None:
                self.runner.request_skip()
                self.notify("Skipping the current configuration…")

        self.push_screen(ConfirmScreen("Skip the current configuration? It is recorded as failed "
                                       "(skipped by user) and the sweep goes on."), done)

    def action_stop_run(self) -> None:
        if not self.run_active or self.runner is None:
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.stop_run()

        self.push_screen(ConfirmScreen("Stop the sweep? The current configuration is stopped, power "
                                       "limits are restored, finished records are kept."), done)

    def stop_run(self) -> None:
        if self.run_active and self.runner is not None:
            if self.live is not None:
                self.live.stopping = True
            self.runner.request_stop()

    async def action_quit(self) -> None:
        if not self.run_active:
            self.exit(0)
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._stop_and_exit(), group="quit", exclusive=True)

        self.push_screen(ConfirmScreen("A sweep is running. Stop it and quit? (power limits are "
                                       "restored, the server is stopped, finished records kept)",
                                       yes="Stop and quit", no="Keep running"), done)

    async def _stop_and_exit(self) -> None:
        self.quitting = True
        if self.run_active and self.runner is not None:
            self.stop_run()
            self.notify("Stopping the sweep: restoring power limits, stopping the server…", timeout=30)
            deadline = time.monotonic() + self.stop_timeout_s
            while not self._run_done.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        self.exit(0)

    def exit(self, result: Any = None, return_code: int = 0, message: Any = None) -> None:
        """Leaving the app always stops a run still going (the thread would otherwise keep the
        process alive): the runner restores limits and kills its children."""
        if self.run_active and self.runner is not None:
            self.stop_run()
        super().exit(result, return_code, message)

    def finish(self, timeout_s: float | None = None) -> bool:
        """After the app has exited: make sure a runner still going is stopped and joined.
        Returns True when no run is left running."""
        if self.runner is not None and not self._run_done.is_set():
            self.runner.request_stop()
            return self._run_done.wait(self.stop_timeout_s if timeout_s is None else timeout_s)
        return True


def _default_records_roots() -> list[Path]:
    roots = [REPO_ROOT / "records", Path.cwd() / "records", Path.cwd() / "runs"]
    return _unique(roots)


def _unique(paths: list[Path]) -> list[Path]:
    out: dict[Path, None] = {}
    for p in paths:
        try:
            out.setdefault(Path(p).resolve(), None)
        except OSError:
            continue
    return list(out)


def run_app(profile_path: str | None = None, run_dir: str | None = None, attach: bool = False) -> int:
    """Entry point for ``mle-tui`` (setup; with ``profile_path``, that profile selected),
    ``mle-tui run PROFILE`` (``profile_path`` and ``run_dir``: the sweep starts at once, into
    ``run_dir``, resuming it), ``mle-tui open DIR`` and ``mle-tui attach DIR``.

    Bad input (a profile that does not load, a missing directory) raises
    :class:`~mle_tui.core.errors.InputError` before the UI starts, for the CLI to print."""
    if profile_path is not None:
        load_profile(profile_path)  # raises InputError: one line, exit 2 in the CLI
    if run_dir is not None and profile_path is None and not Path(run_dir).is_dir():
        raise InputError(str(run_dir), "", "no such run directory")
    if attach and run_dir is None:
        raise InputError("attach", "DIR", "a run directory is required")
    app = MleApp(profile_path=profile_path, run_dir=run_dir, attach=attach)
    # SIGHUP before the loop starts, or after it ends, must still stop a run.
    prev = signal.getsignal(signal.SIGHUP)
    try:
        rc = app.run()
    finally:
        ok = app.finish()
        signal.signal(signal.SIGHUP, prev)
    if not ok:
        return 1
    if app.run_error is not None:
        return 1
    return int(rc or 0) if isinstance(rc, int) else (app.return_code or 0)
