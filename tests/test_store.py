"""Run store: atomic writes, no overwrite, JSON and msgpack, one-line errors for bad records."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest

from mle_tui.core import store as store_mod
from mle_tui.core.config import Config
from mle_tui.core.errors import InputError
from mle_tui.core.records import Hardware, Manifest, Record
from mle_tui.core.store import RunStore, atomic_write, load_record_file


def _record(key_mns: int = 8, status: str = "ok", energy: float | None = 12.5) -> Record:
    cfg = Config(max_num_seqs=key_mns, power_limit_w=300)
    return Record(
        run_id="r1", config_key=cfg.key(), config=cfg, status=status, task="chat", runtime="sim", model="m",
        weights="dummy", simulated=True,
        hardware=Hardware(power_source="simulated", gpu_names=["Sim"], gpu_indices=[0], tdp_w=700.0),
        started_unix_s=1.0, duration_s=2.0, energy_per_request_j=energy,
    )


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "f.json"
    atomic_write(p, b"one")
    atomic_write(p, b"two")
    assert p.read_bytes() == b"two"
    assert sorted(x.name for x in p.parent.iterdir()) == ["f.json"]


def test_atomic_write_failure_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "f.json"
    atomic_write(p, b"old")

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_mod.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(p, b"new")
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["f.json"]


@pytest.mark.parametrize("fmt", ["json", "msgpack", "msgpack.gz"])
def test_write_and_load_roundtrip(tmp_path: Path, fmt: str) -> None:
    st = RunStore(tmp_path, fmt)
    st.ensure()
    rec = _record()
    path = st.write_record(rec)
    assert path.name == f"{rec.config_key}.{fmt}"
    assert st.completed_keys() == {rec.config_key}
    assert load_record_file(path) == rec
    assert st.load_records() == [rec]
    assert st.scan().problems == []  # the file name's key is read without the two-part ending


def test_gzipped_record_is_smaller_and_a_broken_one_is_one_line(tmp_path: Path) -> None:
    rec = _record()
    rec.log_tail = ["vLLM log line"] * 2000  # repetitive, as a record's rows and log are
    plain = store_mod.encode_record(rec, "msgpack")
    packed = store_mod.encode_record(rec, "msgpack.gz")
    assert len(packed) < len(plain) / 4
    assert packed == store_mod.encode_record(rec, "msgpack.gz")  # same record, same bytes (no mtime)
    st = RunStore(tmp_path, "msgpack.gz")
    st.ensure()
    path = st.write_record(rec)
    path.write_bytes(path.read_bytes()[: len(packed) // 2])  # cut short
    scan = st.scan()
    assert scan.records == [] and scan.corrupt == [path]
    assert scan.problems[0].startswith(f"{path}: (syntax): ") and "\n" not in scan.problems[0]
    assert st.completed_keys() == set()


def test_record_format_by_name() -> None:
    assert store_mod.record_format("a/mns8-tp1-pl300.msgpack.gz") == "msgpack.gz"
    assert store_mod.record_format("mns8-tp1-pl300.msgpack") == "msgpack"
    assert store_mod.record_format("mns8-tp1-pl300.skipped.json") == "json"
    assert store_mod.record_format("mns8-tp1-pl300.json.gz") is None
    assert store_mod.record_format(".msgpack") is None
    assert store_mod.record_stem("mns8-tp1-pl300.msgpack.gz") == "mns8-tp1-pl300"


def test_write_record_refuses_to_overwrite(tmp_path: Path) -> None:
    st = RunStore(tmp_path)
    st.ensure()
    path = st.write_record(_record(energy=1.0))
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        st.write_record(_record(energy=2.0))
    assert path.read_bytes() == before
    # A record of the same key in the other format also blocks a write.
    st2 = RunStore(tmp_path, "msgpack")
    with pytest.raises(FileExistsError):
        st2.write_record(_record(energy=3.0))
    assert not (tmp_path / "records" / f"{_record().config_key}.msgpack").exists()


def test_bad_record_names_file_field_and_problem(tmp_path: Path) -> None:
    st = RunStore(tmp_path)
    st.ensure()
    path = st.write_record(_record())
    data = json.loads(path.read_text())
    data["config"]["max_num_seqs"] = "eight"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as ei:
        load_record_file(path)
    err = ei.value
    assert err.source == str(path)
    assert err.field == "config.max_num_seqs"
    assert "int" in err.problem
    assert "\n" not in err.line()


def test_bad_status_and_syntax(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    data = json.loads(msgspec.json.encode(_record()))
    data["status"] = "great"
    p.write_text(json.dumps(data))
    with pytest.raises(InputError) as ei:
        load_record_file(p)
    assert ei.value.field == "status"
    p.write_text("{not json")
    with pytest.raises(InputError) as ei:
        load_record_file(p)
    assert ei.value.field == "(syntax)"
    with pytest.raises(InputError) as ei:
        load_record_file(tmp_path / "missing.json")
    assert "no such record file" in ei.value.problem


def test_manifest_roundtrip_and_bad_manifest(tmp_path: Path) -> None:
    st = RunStore(tmp_path)
    assert st.read_manifest() is None
    m = Manifest(run_id="abc", created_unix_s=3.0, host="h", power_source="simulated", seed=4, pid=os.getpid())
    st.write_manifest(m)
    assert st.read_manifest() == m
    (tmp_path / "run.json").write_text('{"run_id": 5}')
    with pytest.raises(InputError) as ei:
        st.read_manifest()
    assert ei.value.source.endswith("run.json")


def test_unknown_format_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        RunStore(tmp_path, "yaml")
