"""Export a run directory: its record files and run.json as written, plus the Pareto CSV and the
formulas, into a destination directory.

Never follows a symlink out of the run directory (a ``records/x.json`` linking to
``/etc/shadow`` or ``/dev/zero`` is skipped and reported), only copies regular files, and
writes every output atomically, replacing (never following) a symlink already at the
destination path.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputError
from .safe_io import os_problem, read_input
from .store import MANIFEST_NAME, atomic_write, is_record_file


def _inside(path: Path, root: Path) -> Path | None:
    """``path`` resolved, if it is a regular file inside ``root`` (resolved), else None."""
    try:
        real = path.resolve(strict=True)
        st = os.stat(real)
    except (OSError, RuntimeError):
        return None
    if not stat.S_ISREG(st.st_mode) or not real.is_relative_to(root):
        return None
    return real


def export_run(run_dir: Path, dest: Path, csv_text: str, formulas_text: str) -> tuple[list[Path], list[str]]:
    """Copy records and run.json into ``dest/records`` and ``dest``; write ``dest/pareto.csv``
    and ``dest/FORMULAS.txt``. Returns (files written, lines about files skipped)."""
    root = Path(run_dir).resolve()
    dest = Path(dest)
    written: list[Path] = []
    skipped: list[str] = []
    try:
        (dest / "records").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(str(dest), "", f"cannot create export directory: {os_problem(exc)}") from None
    sources: list[tuple[Path, Path]] = []
    rec_dir = root / "records"
    if rec_dir.is_dir():
        for p in sorted(rec_dir.iterdir()):
            if is_record_file(p):
                sources.append((p, dest / "records" / p.name))
    sources.append((root / MANIFEST_NAME, dest / MANIFEST_NAME))
    for src, target in sources:
        if not os.path.lexists(src):
            continue
        real = _inside(src, root)
        if real is None:
            skipped.append(f"{src}: not a regular file inside the run directory (a symlink out of it, "
                           "a FIFO or a device); not exported")
            continue
        try:
            atomic_write(target, read_input(real, what="record file"))
        except InputError as exc:
            skipped.append(exc.line())
            continue
        except OSError as exc:
            raise InputError(str(target), "", os_problem(exc)) from None
        written.append(target)
    for name, text in (("pareto.csv", csv_text), ("FORMULAS.txt", formulas_text)):
        try:
            atomic_write(dest / name, text.encode())
        except OSError as exc:
            raise InputError(str(dest / name), "", os_problem(exc)) from None
        written.append(dest / name)
    return written, skipped
