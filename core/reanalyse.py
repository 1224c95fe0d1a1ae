"""``mle-tui reanalyse``: every record of a run directory recomputed from its trace, without a
GPU, by the same pure analysis that wrote it live -- with the settings it ran with, or with a
changed rule or gate. Writes a new run directory (default ``RUN_DIR/reanalysed``) that
``report``, ``open`` and the compare screen read like any other; the measured records are
never overwritten unless ``replace`` is asked for."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import msgspec

from .errors import InputError
from .measure.analysis import analyse
from .measure.trace import Trace, decode_trace
from .profile_method import SteadySpec
from .records import Record
from .store import RunStore, atomic_write, encode_record, record_format

TRACES_DIR = "traces"
TRACE_SUFFIX = ".msgpack.gz"


class Change(msgspec.Struct, kw_only=True):
    config_key: str
    old_status: str | None
    new_status: str
    old_energy_per_request_j: float | None
    new_energy_per_request_j: float | None

    @property
    def change(self) -> float | None:
        a, b = self.old_energy_per_request_j, self.new_energy_per_request_j
        return None if a is None or b is None or a == 0 else b / a - 1.0


class Reanalysis(msgspec.Struct, kw_only=True):
    out_dir: str
    changes: list[Change] = []
    #: Records without a trace (measured before traces existed): not reanalysed.
    without_trace: list[str] = []


def read_trace(path: Path) -> Trace:
    try:
        return decode_trace(path.read_bytes())
    except (OSError, EOFError) as exc:
        raise InputError(str(path), "", f"cannot read trace: {getattr(exc, 'strerror', None) or exc}") from None
    except msgspec.ValidationError as exc:
        raise InputError(str(path), "", f"not a trace of this version: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InputError(str(path), "", f"corrupt trace: {exc}") from None


def traces_of(run_dir: Path) -> dict[str, Path]:
    d = run_dir / TRACES_DIR
    if not d.is_dir():
        return {}
    return {p.name[: -len(TRACE_SUFFIX)]: p for p in sorted(d.iterdir()) if p.name.endswith(TRACE_SUFFIX)}


def apply_overrides(steady: SteadySpec, overrides: dict[str, str], source: str = "command line") -> SteadySpec:
    """``steady`` with ``[steady_state]`` fields set from text (``--set max_refill_s=1``):
    each value read as a TOML value (a bare word as a string), the result validated like a
    profile's section."""
    if not overrides:
        return steady
    fields = msgspec.structs.asdict(steady)
    for k, text in overrides.items():
        if k not in fields:
            raise InputError(source, f"--set {k}", f"not a [steady_state] setting (one of {', '.join(fields)})")
        try:
            fields[k] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            fields[k] = text
    try:
        return msgspec.convert(fields, SteadySpec)
    except msgspec.ValidationError as exc:
        raise InputError(source, "--set", " ".join(str(exc).split())) from None


def reanalyse(run_dir: Path, out_dir: Path | None = None, *, rule: str | None = None,
              min_window_s: float | None = None, replace: bool = False,
              overrides: dict[str, str] | None = None) -> Reanalysis:
    """Recompute every record of ``run_dir`` that has a trace. ``rule``/``min_window_s`` and
    ``overrides`` (any ``[steady_state]`` field, as text) override the settings each
    configuration ran with. ``replace`` rewrites the run's own records (atomically, one by
    one); otherwise they go to ``out_dir``."""
    src = RunStore(run_dir)
    manifest = src.read_manifest()
    if manifest is None:
        raise InputError(str(run_dir), "run.json", "not a run directory (no run.json)")
    if min_window_s is not None and not (math.isfinite(min_window_s) and min_window_s >= 0):
        raise InputError("command line", "--min-window-s", "must be a finite number >= 0")
    apply_overrides(SteadySpec(), overrides or {})  # bad settings: refused before anything is written
    if replace and out_dir is not None:
        raise InputError("command line", "--replace", "give either --replace or --out, not both")
    target = run_dir if replace else (out_dir if out_dir is not None else run_dir / "reanalysed")
    if not replace and target.resolve() == run_dir.resolve():
        raise InputError(str(target), "--out", "is the measured run itself; use --replace to overwrite its records")
    dst = RunStore(target)
    dst.ensure()
    if not replace:
        dst.write_manifest(manifest)
    old = {r.config_key: r for r in src.load_records()}
    traces = traces_of(run_dir)
    out = Reanalysis(out_dir=str(target), without_trace=sorted(k for k in old if k not in traces))
    for key, path in traces.items():
        trace = read_trace(path)
        steady = trace.steady
        if rule is not None:
            steady = msgspec.structs.replace(steady, rule=rule)
        if min_window_s is not None:
            steady = msgspec.structs.replace(steady, min_window_s=min_window_s)
        steady = apply_overrides(steady, overrides or {})
        rec = analyse(trace, steady, source="reanalysis", trace_file=f"{TRACES_DIR}/{path.name}")
        _write(dst, rec, replace)
        prev = old.get(key)
        out.changes.append(Change(config_key=key, old_status=prev.status if prev else None, new_status=rec.status,
                                  old_energy_per_request_j=prev.energy_per_request_j if prev else None,
                                  new_energy_per_request_j=rec.energy_per_request_j))
    return out


def _write(store: RunStore, rec: Record, replace: bool) -> None:
    if rec.status == "skipped":
        atomic_write(store.skipped_record_path(rec.config_key), encode_record(rec, "json"))
        return
    existing = store.find_record(rec.config_key)
    path = existing if existing is not None else store.record_path(rec.config_key)
    if existing is not None and not replace:
        raise InputError(str(existing), "", "a reanalysed record exists here already; choose another --out")
    atomic_write(path, encode_record(rec, record_format(path) or "json"))
