"""Power limits as a sweep dimension, always restored, one owner per GPU.

:class:`PowerLimitGuard` takes each GPU's lock (:mod:`.gpu_lock`: ``fcntl.flock`` on a per-GPU
lock file in the per-host state directory) for the whole configuration, refusing up front when
another process holds it (saying who). Only then does it read the original limit, write it to
the GPU's state file (atomic, 0600), set the requested limit and read back the enforced value;
on exit (normal, exception, or a signal the caller turned into an exception) it restores the
original, removes its own state file and drops the lock. If the process is killed outright
(SIGKILL, power loss), the kernel drops the lock and the state file survives:
:func:`restore_stale` — called at the next start, and by the guard itself for a GPU it takes —
puts the original back. Sweeps on different GPUs of one host run side by side.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType

from ..errors import InputError
from .base import PowerLimiter
from .gpu_lock import GpuClaim, GpuLock, gpu_id, host_name, safe_name
from .stale import (  # noqa: F401 - re-exported: callers import these from here
    TOLERANCE_W,
    StaleRestore,
    _put_back,
    _restore_locked,
    read_state,
    restore_stale,
    restore_stale_report,
)


def _state_base() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")) / "mle-tui"


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/mle-tui/power-limits-HOST/`` (``~/.local/state`` by default): one lock
    and state file per GPU. The host name keeps nodes that share a home directory apart."""
    return _state_base() / f"power-limits-{safe_name(host_name())}"


def default_state_path() -> Path:
    """The per-host state file of mle-tui ≤ 0.1 (``power_limits-HOST.json``), read only to
    restore what an old version left (:func:`restore_stale` migrates it)."""
    return _state_base() / f"power_limits-{safe_name(host_name())}.json"


def state_dir_for(state_path: Path | None) -> Path:
    """The per-GPU state directory that a caller's ``state_path`` stands for: the default
    per-host directory for the default (legacy) path or None, else the path's directory."""
    if state_path is None or Path(state_path) == default_state_path():
        return default_state_dir()
    p = Path(state_path)
    return p if p.is_dir() else p.parent


def validate_limit(limiter: PowerLimiter, index: int, limit_w: float, field: str = "sweep.power_limit_w") -> None:
    """InputError if ``limit_w`` is outside the device's settable range."""
    lo, hi = limiter.limit_range_w(index)
    if not (lo - TOLERANCE_W <= limit_w <= hi + TOLERANCE_W):
        raise InputError("", field, f"{limit_w:g} W is outside GPU {index}'s power-limit range {lo:g}-{hi:g} W")


# --------------------------------------------------------------------------- the guard


class PowerLimitGuard:
    """Context manager: own ``indices``, set ``limit_w`` on them, restore the originals on exit.

    With ``limit_w`` None nothing is changed (the GPUs are still locked: two sweeps on one GPU
    would measure each other); ``enforced_w``/``original_w`` report the current limits.
    ``state_dir`` (or the older ``state_path``, mapped by :func:`state_dir_for`): where the
    per-GPU lock and state files live. ``gpu_ids``: index -> stable id (NVML UUID); default
    :func:`.gpu_lock.gpu_id`. ``run_dir`` and ``source`` go into the holder line and errors.
    ``handle_signals``: while inside the block (main thread only), SIGTERM and SIGHUP raise
    SystemExit so the restore runs; callers that handle signals themselves leave it off.
    ``claim``: a :class:`.gpu_lock.GpuClaim` held for the whole sweep (its state dir is used).
    ``notes`` collects lines about stale state restored on the way in."""

    def __init__(
        self,
        limiter: PowerLimiter,
        indices: list[int],
        limit_w: float | None,
        *,
        state_dir: Path | None = None,
        state_path: Path | None = None,
        run_state_path: Path | None = None,  # accepted for older callers; no longer written
        gpu_ids: dict[int, str] | None = None,
        run_dir: Path | str | None = None,
        source: str = "",
        handle_signals: bool = False,
        claim: GpuClaim | None = None,
    ) -> None:
        self.limiter = limiter
        self.indices = list(indices)
        self.limit_w = limit_w
        self.state_dir = (Path(state_dir) if state_dir is not None else
                          next(iter(claim.locks.values())).state_dir if claim is not None and claim.locks
                          else state_dir_for(state_path))
        self.run_dir = str(run_dir) if run_dir is not None else (
            str(Path(run_state_path).parent) if run_state_path is not None else "")
        self.source = source
        self.handle_signals = handle_signals
        # With a claim (the sweep's GPUs, locked for the whole sweep) its locks are used and
        # left held on exit; otherwise the guard locks and unlocks the GPUs itself.
        self._own_locks = claim is None
        self.locks = ([claim.lock_for(i) for i in self.indices] if claim is not None else
                      [GpuLock(self.state_dir, gpu_id(limiter, i, gpu_ids), i) for i in self.indices])
        self.original_w: list[float] = []
        self.enforced_w: list[float] = []
        self.notes: list[str] = []
        self._changed = False
        self._old_handlers: dict[int, object] = {}

    @property
    def state_path(self) -> Path:
        """The first GPU's state file (where tests and messages look)."""
        return self.locks[0].state_path if self.locks else self.state_dir

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
    def _acquire_all(self) -> None:
        if not self._own_locks:
            if not all(lk.held for lk in self.locks):
                raise RuntimeError("PowerLimitGuard: the claim's GPU locks are not held")
            return
        for lock in sorted(self.locks, key=lambda lk: lk.gid):
            try:
                ok = lock.try_acquire(self.run_dir)
            except OSError as exc:
                self._release_all()
                raise InputError(str(lock.lock_path), "", f"cannot lock GPU {lock.index}: "
                                 f"{exc.strerror or exc}") from None
            if not ok:
                who = lock.holder_text()
                self._release_all()
                raise InputError(self.source or str(lock.lock_path), "gpu.indices",
                                 f"GPU {lock.index} ({lock.gid}) is in use by another mle-tui sweep "
                                 f"({who}); wait for it, stop it, or choose other GPUs")

    def _release_all(self) -> None:
        if not self._own_locks:
            return
        for lock in self.locks:
            lock.release()

    def __enter__(self) -> "PowerLimitGuard":
        self._acquire_all()
        try:
            # Ours now: a state file left here is a dead owner's. Put its original back first,
            # then read the original limits (only now, with the locks held).
            stale = StaleRestore()
            for lock in self.locks:
                _restore_locked(lock, self.limiter, stale)
            if stale.restored:
                self.notes.append(f"restored power limits left by a killed run: {stale.restored}")
            self.notes.extend(stale.problems)
            self.original_w = [float(self.limiter.get_limit_w(i)) for i in self.indices]
            if self.limit_w is None:
                self.enforced_w = list(self.original_w)
                return self
            for i in self.indices:
                validate_limit(self.limiter, i, float(self.limit_w))
            for lock, original in zip(self.locks, self.original_w):
                lock.write_state(original, self.run_dir)
        except BaseException:
            self._release_all()
            raise
        self._install()
        try:
            self._changed = True
            for i, original in zip(self.indices, self.original_w):
                if abs(original - float(self.limit_w)) > TOLERANCE_W:
                    self.limiter.set_limit_w(i, float(self.limit_w))
            self.enforced_w = [float(self.limiter.get_limit_w(i)) for i in self.indices]
        except BaseException:
            try:
                self.restore()
            finally:
                self._uninstall()
                self._release_all()
            raise
        return self

    def restore(self) -> None:
        """Put the original limits back (idempotent). A GPU that failed keeps its state file,
        so :func:`restore_stale` can retry later; the others' files are removed."""
        if not self._changed:
            return
        errors = []
        for lock, original in zip(self.locks, self.original_w):
            try:
                _put_back(self.limiter, lock.index, original)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"GPU {lock.index}: {exc}; state kept in {lock.state_path}")
                continue
            if lock.held:
                lock.remove_state()
        if errors:
            raise RuntimeError(f"could not restore power limits ({'; '.join(errors)})")
        self._changed = False

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.restore()
        finally:
            self._uninstall()
            self._release_all()


def claim_sweep_gpus(limiter: PowerLimiter, source: object, indices: list[int], kind: str,
                     run_dir: Path | str, profile_path: str = "",
                     state_dir: Path | None = None) -> tuple[GpuClaim, list[str]]:
    """What a runner does once, before anything changes: restore what killed runs left (the
    per-GPU state and an older version's per-host file; problems become notes, never a
    refusal), then lock the sweep's GPU pool for the whole sweep (InputError on
    ``gpu.indices`` naming the holder if another sweep has one). NVML GPUs are owned per host
    in :func:`default_state_dir` by UUID; the simulated GPU's files live in the run directory.
    Returns the claim (release it when the sweep ends) and lines for the run log."""
    from .gpu_lock import gpu_ids_from

    try:
        ids = gpu_ids_from(source.gpus())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - fall back to index-based ids
        ids = {}
    if state_dir is None:
        state_dir = default_state_dir() if kind == "nvml" else Path(run_dir)
    notes: list[str] = []
    for where in ([default_state_path()] if kind == "nvml" else []) + [state_dir]:
        rep = restore_stale_report(where, limiter, gpu_ids=ids)
        if rep.restored:
            notes.append(f"restored power limits left by a killed run: {rep.restored}")
        notes += rep.problems
    claim = GpuClaim(limiter, list(indices), state_dir, gpu_ids=ids, run_dir=str(run_dir), source=profile_path)
    return claim.acquire(), notes
