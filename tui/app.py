"""The mle-tui Textual app: setup → run (live) → results, records browser, attach.

A sweep runs in its own process (tui/sweep_process.py): the app launches it detached and follows
its ``live.jsonl`` like ``attach``; skip and stop go through the run directory's control channel
(core/control.py), so any attached app can send them. Quitting asks: detach (the sweep keeps
running; ``mle-tui`` lists it and reattaches) or stop. Losing the terminal never stops the sweep,
and the app leaves within 2 s whatever Textual does (tui/terminal_watch.py).

Tests inject ``runner_factory``: the runner then runs in a thread worker of the app (the
in-process mode, a test seam) and its events are folded into the :class:`LiveState` directly.
Tests also inject a fake GPU probe and a frozen clock.
"""

from __future__ import annotations

import asyncio
import collections
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

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
from .modals import ConfirmScreen, HelpScreen

if TYPE_CHECKING:  # imported when a run is shown (numpy behind it): not on the first screen
    from .live import LiveState

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
        offer_reattach: bool = False,
    ) -> None:
        super().__init__()
        self.profile_path = profile_path
        self.start_dir = Path(run_dir) if run_dir else None
        self.attach_mode = attach
        #: None: sweeps run in a detached runner process; a factory: in this process (tests).
        self.runner_factory = runner_factory
        self.offer_reattach = offer_reattach
        #: Set by run_app: the watchdog that ends the process once the terminal is gone.
        self.terminal_watch: Any = None
        self.terminal_lost: str | None = None
        #: Why the app ended: "detached" when a sweep was left running.
        self.left_running: Path | None = None
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
        self._queue: collections.deque[Event] = collections.deque()
        self._wake = False
        self._run_done = threading.Event()
        self._run_done.set()

    # -- start-up -----------------------------------------------------------------------
    def on_mount(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.terminal_watch is None:
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
            if self.offer_reattach and self.profile_path is None:
                self._offer_reattach()

    def _offer_reattach(self) -> None:
        from ..core.runs_registry import running_sweeps
        from .detach_ui import RunningSweepsScreen

        sweeps = running_sweeps()
        if not sweeps:
            return

        def picked(run_dir: str | None) -> None:
            if run_dir:
                self.attach(Path(run_dir))

        self.push_screen(RunningSweepsScreen(sweeps), picked)

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
        """SIGHUP (terminal gone) or SIGTERM: an in-process run is stopped cleanly; a detached
        sweep keeps running (it does not need this terminal). Then exit."""
        if self.detached_run:
            self.left_running = self.run_dir
            self.exit(0)
            return
        if self.runner is not None and self.run_active:
            self.runner.request_stop()
        self.run_worker(self._stop_and_exit(), group="quit", exclusive=True)

    def on_terminal_lost(self, reason: str) -> None:
        """From the terminal watch (any thread, must not block)."""
        self.terminal_lost = reason
        try:
            self._loop.call_soon_threadsafe(self._on_terminate_signal, 0)
        except (AttributeError, RuntimeError):
            pass

    def ready_to_die(self) -> bool:
        """Nothing of this process is left to finish (an in-process run has ended)."""
        return self._run_done.is_set()

    @property
    def detached_run(self) -> bool:
        """A sweep of a runner process is being followed (and may be running)."""
        from .sweep_process import DetachedRun

        return isinstance(self.runner, DetachedRun) and self.run_active

    # -- screens --------------------------------------------------------------------------
    def open_run_dir(self, path: Path, info=None, root: bool = False) -> None:
        from ..core.procgroup import pid_alive
        from ..core.runs_registry import live_runner, read_runner
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
        if live_runner(path) is not None:
            self.attach(path)
            return
        if (m is not None and not m.finished and read_runner(path) is None and pid_alive(m.pid)
                and (path / "live.jsonl").exists()):
            self.attach(path)  # a writer that does not register (an older version): follow it
            return
        if m is not None and not m.finished and info.profile() is not None and not self.run_active:
            self._offer_resume(path, info)
            return
        self.open_results(path, info=info)

    def _offer_resume(self, path: Path, info) -> None:
        m = info.manifest
        done, total = len(info.records), len(m.configs)

        def answered(yes: bool | None) -> None:
            if yes:
                self.resume_run(path, info)
            else:
                self.open_results(path, info=info)

        self.push_screen(ConfirmScreen(f"{path.name}: stopped with {done} of {total} configurations "
                                       "done. Resume it (the rest of the sweep, same profile)?",
                                       yes="Resume", no="Results"), answered)

    def resume_run(self, path: Path, info=None) -> bool:
        """Run the configurations of ``path`` that have no record yet, with its own profile."""
        from .rundirs import load_run

        info = info or load_run(path)
        profile = info.profile()
        if profile is None:
            self.notify(f"{path}: no profile in run.json; cannot resume", severity="error")
            return False
        m = info.manifest
        return self.start_run(profile, m.profile_path if m is not None else None, out_dir=Path(path))

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

    def attach(self, path: Path, handle=None) -> None:
        """Follow the run of ``path`` (its ``live.jsonl``); with a runner process running it, skip
        and stop reach that process (``handle``: the one this app launched)."""
        from .detach_ui import AttachedRunScreen
        from .sweep_process import DetachedRun

        path = Path(path)
        handle = handle or DetachedRun.find(path)
        from .live import LiveState

        self.live = LiveState(now_s=self.now_s)
        self.live.run_dir = str(path)
        if handle is not None and not self.run_active:
            self.runner, self.run_dir = handle, path
            self.run_active, self.run_summary, self.run_error = True, None, None
            self._watch_timer = self.set_interval(0.25, self._watch_detached, name="runner-watch")
        self.push_screen(AttachedRunScreen(self.live, attach_dir=path, tick_s=self.tick_s))

    def _watch_detached(self) -> None:
        from .sweep_process import DetachedRun

        handle = self.runner
        if not isinstance(handle, DetachedRun) or not self.run_active or handle.alive():
            return
        self._watch_timer.stop()
        self.run_active = False
        rc = handle.returncode()
        screen = self.screen
        if hasattr(screen, "sync") and getattr(screen, "tail", None) is not None:
            screen.sync(force=True)  # the last events of live.jsonl
        live = self.live
        finished = live is not None and live.finished is not None
        if live is not None:
            live.stopping = False
        if finished and rc in (None, 0, 1):
            if not self.quitting:
                stopped = live.finished.stopped
                self.notify("Sweep stopped; finished records kept. Press r for results." if stopped
                            else "Sweep finished. Press r for results.", timeout=8)
            return
        if rc is None:
            why = (f"the runner process ({handle.pid}) ended before the sweep finished; "
                   "open the run directory to resume it")
        else:
            lines = handle.log_tail(3)
            why = lines[-1] if lines else f"the runner process ended (exit status {rc})"
        self.run_error = RuntimeError(why)
        if live is not None:
            live.error = why
            live.version += 1
        if rc == 2:
            handle.cleanup_failed_start()
        self.notify(f"The run failed: {why}", severity="error", timeout=15)

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
        if self.runner_factory is None:
            return self._start_detached(profile, profile_path, Path(out_dir))
        from .live import LiveState

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

    def _start_detached(self, profile: Profile, profile_path: str | None, out_dir: Path) -> bool:
        from .sweep_process import launch

        simulate = bool(profile.gpu.simulated or profile.gpu.allow_simulated or profile.runtime == "sim")
        try:
            handle = launch(profile, out_dir, profile_path, simulate=simulate)
        except OSError as exc:
            self.notify(f"{out_dir}: cannot start the sweep: {exc.strerror or exc}", severity="error", timeout=15)
            return False
        self.attach(out_dir, handle=handle)
        if self.live is not None:
            self.live.started_at_s = self.now_s()
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

        self.push_screen(ConfirmScreen("Skip the current configuration? It is recorded as skipped "
                                       "(run again on resume) and the sweep goes on."), done)

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
        if self.detached_run:
            self._watch_detached()  # the runner may have ended since the last check
        if not self.run_active:
            self.exit(0)
            return
        if self.detached_run:
            from .detach_ui import QuitScreen

            def chosen(answer: str | None) -> None:
                if answer == "detach":
                    self.left_running = self.run_dir
                    self.exit(0)
                elif answer == "stop":
                    self.run_worker(self._stop_and_exit(), group="quit", exclusive=True)

            self.push_screen(QuitScreen(getattr(self.runner, "pid", None), self.run_dir), chosen)
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
            detached = self.detached_run
            self.stop_run()
            self.notify("Stopping the sweep: restoring power limits, stopping the server…", timeout=30)
            deadline = time.monotonic() + self.stop_timeout_s
            if detached:
                while self.runner.alive() and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            else:
                while not self._run_done.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
        self.exit(0)

    def exit(self, result: Any = None, return_code: int = 0, message: Any = None) -> None:
        """Leaving the app stops an in-process run still going (the thread would otherwise keep
        the process alive); a runner process keeps running (detach)."""
        if self.run_active and self.runner is not None and not self.detached_run:
            self.stop_run()
        super().exit(result, return_code, message)

    def finish(self, timeout_s: float | None = None) -> bool:
        """After the app has exited: make sure a runner still going is stopped and joined.
        Returns True when no run is left running."""
        if self.runner is not None and self.runner_factory is not None and not self._run_done.is_set():
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
    from .terminal_watch import TerminalWatch

    app = MleApp(profile_path=profile_path, run_dir=run_dir, attach=attach,
                 offer_reattach=profile_path is None and run_dir is None)
    watch = TerminalWatch(on_lost=app.on_terminal_lost, ready=app.ready_to_die)
    app.terminal_watch = watch
    watch.install()
    try:
        rc = app.run()
    finally:
        watch.uninstall()
        ok = app.finish()
    if app.left_running is not None and app.terminal_lost is None:
        pid = getattr(app.runner, "pid", None)
        print(f"mle-tui: the sweep keeps running (pid {pid}) in {app.left_running}; "
              f"`mle-tui` or `mle-tui attach {app.left_running}` reattaches", file=sys.stderr)
    if not ok:
        return 1
    if app.run_error is not None:
        return 1
    return int(rc or 0) if isinstance(rc, int) else (app.return_code or 0)
