"""Run directories on disk: atomic record writes, manifest, resume, loading.

Layout of a run directory::

    run.json                 Manifest
    records/<config_key>.json  (or .msgpack, .msgpack.gz)  one Record per finished configuration
    logs/<config_key>.log    the runtime's log
    live.jsonl               event stream (core.events) for `mle-tui attach`
    .lock                    flock held by the process running the sweep (:meth:`RunStore.lock`)
    power-limit-sim-N.*      the simulated GPU's limit state (see power/gpu_lock.py)

Reading is defensive: a record that does not decode, or that a newer mle-tui wrote
(``schema_version``), is reported and not counted as done (a resume reruns it; the bad file is
set aside, never overwritten); records of configurations the run's profile does not have are
reported and left out of reports.
"""

from __future__ import annotations

import gzip
import os
import re
import tempfile
from dataclasses import dataclass, field
import time
from pathlib import Path

import msgspec

from .errors import InputError
from .records import SCHEMA_VERSION, Manifest, Record, RecordHead
from .safe_io import read_input

#: Record file endings and the format each holds. ``msgpack.gz``: a record of many requests
#: (a B = 512 vLLM configuration, 8,192 requests: 1.9 MB as msgpack) gzipped to about a quarter,
#: as the shipped run directories keep them.
RECORD_FORMATS = {".json": "json", ".msgpack": "msgpack", ".msgpack.gz": "msgpack.gz"}
RECORD_SUFFIXES = tuple(RECORD_FORMATS)
MANIFEST_NAME = "run.json"
LIVE_NAME = "live.jsonl"
LIMITS_STATE_NAME = "power_limits.state"

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def _temp_copy(path: Path, data: bytes) -> str:
    """``data`` in a fsynced temp file beside ``path`` (created with the directory if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temp file in the same directory, fsync, rename, fsync the directory."""
    path = Path(path)
    tmp = _temp_copy(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_create(path: Path, data: bytes) -> bool:
    """Like :func:`atomic_write` but never replaces an existing file (``os.link`` of the temp
    file). Returns False, writing nothing, if ``path`` exists."""
    path = Path(path)
    tmp = _temp_copy(path, data)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:
            # File systems without hard links: check-then-rename (single writer per run dir).
            if path.exists():
                return False
            os.replace(tmp, path)
            tmp = ""
    finally:
        if tmp:
            _unlink_quietly(tmp)
    _fsync_dir(path.parent)
    return True


def _split_msgspec_error(message: str) -> tuple[str, str]:
    m = re.search(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", message, re.S)
    if not m:
        return "(top level)", " ".join(message.split())
    path = (m["path"] or "").lstrip(".")
    return path or "(top level)", " ".join(m["msg"].replace("`", "").split())


#: The endings longest first, so that ``.msgpack.gz`` is not read as some other ``.gz``.
_SUFFIXES_LONGEST_FIRST = sorted(RECORD_FORMATS, key=len, reverse=True)


def _record_suffix(name: str) -> str | None:
    return next((s for s in _SUFFIXES_LONGEST_FIRST if name.endswith(s) and len(name) > len(s)), None)


def record_format(path: Path | str) -> str | None:
    """The format of a record file by its name's ending (:data:`RECORD_FORMATS`); None when
    the name is not a record's (``*.skipped.json`` is a record: a skipped one)."""
    suffix = _record_suffix(Path(path).name)
    return None if suffix is None else RECORD_FORMATS[suffix]


def record_stem(path: Path | str) -> str:
    """A record file's name without its format's ending (``mns64-tp1-pl300.msgpack.gz`` ->
    ``mns64-tp1-pl300``)."""
    name = Path(path).name
    suffix = _record_suffix(name)
    return name[: -len(suffix)] if suffix else Path(name).stem


def is_record_file(path: Path) -> bool:
    return record_format(path) is not None and not path.name.startswith(".")


def decode_record(data: bytes, source: str, fmt: str = "json", type: type = Record) -> Record:  # noqa: A002
    """Decode record bytes (as ``type``: Record, or RecordHead to skip the heavy fields);
    InputError(source, field path, problem) when bad."""
    if fmt == "msgpack.gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise InputError(source, "(syntax)", f"not a gzipped record: {' '.join(str(exc).split())}") from None
        fmt = "msgpack"
    try:
        if fmt == "msgpack":
            rec = msgspec.msgpack.decode(data, type=type)
        else:
            rec = msgspec.json.decode(data, type=type)
    except msgspec.ValidationError as exc:
        field, problem = _split_msgspec_error(str(exc))
        raise InputError(source, field, problem) from None
    except msgspec.DecodeError as exc:
        raise InputError(source, "(syntax)", " ".join(str(exc).split())) from None
    check_schema(rec.schema_version, source)
    return rec


def check_schema(version: int, source: str) -> None:
    """InputError unless this version of mle-tui can read ``schema_version``."""
    if not 1 <= version <= SCHEMA_VERSION:
        newer = version > SCHEMA_VERSION
        raise InputError(source, "schema_version",
                         f"{version} is {'newer than' if newer else 'not'} a schema this mle-tui reads "
                         f"(1..{SCHEMA_VERSION}){'; upgrade mle-tui' if newer else ''}")


def encode_record(record: Record, fmt: str = "json") -> bytes:
    if fmt == "msgpack.gz":
        # mtime 0: the same record gives the same bytes
        return gzip.compress(_msgpack_encoder.encode(record), compresslevel=9, mtime=0)
    if fmt == "msgpack":
        return _msgpack_encoder.encode(record)
    return msgspec.json.format(_json_encoder.encode(record), indent=1) + b"\n"


def load_record_file(path: Path, type: type = Record) -> Record:  # noqa: A002
    """Decode one record (.json, .msgpack or .msgpack.gz); InputError naming file, field and problem."""
    p = Path(path)
    data = read_input(p, what="record file")
    return decode_record(data, str(p), record_format(p) or "json", type)


@dataclass
class RunScan:
    records: list = field(default_factory=list)  # Record, or RecordHead with heads=True
    problems: list[str] = field(default_factory=list)
    corrupt: list[Path] = field(default_factory=list)
    foreign: list[Path] = field(default_factory=list)


def _records_in(d: Path) -> list[Path]:
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if is_record_file(p))


class RunStore:
    """One run directory. ``fmt`` is the format new records are written in (``json``,
    ``msgpack`` or ``msgpack.gz``); records of every format are read."""

    def __init__(self, root: Path, fmt: str = "json") -> None:
        if fmt not in RECORD_FORMATS.values():
            raise InputError("", "record_format", f"unknown record format {fmt!r} (json, msgpack or msgpack.gz)")
        self.root = Path(root)
        self.fmt = fmt
        self.records_dir = self.root / "records"
        self.logs_dir = self.root / "logs"

    def ensure(self) -> None:
        """Create the directory layout."""
        try:
            self.records_dir.mkdir(parents=True, exist_ok=True)
            self.logs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(str(self.root), "", f"cannot create run directory: {exc.strerror or exc}") from None

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    def write_manifest(self, manifest: Manifest) -> None:
        atomic_write(self.manifest_path, msgspec.json.format(_json_encoder.encode(manifest), indent=1) + b"\n")

    def read_manifest(self) -> Manifest | None:
        p = self.manifest_path
        if not os.path.lexists(p):
            return None
        data = read_input(p, what="run manifest")
        try:
            m = msgspec.json.decode(data, type=Manifest)
            check_schema(m.schema_version, str(p))
            return m
        except msgspec.ValidationError as exc:
            field, problem = _split_msgspec_error(str(exc))
            raise InputError(str(p), field, problem) from None
        except msgspec.DecodeError as exc:
            raise InputError(str(p), "(syntax)", " ".join(str(exc).split())) from None

    def record_path(self, key: str) -> Path:
        return self.records_dir / f"{key}.{self.fmt}"

    def skipped_record_path(self, key: str) -> Path:
        """Where a ``skipped`` record goes: not a completed key (``<key>.skipped.json`` has
        another stem), so resume runs the configuration again."""
        return self.records_dir / f"{key}.skipped.json"

    def find_record(self, key: str) -> Path | None:
        """The record file of ``key`` if it exists and decodes (a corrupt one does not count)."""
        for suffix in RECORD_SUFFIXES:
            p = self.records_dir / f"{key}{suffix}"
            if os.path.lexists(p):
                try:
                    load_record_file(p)
                except InputError:
                    continue
                return p
        return None

    def _set_aside_corrupt(self, key: str) -> None:
        for suffix in RECORD_SUFFIXES:
            p = self.records_dir / f"{key}{suffix}"
            if os.path.lexists(p):
                try:
                    load_record_file(p, RecordHead)
                except InputError:
                    os.replace(p, p.with_name(f"{p.name}.corrupt-{int(time.time())}"))

    def write_record(self, record: Record) -> Path:
        """Atomic; refuses to overwrite an existing record (resume never rewrites). A corrupt
        file in the way is renamed to ``<name>.corrupt-<unix time>`` first."""
        self._set_aside_corrupt(record.config_key)
        existing = self.find_record(record.config_key)
        if existing is not None:
            raise FileExistsError(f"{existing}: a record for {record.config_key} exists; not overwritten")
        path = self.record_path(record.config_key)
        if not atomic_create(path, encode_record(record, self.fmt)):
            raise FileExistsError(f"{path}: a record for {record.config_key} exists; not overwritten")
        return path

    def _record_files(self) -> list[Path]:
        """The run's record files: ``records/``, then those of its Slurm array tasks'
        directories (``tasks/KEY/records``, :mod:`.slurm`) not already in ``records/``."""
        own = _records_in(self.records_dir)
        tasks = self.root / "tasks"
        if not tasks.is_dir():
            return own
        names = {p.name for p in own}
        extra = [p for d in sorted(tasks.iterdir()) for p in _records_in(d / "records") if p.name not in names]
        return own + extra

    def completed_keys(self) -> set[str]:
        """Keys with a record that decodes (any status: ``failed`` is final too; delete the
        file to rerun a configuration). Corrupt records are not done: a resume reruns them."""
        return {r.config_key for r in self.scan(heads=True).records if r.status != "skipped"}

    def load_records(self) -> list[Record]:
        """Every record; the first bad one raises InputError (see :meth:`scan` to go on)."""
        return [load_record_file(p) for p in self._record_files()]

    def load_heads(self) -> list[RecordHead]:
        """Every record without its rows, batches, timelines and log (tables and reports)."""
        return [load_record_file(p, RecordHead) for p in self._record_files()]

    def scan(self, config_keys: set[str] | list[str] | None = None, *, heads: bool = False) -> "RunScan":
        """Good records, and one line per problem: a record that does not decode (or of a newer
        schema), a file named for another key, or (with ``config_keys``, the run's
        configurations) a record of a configuration the run does not have. Never raises for
        a bad record. ``heads``: decode RecordHeads (no rows, timelines, log), for tables."""
        out = RunScan()
        keys = set(config_keys) if config_keys is not None else None
        for p in self._record_files():
            try:
                rec = load_record_file(p, RecordHead if heads else Record)
            except InputError as exc:
                out.problems.append(f"{exc.line()} (not counted as done; a resume reruns it)")
                out.corrupt.append(p)
                continue
            stem = record_stem(p)
            stem = stem[: -len(".skipped")] if stem.endswith(".skipped") else stem
            if rec.config_key != stem:
                out.problems.append(f"{p}: config_key: {rec.config_key!r} does not match the file name; ignored")
                out.foreign.append(p)
            elif keys is not None and rec.config_key not in keys:
                out.problems.append(f"{p}: config_key: {rec.config_key} is not a configuration of this run's "
                                    "profile; ignored (never recommended)")
                out.foreign.append(p)
            else:
                out.records.append(rec)
        return out

    def check_resumable(self) -> None:
        """InputError if the directory has records but no ``run.json`` (nothing says what
        profile they belong to, so they cannot be resumed)."""
        if self.manifest_path.exists() or os.path.lexists(self.manifest_path):
            return
        if self._record_files():
            raise InputError(str(self.manifest_path), "", "missing: the directory has records but no run.json, "
                             "so it cannot be resumed; use another --out directory")

    def remove_if_unused(self, extra_names: tuple[str, ...] = ()) -> None:
        """Undo a start that failed before the manifest was written: the lock file, the empty
        layout (and ``extra_names``), then the directory if nothing else is in it. Never
        removes anything else."""
        if self.manifest_path.exists():
            return
        from .run_lock import LOCK_NAME

        for name in (LOCK_NAME, *extra_names):
            try:
                (self.root / name).unlink()
            except OSError:
                pass
        for d in (self.records_dir, self.logs_dir, self.root):
            try:
                d.rmdir()
            except OSError:
                pass

    def lock(self) -> "RunLock":
        """The run directory's lock (see :class:`.run_lock.RunLock`): ``with store.lock():``
        around the whole run. InputError (exit 2) naming the holder when it is taken."""
        from .run_lock import RunLock

        return RunLock(self.root)

    def log_path(self, key: str) -> Path:
        return self.logs_dir / f"{key}.log"

    def live_path(self) -> Path:
        return self.root / LIVE_NAME

    def limits_state_path(self) -> Path:
        return self.root / LIMITS_STATE_NAME
