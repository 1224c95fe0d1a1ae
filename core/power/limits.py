"""Power limits as a sweep dimension, always restored.

:class:`PowerLimitGuard` writes the original limits to a state file *before* changing anything,
sets the requested limit, reads back the enforced value, and restores the originals on exit
(normal, exception, or a signal the caller turned into an exception or cancellation). If the
process is killed outright (SIGKILL, power loss), the state file survives and
:func:`restore_stale` — called at the next start — puts the original limits back.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType

from ..errors import InputError
from ..procgroup import pid_alive
from .base import PowerLimiter

STATE_VERSION = 1
#: Limits within this many watts of the request count as enforced (NVML works in mW).
TOLERANCE_W = 1.0


def default_state_path() -> Path:
    """``$XDG_STATE_HOME/mle-tui/power_limits-HOST.json`` (``~/.local/state`` by default). The
    host name keeps nodes that share a home directory from restoring each other's GPUs."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "localhost"
    return Path(base) / "mle-tui" / f"power_limits-{host}.json"


def _write_state(path: Path, originals: dict[int, float]) -> None:
    from ..store import atomic_write

    payload = {
        "version": STATE_VERSION,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "created_unix_s": time.time(),
        "original_limits_w": {str(k): v for k, v in sorted(originals.items())},
    }
    atomic_write(path, (json.dumps(payload, indent=1) + "\n").encode())


def read_state(path: Path) -> dict | None:
    """The state file's content, or None if absent. A corrupt file is an InputError."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(str(path), "", exc.strerror or str(exc)) from None
    try:
        data = json.loads(text)
        limits = {int(k): float(v) for k, v in data["original_limits_w"].items()}
        data["original_limits_w"] = limits
        data["pid"] = int(data.get("pid", 0))
        return data
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(str(path), "original_limits_w", f"corrupt power-limit state file ({exc})") from None


def _remove(path: Path | None) -> None:
    if path is None:
        return
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass


def restore_stale(state_path: Path, limiter: PowerLimiter, *, force: bool = False) -> dict[int, float]:
    """Restore limits left changed by a process that died without restoring them.

    Returns the limits restored ({} if there was nothing to do). A state file owned by a live
    process (another sweep in progress) is left alone unless ``force``. The file is removed only
    after every GPU was restored."""
    state = read_state(state_path)
    if state is None:
        return {}
    pid = state["pid"]
    if state.get("host", socket.gethostname()) != socket.gethostname():
        return {}  # another node's GPUs (shared home directory): not ours to touch
    if not force and pid != os.getpid() and pid_alive(pid):
        return {}
    originals: dict[int, float] = state["original_limits_w"]
    errors = []
    for index, limit in sorted(originals.items()):
        try:
            if abs(limiter.get_limit_w(index) - limit) > TOLERANCE_W:
                limiter.set_limit_w(index, limit)
        except Exception as exc:  # noqa: BLE001 - report every GPU that failed
            errors.append(f"GPU {index}: {exc}")
    if errors:
        raise RuntimeError(f"{state_path}: could not restore power limits: {'; '.join(errors)}")
    _remove(state_path)
    return originals


def validate_limit(limiter: PowerLimiter, index: int, limit_w: float, field: str = "sweep.power_limit_w") -> None:
    """InputError if ``limit_w`` is outside the device's settable range."""
    lo, hi = limiter.limit_range_w(index)
    if not (lo - TOLERANCE_W <= limit_w <= hi + TOLERANCE_W):
        raise InputError("", field, f"{limit_w:g} W is outside GPU {index}'s power-limit range {lo:g}-{hi:g} W")


class PowerLimitGuard:
    """Context manager: set ``limit_w`` on ``indices`` and restore the originals on exit.

    With ``limit_w`` None nothing is changed; ``enforced_w``/``original_w`` still report the
    current limits (read back). ``state_paths``: the user state file plus optionally a copy in
    the run directory; both are written before any limit changes and removed after restore.
    ``handle_signals``: while inside the block (main thread only), SIGTERM and SIGHUP raise
    SystemExit so the restore runs; callers that handle signals themselves leave it off."""

    def __init__(
        self,
        limiter: PowerLimiter,
        indices: list[int],
        limit_w: float | None,
        *,
        state_path: Path | None = None,
        run_state_path: Path | None = None,
        handle_signals: bool = False,
    ) -> None:
        self.limiter = limiter
        self.indices = list(indices)
        self.limit_w = limit_w
        self.state_path = Path(state_path) if state_path is not None else default_state_path()
        self.run_state_path = Path(run_state_path) if run_state_path is not None else None
        self.handle_signals = handle_signals
        self.original_w: list[float] = []
        self.enforced_w: list[float] = []
        self._changed = False
        self._old_handlers: dict[int, object] = {}

    # -- signals ---------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    def _install(self) -> None:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _uninstall(self) -> None:
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)  # type: ignore[arg-type]
        self._old_handlers.clear()

    # -- enter / exit ----------------------------------------------------------------------
    def __enter__(self) -> "PowerLimitGuard":
        self.original_w = [float(self.limiter.get_limit_w(i)) for i in self.indices]
        if self.limit_w is None:
            self.enforced_w = list(self.original_w)
            return self
        for i in self.indices:
            validate_limit(self.limiter, i, float(self.limit_w))
        # Never overwrite another live process's originals; restore a dead one's first.
        state = read_state(self.state_path)
        if state is not None and state.get("host", socket.gethostname()) != socket.gethostname():
            raise InputError(str(self.state_path), "host",
                             f"holds power limits of host {state['host']!r}; use a per-host state path")
        if state is not None:
            if state["pid"] != os.getpid() and pid_alive(state["pid"]):
                raise InputError(
                    str(self.state_path), "",
                    f"power limits are being changed by another process (pid {state['pid']}); "
                    "wait for it or remove the file if that process is not mle-tui")
            restore_stale(self.state_path, self.limiter, force=True)
            self.original_w = [float(self.limiter.get_limit_w(i)) for i in self.indices]
        originals = dict(zip(self.indices, self.original_w))
        _write_state(self.state_path, originals)
        if self.run_state_path is not None:
            _write_state(self.run_state_path, originals)
        self._install()
        try:
            self._changed = True
            for i in self.indices:
                if abs(self.original_w[self.indices.index(i)] - float(self.limit_w)) > TOLERANCE_W:
                    self.limiter.set_limit_w(i, float(self.limit_w))
            self.enforced_w = [float(self.limiter.get_limit_w(i)) for i in self.indices]
        except BaseException:
            self.restore()
            self._uninstall()
            raise
        return self

    def restore(self) -> None:
        """Put the original limits back (idempotent). Keeps the state files if any GPU
        failed, so :func:`restore_stale` can retry later."""
        if not self._changed:
            return
        errors = []
        for i, original in zip(self.indices, self.original_w):
            try:
                if abs(self.limiter.get_limit_w(i) - original) > TOLERANCE_W:
                    self.limiter.set_limit_w(i, original)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"GPU {i}: {exc}")
        if errors:
            raise RuntimeError(f"could not restore power limits ({'; '.join(errors)}); "
                               f"state kept in {self.state_path}")
        self._changed = False
        _remove(self.state_path)
        _remove(self.run_state_path)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.restore()
        finally:
            self._uninstall()
