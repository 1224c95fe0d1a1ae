"""Per-GPU ownership on one host: an ``fcntl.flock`` on ``<state dir>/<gpu id>.lock`` and the
original limit in ``<state dir>/<gpu id>.json`` while it is changed.

* Files are named ``power-limit-<gpu id>.lock`` / ``.json``.
* The lock file is never removed (removing a lock file races with a process about to lock it);
  the holder writes its pid, host and run directory into it, so a refused process can say who
  holds the GPU. The kernel drops the lock when the holder's process ends, SIGKILL included.
* The state file is written atomically (temp file, fsync, rename) with mode 0600 after the lock
  is held, and removed only by the lock holder. A state file whose GPU lock can be taken belongs
  to a dead process: its original limit is put back first (see :mod:`.limits`).
* The state directory is 0700: the files say which limits to set as root.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import socket
import tempfile
import time
from pathlib import Path

STATE_VERSION = 2
#: File names: ``power-limit-<gpu id>.lock`` / ``.json`` (a run directory may hold them too).
PREFIX = "power-limit-"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def host_name() -> str:
    return socket.gethostname() or "localhost"


def safe_name(text: str) -> str:
    return _SAFE.sub("_", text).strip("._") or "gpu"


def gpu_id(limiter: object, index: int, known: dict[int, str] | None = None) -> str:
    """A stable id for GPU ``index``: ``known[index]`` (e.g. NVML UUIDs from ``GpuInfo.uuid``),
    else ``limiter.gpu_uuid(index)`` where the limiter has it, else ``sim-<index>`` for the
    simulated GPU and ``gpu-<index>`` otherwise (index-based; the state dir is per host)."""
    if known and known.get(index):
        return safe_name(str(known[index]))
    get = getattr(limiter, "gpu_uuid", None)
    if get is not None:
        try:
            uid = get(index)
        except Exception:  # noqa: BLE001 - fall back to the index
            uid = None
        if uid:
            return safe_name(str(uid))
    if getattr(limiter, "kind", None) == "simulated":
        return f"sim-{index}"
    return f"gpu-{index}"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        if path.stat().st_mode & 0o777 != 0o700:
            os.chmod(path, 0o700)
    except OSError:
        pass
    return path


def write_private(path: Path, data: bytes) -> None:
    """Atomic write with mode 0600 (mkstemp's mode), fsynced, renamed into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


class GpuLock:
    """The exclusive lock of one GPU. :meth:`try_acquire` never blocks."""

    def __init__(self, state_dir: Path, gid: str, index: int) -> None:
        self.state_dir = Path(state_dir)
        self.gid = gid
        self.index = index
        self.lock_path = self.state_dir / f"{PREFIX}{gid}.lock"
        self.state_path = self.state_dir / f"{PREFIX}{gid}.json"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, run_dir: str | None = None) -> bool:
        if self._fd is not None:
            return True
        ensure_private_dir(self.state_dir)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        holder = {"pid": os.getpid(), "host": host_name(), "run_dir": run_dir or "",
                  "gpu_id": self.gid, "index": self.index, "since_unix_s": time.time()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except OSError:
            pass
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor drops the flock

    def holder(self) -> dict:
        """What the current holder wrote into the lock file ({} if unreadable)."""
        try:
            data = json.loads(self.lock_path.read_text() or "{}")
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def holder_text(self) -> str:
        h = self.holder()
        if not h:
            return "another process (holder details not written yet)"
        parts = [f"pid {h.get('pid', '?')}", f"host {h.get('host', '?')}"]
        if h.get("run_dir"):
            parts.append(f"run dir {h['run_dir']}")
        return ", ".join(parts)

    # -- state file (only the holder calls these) --------------------------------------
    def write_state(self, original_w: float, run_dir: str | None) -> None:
        assert self.held, "state written without the GPU lock"
        payload = {"version": STATE_VERSION, "gpu_id": self.gid, "index": self.index,
                   "pid": os.getpid(), "host": host_name(), "run_dir": run_dir or "",
                   "created_unix_s": time.time(), "original_limit_w": float(original_w)}
        write_private(self.state_path, (json.dumps(payload, indent=1) + "\n").encode())

    def remove_state(self) -> None:
        assert self.held, "state removed without the GPU lock"
        try:
            self.state_path.unlink()
        except FileNotFoundError:
            pass

    def set_aside(self, why: str) -> Path | None:
        """Rename a state file that cannot be used to ``<name>.<why>-<unix time>`` (kept for a
        person to read; never silently deleted)."""
        assert self.held
        target = self.state_path.with_name(f"{self.state_path.name}.{why}-{int(time.time())}")
        try:
            os.replace(self.state_path, target)
        except FileNotFoundError:
            return None
        return target


class StateProblem(ValueError):
    """A state file that cannot be trusted (corrupt, empty, non-finite, foreign)."""


def parse_state(text: str, gid: str) -> tuple[dict, float | None]:
    """(payload, original limit W or None when nothing was changed). StateProblem if unusable."""
    if not text.strip():
        raise StateProblem("empty")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StateProblem(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StateProblem("not a JSON object")
    if data.get("gpu_id") not in (None, gid):
        raise StateProblem(f"written for GPU {data.get('gpu_id')!r}, not {gid!r}")
    if data.get("host") not in (None, host_name()):
        raise StateProblem(f"written on host {data.get('host')!r}")
    original = data.get("original_limit_w")
    if original is None:
        return data, None
    if isinstance(original, bool) or not isinstance(original, (int, float)) or not math.isfinite(original) \
            or original <= 0:
        raise StateProblem(f"original_limit_w is {original!r}, not a finite positive number")
    return data, float(original)


def gpu_ids_from(gpus: list) -> dict[int, str]:
    """index -> NVML UUID from a power source's ``gpus()`` (GpuInfo), where known."""
    return {g.index: g.uuid for g in gpus if getattr(g, "uuid", None)}


def held_by_others(state_dir: Path, own_gids: set[str]) -> list[dict]:
    """The holders of the GPU locks in ``state_dir`` other than ours (``own_gids``): other
    mle-tui sweeps running on this host now, each ``{"pid", "host", "run_dir", "index", ...}``.
    A lock is held when a shared lock on it cannot be taken; nothing is changed."""
    out = []
    try:
        paths = sorted(Path(state_dir).glob(f"{PREFIX}*.lock"))
    except OSError:
        return out
    for path in paths:
        gid = path.name[len(PREFIX):-len(".lock")]
        if gid in own_gids:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = GpuLock(Path(state_dir), gid, -1).holder()
            out.append({**holder, "gpu_id": gid})
        except OSError:
            pass
        finally:
            os.close(fd)  # drops the shared lock if it was taken
    return out


def neighbour_lines(state_dir: Path, own_gids: set[str]) -> list[str]:
    """One line per other sweep on this host: ``run dir X (pid P) on GPUs 2, 3``; GPUs known by
    UUID are named by it (``GPU-9b1f4ade``): the holder's index counts the GPUs *it* sees."""
    by_holder: dict[tuple, list[str]] = {}
    for h in held_by_others(state_dir, own_gids):
        key = (h.get("run_dir") or "?", h.get("pid", "?"))
        gid = str(h.get("gpu_id", ""))
        name = gid[:12] if gid.startswith(("GPU-", "MIG-")) else str(h.get("index", gid))
        by_holder.setdefault(key, []).append(name)
    return [f"run dir {rd} (pid {pid}) on GPU{'s' * (len(g) > 1)} {', '.join(g)}"
            for (rd, pid), g in sorted(by_holder.items(), key=lambda kv: str(kv[0]))]


class GpuClaim:
    """The locks of a sweep's whole GPU pool, taken at once before anything changes and held
    until :meth:`release` (the sweep's end), so that a second sweep is refused up front and
    cannot slip in between two configurations. Pass it to ``PowerLimitGuard(claim=...)``."""

    def __init__(self, limiter: object, indices: list[int], state_dir: Path, *,
                 gpu_ids: dict[int, str] | None = None, run_dir: str = "", source: str = "") -> None:
        self.locks = {i: GpuLock(Path(state_dir), gpu_id(limiter, i, gpu_ids), i) for i in indices}
        self.run_dir, self.source = run_dir, source

    def acquire(self) -> "GpuClaim":
        from ..errors import InputError

        for lock in sorted(self.locks.values(), key=lambda lk: lk.gid):
            if not lock.try_acquire(self.run_dir):
                who = lock.holder_text()
                self.release()
                raise InputError(self.source or str(lock.lock_path), "gpu.indices",
                                 f"GPU {lock.index} ({lock.gid}) is in use by another mle-tui sweep "
                                 f"({who}); wait for it, stop it, or choose other GPUs")
        return self

    def lock_for(self, index: int) -> GpuLock:
        return self.locks[index]

    def release(self) -> None:
        for lock in self.locks.values():
            lock.release()

    def __enter__(self) -> "GpuClaim":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
