"""The runner process: ``mle-tui run --headless`` in the foreground, and the detached child the
app launches (``--detached-child``, see tui/sweep_process.py). No Textual.

Both register on this host (core.runs_registry: listed by ``mle-tui``, reattachable) and obey
skip/stop from the run directory's control channel (core.control). The detached child ignores
SIGHUP (it has no terminal; a stray hangup must not end a long sweep) and runs the sweep in a
worker thread so that the runner's own SIGHUP handler is not installed; SIGTERM and SIGINT stop
the sweep cleanly, as in the foreground.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mle_tui.core.errors import InputError

PROG = "mle-tui"


def profiles_same(a, b) -> bool:
    """The same sweep, whatever the text: axes compared as the values they expand to."""
    from mle_tui.core.profile_checks import profiles_equal

    return bool(profiles_equal(a, b))


def resumable_profile(profile, out: Path):
    """The profile to hand the runner: the run directory's own (its manifest text) when it is
    the same sweep written differently (``tensor_parallel = "1"`` vs ``1``), so the runner's
    byte-wise check accepts the resume; else ``profile`` unchanged (the runner refuses it)."""
    from mle_tui.core.profile import decode_profile
    from mle_tui.core.store import RunStore

    try:
        manifest = RunStore(out).read_manifest()
    except InputError:
        return profile
    if manifest is None or not manifest.profile_toml:
        return profile
    try:
        earlier = decode_profile(manifest.profile_toml, str(out / "run.json"))
    except InputError:
        return profile
    return earlier if profiles_same(profile, earlier) else profile


def run_headless(profile, out: Path, *, profile_path: str | None, simulate: bool, record_format: str,
                 token: str | None, since: float | None, detached: bool,
                 on_done: Callable[[Path, str | None, str | None], None] | None = None,
                 runner_factory: Callable[..., object] | None = None) -> int:
    """Run the sweep in this process; progress on stderr. Exit status as ``mle-tui run``."""
    from mle_tui.core import runs_registry as reg
    from mle_tui.core.control import start_control_thread
    from mle_tui.tui.headless import ProgressPrinter, batches_per_config

    out = Path(out)
    profile = resumable_profile(profile, out)
    printer = ProgressPrinter(sys.stderr, batches_per_config=batches_per_config(profile))
    if runner_factory is None:
        from mle_tui.core.runner import SweepRunner as runner_factory  # noqa: N813
    runner = runner_factory(
        profile, out, profile_path=profile_path, listener=printer,
        allow_simulated=True if simulate else None, record_format=record_format,
    )
    token = token or reg.new_token()
    old: dict[int, object] = {}
    if detached:
        old[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGINT):
            old[sig] = signal.signal(sig, lambda *_: runner.request_stop())
    info = None
    control_done = None
    try:
        getattr(runner, "prepare", lambda: None)()  # bad input: InputError before anything is registered
        info = reg.register(out, token, detached=detached)
        # For a runner that polls core.control itself (polls_control = True): whom to obey.
        runner.control_token, runner.control_since = token, since or time.time()
        if not getattr(runner, "polls_control", False):
            # Until the runner polls core.control itself (see the module's docstring).
            control_done = start_control_thread(out, runner, token=token, since=since or time.time())
        summary = _run_in_worker(runner) if detached else runner.run()
    except InputError as exc:
        raise exc.with_source(str(profile_path)) if profile_path else exc from None
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished records are kept in {out} "
              f"(rerun with --out {out} to resume)", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a crash of the runner is a run failure
        print(f"{PROG}: run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        if control_done is not None:
            control_done.set()
        if info is not None:
            reg.unregister(info)
        for sig, handler in old.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
    if on_done is not None:
        on_done(out, None, None)
    if summary.stopped:
        print(f"{PROG}: sweep stopped early; rerun with --out {out} to resume", file=sys.stderr)
        return 1
    if summary.failed:
        print(f"{PROG}: {summary.failed} configuration(s) failed; see {out}/records", file=sys.stderr)
        return 1
    return 0


def _run_in_worker(runner):
    """``runner.run()`` in a thread (the main thread keeps taking signals); its result or error."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["summary"] = runner.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            box["error"] = exc

    th = threading.Thread(target=target, name="mle-tui-sweep")
    th.start()
    while th.is_alive():
        th.join(0.2)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["summary"]
