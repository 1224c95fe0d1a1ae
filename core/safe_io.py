"""Reading and writing files a user names, without hangs, tracebacks or surprises.

:func:`read_input` refuses FIFOs, devices (``/dev/zero``), sockets and directories up front
(opened non-blocking, checked with ``fstat``), and files over a size cap; an over-long or bad
path is one :class:`InputError`. :func:`check_output_file` refuses to replace anything but a
regular file and never creates parent directories.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import InputError

#: Profiles, run.json and records above this are refused (a record of a long run is a few MB).
MAX_INPUT_BYTES = 256 * 2**20


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def os_problem(exc: OSError) -> str:
    """A short reason for an OSError (no repr, no errno number)."""
    if exc.errno == errno.ENAMETOOLONG:
        return "path too long"
    return exc.strerror or str(exc)


def read_input(path: Path | str, *, what: str = "file", field: str = "",
               max_bytes: int = MAX_INPUT_BYTES, missing: str | None = None) -> bytes:
    """The bytes of a regular file, or InputError(path, field, problem)."""
    p = str(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(p, field, missing or f"no such {what}") from None
    except OSError as exc:
        raise InputError(p[:200] + ("..." if len(p) > 200 else ""), field, os_problem(exc)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(p, field, f"is {_kind(st.st_mode)}, not a {what}")
        if st.st_size > max_bytes:
            raise InputError(p, field, f"{what} is too large ({st.st_size / 2**20:.0f} MiB; at most "
                                       f"{max_bytes / 2**20:.0f} MiB)")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > max_bytes:
                raise InputError(p, field, f"{what} is too large (grew past {max_bytes / 2**20:.0f} MiB)")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(p, field, os_problem(exc)) from None
    finally:
        os.close(fd)


def check_output_file(path: Path | str, field: str = "") -> Path:
    """InputError unless ``path`` may be (re)written as a regular file: its directory exists
    (not created), and it is absent or a regular file (a FIFO, device or directory is never
    replaced; a symlink is replaced by the file, never followed)."""
    p = Path(path)
    try:
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            raise InputError(str(p), field, f"directory {parent} does not exist (not created)")
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            return p
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            raise InputError(str(p), field, f"is {_kind(st.st_mode)}; not replaced")
    except OSError as exc:
        raise InputError(str(p)[:200], field, os_problem(exc)) from None
    return p
