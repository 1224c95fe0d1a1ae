"""The app's side of a sweep in its own process: start it detached, follow it (attach), watch it
end, offer to resume a stopped run directory and to reattach to the sweeps running on this host,
and leave quickly when the terminal is gone (the sweep does not need it)."""

from __future__ import annotations

from pathlib import Path

from ..core.profile import Profile
from .modals import ConfirmScreen


class DetachedRunsMixin:
    """Part of :class:`~mle_tui.tui.app.MleApp`."""

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

    def _start_detached(self, profile: Profile, profile_path: str | None, out_dir: Path) -> bool:
        from .sweep_process import DetachedRun, launch

        running = DetachedRun.find(out_dir)
        if running is not None:  # e.g. `mle-tui run PROFILE --out DIR` while DIR's sweep runs
            self.notify(f"{out_dir}: a sweep is already running there (pid {running.pid}); following it.",
                        severity="warning", timeout=10)
            self.attach(out_dir, handle=running)
            return True

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
