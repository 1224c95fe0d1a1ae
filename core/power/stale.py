"""Restoring power limits that a killed process left changed (``restore_stale``), and
migrating the per-host state file of older versions. Every GPU is restored under its own lock
(:mod:`.gpu_lock`), so a live sweep's GPU is never touched."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputError
from ..procgroup import pid_alive
from .base import PowerLimiter
from .gpu_lock import PREFIX, GpuLock, StateProblem, gpu_id, host_name, parse_state

#: Limits within this many watts of the request count as enforced (NVML works in mW).
TOLERANCE_W = 1.0


def _state_dir_for(state_path: Path | None) -> Path:
    from .limits import state_dir_for

    return state_dir_for(state_path)


def _default_state_path() -> Path:
    from .limits import default_state_path

    return default_state_path()


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
    state_dir = _state_dir_for(state_path)
    candidates = [Path(state_path)] if state_path is not None and not Path(state_path).is_dir() else []
    if state_path is None or Path(state_path) == _default_state_path():
        candidates = [_default_state_path()]
    for legacy in candidates:
        if legacy.is_file():
            _legacy(legacy, limiter, out, state_dir, gpu_ids, force)
    if not state_dir.is_dir():
        return out
    by_id = {v: k for k, v in (gpu_ids or {}).items()}
    for state in sorted(state_dir.glob(f"{PREFIX}*.json")):
        gid = state.stem[len(PREFIX):]
        if gid not in by_id and gpu_ids and gid.startswith(("GPU-", "MIG-")):
            # a GPU this process does not see (CUDA_VISIBLE_DEVICES, one raylet per GPU): its
            # index here would name another GPU; a process that sees it restores it
            continue
        try:
            # A known UUID says where the GPU is now (indices can change across reboots).
            index = by_id[gid] if gid in by_id else int(json.loads(state.read_text()).get("index"))
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


