"""Skip, stop, finish-then-stop (drain) and quit while a sweep runs: the confirmations and what
they send (the runner's ``request_skip``/``request_stop``/``request_drain``, in-process or through
the run directory's control channel).
In a cluster run skip targets the configuration on the node the cluster view selects (``n``).
A mixin of :class:`~.app.MleApp`."""

from __future__ import annotations

import asyncio
import time

from .modals import ConfirmScreen


class RunControlMixin:
    """Needs the app's ``run_active``, ``runner``, ``live``, ``run_dir``, ``detached_run``,
    ``left_running``, ``quitting``, ``stop_timeout_s`` and ``_run_done``."""

    def action_skip_config(self) -> None:
        if not self.run_active or self.runner is None:
            return
        from .live_nodes import skip_target

        # A cluster run: the configuration running on the node the cluster view selects (n).
        live = self.live
        node = live.nodes.selected if live is not None and live.nodes else None
        target = skip_target(live) if node is not None else None
        if node is not None and target is None:
            self.notify(f"Node {node} runs no configuration now (n: the next node).", timeout=6)
            return
        key = target[1] if target else None
        what = f"{target[1]} ({target[2]}) on node {node}" if target else "the current configuration"

        def done(yes: bool | None) -> None:
            if yes and self.run_active and self.runner is not None and self._reach(self.runner.request_skip, key):
                self.notify(f"Skipping {what}…")

        others = " The other nodes go on." if target else ""
        self.push_screen(ConfirmScreen(f"Skip {what}? It is recorded as skipped (run again on resume) "
                                       f"and the sweep goes on.{others}"), done)

    def action_stop_run(self) -> None:
        if not self.run_active or self.runner is None:
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.stop_run()

        self.push_screen(ConfirmScreen("Stop the sweep? The current configuration is stopped, power "
                                       "limits are restored, finished records are kept."), done)

    def action_drain_run(self) -> None:
        """Let the configuration(s) running now finish and be written, start no other, end the
        sweep (limits restored; the rest resume on a later run of the directory)."""
        if not self.run_active or self.runner is None:
            return
        live = self.live
        if live is not None and (live.stopping or live.draining):
            self.notify("The sweep is already stopping.", timeout=4)
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.drain_run()

        self.push_screen(ConfirmScreen(
            "Finish the running configuration, then stop the sweep? It is measured and recorded as "
            "usual, no other starts, power limits are restored; the rest resume on a later run of "
            "this directory. (x stops at once.)", yes="Finish then stop", no="Keep running"), done)

    def drain_run(self) -> None:
        if not (self.run_active and self.runner is not None):
            return
        drain = getattr(self.runner, "request_drain", None)
        if drain is None:
            self.notify("This runner cannot finish then stop; x stops it.", severity="warning", timeout=8)
            return
        if not self._reach(drain):
            return
        if self.live is not None:
            self.live.draining = True  # the run screen's header says so until the run ends
            self.live.version += 1
        self.notify("Finishing the running configuration, then stopping…")

    def stop_run(self) -> None:
        if self.run_active and self.runner is not None and self._reach(self.runner.request_stop):
            if self.live is not None:
                self.live.stopping = True

    def _reach(self, request, *args) -> bool:  # noqa: ANN001
        """Call one of the runner's ``request_*``; False (and said) when the control channel
        cannot be written (permissions, disk)."""
        try:
            request(*args)
        except OSError as exc:
            self.notify(f"Cannot reach the runner: {exc}", severity="error", timeout=10)
            return False
        return True

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
                if self.live is not None and not self.live.stopping:  # the stop could not be sent
                    self.left_running = self.run_dir
                    self.exit(0)
                    return
                while self.runner.alive() and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
            else:
                while not self._run_done.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
        self.exit(0)
