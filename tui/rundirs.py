"""Finding and loading run directories for the records browser (through core.store)."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from ..core.errors import InputError
from ..core.profile import Profile, decode_profile
from ..core.records import Manifest, Record
from ..core.store import RunStore, is_record_file


def is_run_dir(path: Path) -> bool:
    return (path / "run.json").is_file() or (path / "records").is_dir() and any(
        is_record_file(p) for p in (path / "records").iterdir())


def find_run_dirs(roots: list[Path], depth: int = 3) -> list[Path]:
    """Run directories at or below ``roots`` (not below a run directory), sorted, unique."""
    found: dict[Path, None] = {}

    def walk(p: Path, d: int) -> None:
        try:
            if not p.is_dir():
                return
            if is_run_dir(p):
                found[p.resolve()] = None
                return
            if d <= 0:
                return
            for child in sorted(p.iterdir()):
                if child.is_dir() and not child.name.startswith("."):
                    walk(child, d - 1)
        except OSError:
            return

    for root in roots:
        walk(Path(root), depth)
    return sorted(found)


class RunInfo(msgspec.Struct, kw_only=True):
    path: str
    manifest: Manifest | None = None
    records: list[Record] = []
    error: str | None = None

    @property
    def run_id(self) -> str:
        return self.manifest.run_id if self.manifest else Path(self.path).name

    def profile(self) -> Profile | None:
        if self.manifest is None or not self.manifest.profile_toml:
            return None
        try:
            return decode_profile(self.manifest.profile_toml, str(Path(self.path) / "run.json"))
        except InputError:
            return None

    def first(self) -> Record | None:
        return self.records[0] if self.records else None

    def model(self) -> str:
        r = self.first()
        if r:
            return r.model
        p = self.profile()
        return p.model.id if p else "?"

    def task(self) -> str:
        r = self.first()
        if r:
            return r.task
        p = self.profile()
        return p.task if p else "?"

    def gpus(self) -> str:
        if self.manifest and self.manifest.gpus:
            names = {g.name for g in self.manifest.gpus}
            return f"{len(self.manifest.gpus)}× " + "/".join(sorted(names))
        r = self.first()
        return ", ".join(sorted(set(r.hardware.gpu_names))) if r else "?"

    def simulated(self) -> bool:
        if self.manifest is not None and self.manifest.power_source == "simulated":
            return True
        return any(r.simulated for r in self.records)

    def created(self) -> str:
        t = self.manifest.created_unix_s if self.manifest else (self.records[0].started_unix_s if self.records else None)
        return time.strftime("%Y-%m-%d %H:%MZ", time.gmtime(t)) if t else "?"

    def counts(self) -> tuple[int, int]:
        ok = sum(1 for r in self.records if r.status == "ok")
        total = len(self.manifest.configs) if self.manifest and self.manifest.configs else len(self.records)
        return ok, total


def load_run(path: Path) -> RunInfo:
    """Manifest and records of a run directory; problems end up in ``error``, never raised."""
    try:
        store = RunStore(Path(path))
        manifest = store.read_manifest()
        records = store.load_records()
    except InputError as exc:
        return RunInfo(path=str(path), error=exc.line())
    except (OSError, ValueError, msgspec.MsgspecError) as exc:
        return RunInfo(path=str(path), error=f"{path}: {exc}")
    return RunInfo(path=str(path), manifest=manifest, records=records)


def record_files(run_dir: Path) -> list[Path]:
    d = Path(run_dir) / "records"
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if is_record_file(p) and p.is_file())


def export_run(run_dir: Path, dest: Path, csv_text: str, formulas_text: str) -> list[Path]:
    """Copy the run's record files (as written, msgspec JSON/msgpack) and ``run.json`` into
    ``dest/records``, and write ``dest/pareto.csv`` and ``dest/FORMULAS.txt``. Symlinks out of
    the run directory, FIFOs and devices are skipped (see :mod:`mle_tui.core.export`)."""
    from ..core.export import export_run as _export

    written, _skipped = _export(Path(run_dir), Path(dest), csv_text, formulas_text)
    return written
