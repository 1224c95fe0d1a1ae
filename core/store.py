"""Run directories on disk: atomic record writes, manifest, resume, loading.

Layout of a run directory::

    run.json                 Manifest
    records/<config_key>.json  (or .msgpack)  one Record per finished configuration
    logs/<config_key>.log    the runtime's log
    live.jsonl               event stream (core.events) for `mle-tui attach`
    power_limits.state       original power limits while a limit is changed (see power/limits.py)
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import msgspec

from .errors import InputError
from .records import Manifest, Record, RecordHead

RECORD_SUFFIXES = (".json", ".msgpack")
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


def decode_record(data: bytes, source: str, fmt: str = "json", type: type = Record) -> Record:  # noqa: A002
    """Decode record bytes (as ``type``: Record, or RecordHead to skip the heavy fields);
    InputError(source, field path, problem) when bad."""
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
    return rec


def encode_record(record: Record, fmt: str = "json") -> bytes:
    if fmt == "msgpack":
        return _msgpack_encoder.encode(record)
    return msgspec.json.format(_json_encoder.encode(record), indent=1) + b"\n"


def load_record_file(path: Path, type: type = Record) -> Record:  # noqa: A002
    """Decode one record (.json or .msgpack); InputError naming file, field and problem."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError(str(p), "", "no such record file") from None
    except OSError as exc:
        raise InputError(str(p), "", exc.strerror or str(exc)) from None
    fmt = "msgpack" if p.suffix == ".msgpack" else "json"
    return decode_record(data, str(p), fmt, type)


class RunStore:
    """One run directory. ``fmt`` is the format new records are written in (``json`` or
    ``msgpack``); records of either format are read."""

    def __init__(self, root: Path, fmt: str = "json") -> None:
        if fmt not in ("json", "msgpack"):
            raise InputError("", "record_format", f"unknown record format {fmt!r} (json or msgpack)")
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
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InputError(str(p), "", exc.strerror or str(exc)) from None
        try:
            return msgspec.json.decode(data, type=Manifest)
        except msgspec.ValidationError as exc:
            field, problem = _split_msgspec_error(str(exc))
            raise InputError(str(p), field, problem) from None
        except msgspec.DecodeError as exc:
            raise InputError(str(p), "(syntax)", " ".join(str(exc).split())) from None

    def record_path(self, key: str) -> Path:
        return self.records_dir / f"{key}.{self.fmt}"

    def find_record(self, key: str) -> Path | None:
        for suffix in RECORD_SUFFIXES:
            p = self.records_dir / f"{key}{suffix}"
            if p.exists():
                return p
        return None

    def write_record(self, record: Record) -> Path:
        """Atomic; refuses to overwrite an existing record (resume never rewrites)."""
        existing = self.find_record(record.config_key)
        if existing is not None:
            raise FileExistsError(f"{existing}: a record for {record.config_key} exists; not overwritten")
        path = self.record_path(record.config_key)
        if not atomic_create(path, encode_record(record, self.fmt)):
            raise FileExistsError(f"{path}: a record for {record.config_key} exists; not overwritten")
        return path

    def _record_files(self) -> list[Path]:
        if not self.records_dir.is_dir():
            return []
        return sorted(p for p in self.records_dir.iterdir()
                      if p.suffix in RECORD_SUFFIXES and not p.name.startswith("."))

    def completed_keys(self) -> set[str]:
        """Keys with a record file (any status: ``failed`` is final too; delete the file to
        rerun a configuration)."""
        return {p.stem for p in self._record_files()}

    def load_records(self) -> list[Record]:
        return [load_record_file(p) for p in self._record_files()]

    def load_heads(self) -> list[RecordHead]:
        """Every record without its rows, batches, timelines and log (tables and reports)."""
        return [load_record_file(p, RecordHead) for p in self._record_files()]

    def log_path(self, key: str) -> Path:
        return self.logs_dir / f"{key}.log"

    def live_path(self) -> Path:
        return self.root / LIVE_NAME

    def limits_state_path(self) -> Path:
        return self.root / LIMITS_STATE_NAME
