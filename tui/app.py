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
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from ..core.errors import InputError
from ..core.events import Event
from ..core.adaptive.spec import with_strategy
from ..core.profile import Profile, load_profile
from .form import shipped_profiles
from .gpus import GpuProbe, probe_gpus
from .app_control import RunControlMixin
from .app_detached import DetachedRunsMixin
from .app_inprocess import (EventsReady, InProcessRunMixin, RunEnded, RunnerFactory, RunnerLike,  # noqa: F401
                           default_runner_factory)
from .modals import HelpScreen

if TYPE_CHECKING:  # imported when a run is shown (numpy behind it): not on the first screen
    from .live import LiveState

REPO_ROOT = Path(__file__).resolve().parents[1]


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "run"


class MleApp(RunControlMixin, DetachedRunsMixin, InProcessRunMixin, App[int]):
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
        strategy: str | None = None,
    ) -> None:
        super().__init__()
        #: ``mle-tui run --adaptive``: the sweep strategy set over the profile's.
        self.strategy = strategy
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
        self.last_figures: list[Path] | None = None
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
                profile = with_strategy(load_profile(self.profile_path), self.strategy)
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
        if (m is not None and not m.finished and m.host == socket.gethostname() and info.profile() is not None
                and not self.run_active):  # a stopped sweep of this host: offer to finish it
            self._offer_resume(path, info)
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
            yield SystemCommand("Finish then stop", "Let the running configuration finish, then stop the sweep",
                                self.action_drain_run)
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


def run_app(profile_path: str | None = None, run_dir: str | None = None, attach: bool = False,
            strategy: str | None = None) -> int:
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
                 offer_reattach=profile_path is None and run_dir is None, strategy=strategy)
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
