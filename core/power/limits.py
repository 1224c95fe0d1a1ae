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

import json
import os
import signal
import threading
from pathlib import Path
from types import FrameType, TracebackType

from ..errors import InputError
from ..procgroup import pid_alive
from .base import PowerLimiter
from .gpu_lock import PREFIX, GpuLock, StateProblem, gpu_id, host_name, parse_state, safe_name

#: Limits within this many watts of the request count as enforced (NVML works in mW).
TOLERANCE_W = 1.0


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


# --------------------------------------------------------------------------- stale state


class StaleRestore:
    """What :func:`restore_stale_report` did: limits put back, and lines for what it could not."""

    def __init__(self) -> None:
        self.restored: dict[int, float] = {}
        self.problems: list[str] = []
        self.notes: list[str] = []


def _default_limit(limiter: PowerLimiter, index: int) -> float | None:
    get = getattr(limiter, "default_limit_w", None)
    try:
        return float(get(index)) if get is not None else None
    except Exception:  # noqa: BLE001
        return None


def _put_back(limiter: PowerLimiter, index: int, limit_w: float) -> None:
    if abs(limiter.get_limit_w(index) - limit_w) > TOLERANCE_W:
        limiter.set_limit_w(index, limit_w)


def _restore_locked(lock: GpuLock, limiter: PowerLimiter, out: StaleRestore) -> None:
    """With ``lock`` held: put back what its state file says, then remove the file. A file that
    cannot be used is set aside (never deleted) and the GPU goes to its default limit where the
    limiter knows it; either way the problem is reported."""
    try:
        text = lock.state_path.read_text()
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError) as exc:
        text = None
        problem: StateProblem | None = StateProblem(f"unreadable: {exc}")
    i = lock.index
    try:
        if text is None:
            raise problem  # type: ignore[misc]
        _, original = parse_state(text, lock.gid)
    except StateProblem as exc:
        kept = lock.set_aside("bad")
        fallback = _default_limit(limiter, i)
        if fallback is not None:
            try:
                _put_back(limiter, i, fallback)
                out.restored[i] = fallback
                out.problems.append(f"GPU {i} ({lock.gid}): state file {lock.state_path} was unusable ({exc}); "
                                    f"set to its default limit {fallback:g} W; file kept as {kept}")
                return
            except Exception as err:  # noqa: BLE001
                exc = StateProblem(f"{exc}; setting the default limit failed: {err}")
        out.problems.append(f"GPU {i} ({lock.gid}): state file {lock.state_path} was unusable ({exc}); "
                            f"its original limit is unknown: check it with nvidia-smi; file kept as {kept}")
        return
    if original is not None:
        try:
            _put_back(limiter, i, original)
        except Exception as exc:  # noqa: BLE001 - keep the file: a later start retries
            out.problems.append(f"GPU {i} ({lock.gid}): could not restore {original:g} W: {exc}; "
                                f"state kept in {lock.state_path}")
            return
        out.restored[i] = original
    lock.remove_state()


def _legacy(path: Path, limiter: PowerLimiter, out: StaleRestore, state_dir: Path,
            known: dict[int, str] | None, force: bool) -> None:
    """A per-host state file of an older version: restore each GPU under its new lock."""
    try:
        text = path.read_text()
        data = json.loads(text)
        limits = {int(k): float(v) for k, v in data["original_limits_w"].items()}
        pid, host = int(data.get("pid", 0)), data.get("host", host_name())
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        target = path.with_name(path.name + ".bad")
        try:
            os.replace(path, target)
        except OSError:
            target = path
        out.problems.append(f"{path}: unusable power-limit state file ({exc}); the original limits it "
                            f"held are unknown: check them with nvidia-smi; file kept as {target}")
        return
    if host != host_name():
        out.notes.append(f"{path}: state of host {host!r} left alone")
        return
    if not force and pid != os.getpid() and pid_alive(pid):
        out.notes.append(f"{path}: pid {pid} (an older mle-tui) is still changing limits; left alone")
        return
    left = {}
    for i, limit in sorted(limits.items()):
        if limit != limit or limit in (float("inf"), float("-inf")) or limit <= 0:
            out.problems.append(f"{path}: GPU {i}: original limit {limit!r} is not a finite positive number")
            continue
        lock = GpuLock(state_dir, gpu_id(limiter, i, known), i)
        if not lock.try_acquire():
            out.problems.append(f"{path}: GPU {i} is held by {lock.holder_text()}; not restored now")
            left[str(i)] = limit
            continue
        try:
            _put_back(limiter, i, limit)
            out.restored[i] = limit
        except Exception as exc:  # noqa: BLE001
            out.problems.append(f"{path}: GPU {i}: could not restore {limit:g} W: {exc}")
            left[str(i)] = limit
        finally:
            lock.release()
    if left:
        from .gpu_lock import write_private

        write_private(path, json.dumps({**data, "original_limits_w": left}).encode())
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def restore_stale_report(state_path: Path | None, limiter: PowerLimiter, *, force: bool = False,
                         gpu_ids: dict[int, str] | None = None) -> StaleRestore:
    """Restore every limit left changed by a process that died without restoring it.

    ``state_path``: a per-GPU state directory, or a state file path as :func:`state_dir_for`
    maps it; a per-host file of an older version at that path is migrated. GPUs whose lock is
    held by a live process are theirs and left alone. Never raises for bad state files: what
    could not be restored is in ``problems``."""
    out = StaleRestore()
    state_dir = state_dir_for(state_path)
    candidates = [Path(state_path)] if state_path is not None and not Path(state_path).is_dir() else []
    if state_path is None or Path(state_path) == default_state_path():
        candidates = [default_state_path()]
    for legacy in candidates:
        if legacy.is_file():
            _legacy(legacy, limiter, out, state_dir, gpu_ids, force)
    if not state_dir.is_dir():
        return out
    by_id = {v: k for k, v in (gpu_ids or {}).items()}
    for state in sorted(state_dir.glob(f"{PREFIX}*.json")):
        gid = state.stem[len(PREFIX):]
        try:
            index = int(json.loads(state.read_text()).get("index"))
        except Exception:  # noqa: BLE001 - recover the index from the id where it carries one
            tail = gid.rsplit("-", 1)[-1]
            if gid in by_id:
                tail = str(by_id[gid])
            if not tail.isdigit():
                out.problems.append(f"{state}: unusable state file and no GPU index in its name; "
                                    "check that GPU's limit with nvidia-smi and remove the file")
                continue
            index = int(tail)
        lock = GpuLock(state_dir, gid, index)
        if not lock.try_acquire():
            continue  # a live owner: not stale
        try:
            _restore_locked(lock, limiter, out)
        finally:
            lock.release()
    return out


def restore_stale(state_path: Path | None, limiter: PowerLimiter, *, force: bool = False,
                  gpu_ids: dict[int, str] | None = None) -> dict[int, float]:
    """:func:`restore_stale_report` for callers that want an exception: returns the limits
    restored; after restoring all it could, raises RuntimeError naming what it could not."""
    rep = restore_stale_report(state_path, limiter, force=force, gpu_ids=gpu_ids)
    if rep.problems:
        raise RuntimeError("; ".join(rep.problems) + (f" (restored: {rep.restored})" if rep.restored else ""))
    return rep.restored


def read_state(path: Path) -> dict | None:
    """A state file's content (per-GPU or legacy per-host), or None if absent. For tests and
    diagnostics; corrupt content raises InputError."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(str(path), "", exc.strerror or str(exc)) from None
    try:
        data = json.loads(text)
        if "original_limits_w" in data:
            data["original_limits_w"] = {int(k): float(v) for k, v in data["original_limits_w"].items()}
        data["pid"] = int(data.get("pid", 0))
        return data
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(str(path), "original_limit_w", f"corrupt power-limit state file ({exc})") from None


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
    ) -> None:
        self.limiter = limiter
        self.indices = list(indices)
        self.limit_w = limit_w
        self.state_dir = Path(state_dir) if state_dir is not None else state_dir_for(state_path)
        self.run_dir = str(run_dir) if run_dir is not None else (
            str(Path(run_state_path).parent) if run_state_path is not None else "")
        self.source = source
        self.handle_signals = handle_signals
        self.locks = [GpuLock(self.state_dir, gpu_id(limiter, i, gpu_ids), i) for i in self.indices]
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
