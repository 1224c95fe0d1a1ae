"""Run directories under fault: two runs into one directory (the lock), corrupt, foreign and
newer-schema records, a missing run.json, escape sequences in records, and paths that are FIFOs,
devices, directories or too long — one line, exit 2, no traceback, no hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from mle_tui.core.errors import InputError
from mle_tui.core.run_lock import lock_holder
from mle_tui.core.store import RunStore
from record_factory import sample_records, write_run_dir

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "mle_tui.tui.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


# --------------------------------------------------------------------------- the run lock

HOLDER = """
import sys, time
from pathlib import Path
from mle_tui.core.store import RunStore
with RunStore(Path(sys.argv[1])).lock():
    Path(sys.argv[2]).write_text("held")
    time.sleep(600)
"""


def _start_holder(tmp_path: Path, run: Path) -> subprocess.Popen:
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run), str(ready)])
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "holder never took the lock"
        time.sleep(0.01)
    return proc


def test_second_run_into_one_directory_is_refused_naming_the_holder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _start_holder(tmp_path, run)
    try:
        with pytest.raises(InputError) as ei:
            RunStore(run).lock().acquire()
        assert ei.value.field == "--out" and f"pid {proc.pid}" in ei.value.problem
        assert lock_holder(run)["pid"] == proc.pid
        # The holder is killed outright: the kernel drops the lock, nothing to clean up.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert lock_holder(run) is None
        with RunStore(run).lock() as lk:
            assert lk.held
            with pytest.raises(InputError):  # also within one process
                RunStore(run).lock().acquire()
        assert lock_holder(run) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- reading run dirs


def _run(tmp_path: Path) -> Path:
    from mle_tui.core.profile import decode_profile
    from mle_tui.core.toml_text import struct_to_toml

    recs = sample_records()
    profile_toml = ""
    demo = decode_profile((REPO / "profiles" / "demo.toml").read_text())
    keys = {c.key() for c in demo.configs()}
    if all(r.config_key in keys for r in recs):
        profile_toml = struct_to_toml(demo)
    return write_run_dir(tmp_path / "run", recs, profile_toml)


def test_corrupt_record_is_reported_not_done_and_rerun(tmp_path: Path) -> None:
    run = _run(tmp_path)
    store = RunStore(run)
    good = store.scan().records
    victim = good[0]
    path = run / "records" / f"{victim.config_key}.json"
    path.write_bytes(path.read_bytes()[:100])  # torn
    scan = store.scan()
    assert len(scan.records) == len(good) - 1 and scan.corrupt == [path]
    assert str(path) in scan.problems[0] and "reruns" in scan.problems[0]
    assert victim.config_key not in store.completed_keys()
    assert store.find_record(victim.config_key) is None
    store.write_record(victim)  # the resume's rewrite: the bad file is set aside, kept
    assert victim.config_key in store.completed_keys()
    assert len(list((run / "records").glob(f"{victim.config_key}.json.corrupt-*"))) == 1


def test_newer_schema_is_refused_and_records_of_other_configs_are_never_recommended(tmp_path: Path) -> None:
    run = _run(tmp_path)
    recs = sample_records()
    newer = msgspec.structs.replace(recs[1], schema_version=99)
    (run / "records" / f"{newer.config_key}.json").write_bytes(msgspec.json.encode(newer))
    m = json.loads((run / "run.json").read_text())
    m["configs"] = [r.config_key for r in recs[2:]]  # recs[0] is not part of this run
    m["profile_toml"] = ""
    (run / "run.json").write_text(json.dumps(m))
    proc = cli("report", str(run), "--json", "--target", "10s")
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    keys = {r["key"] for r in data["rows"]}
    assert recs[0].config_key not in keys and recs[1].config_key not in keys
    assert any("schema" in p and "newer" in p for p in data["problems"])
    assert any("not a configuration of this run" in p for p in data["problems"])
    assert data["recommended"] is None or data["recommended"]["key"] != recs[0].config_key
    m["schema_version"] = 7
    (run / "run.json").write_text(json.dumps(m))
    assert "run.json: schema_version" in one_line(cli("report", str(run)))


def test_missing_run_json_is_an_error_for_resume(tmp_path: Path) -> None:
    run = _run(tmp_path)
    (run / "run.json").unlink()
    with pytest.raises(InputError) as ei:
        RunStore(run).check_resumable()
    assert "run.json" in ei.value.line() and "resume" in ei.value.problem
    RunStore(tmp_path / "fresh").check_resumable()  # an empty/new directory is fine


def test_escape_sequences_in_records_never_reach_the_terminal(tmp_path: Path) -> None:
    run = _run(tmp_path)
    p = sorted((run / "records").glob("*.json"))[0]
    data = json.loads(p.read_text())
    osc52 = "\x1b]52;c;ZWNobyBwd25lZAo=\x07"
    data["status"] = "failed"
    data["reasons"] = [f"boom{osc52}\x1b[2J\x9b31m"]
    p.write_text(json.dumps(data))
    out = cli("report", str(run))
    assert out.returncode == 0, out.stderr
    assert "boom" in out.stdout
    for s in (out.stdout, out.stderr):
        assert "\x1b" not in s and "\x07" not in s and "\x9b" not in s
    # A record whose decode error quotes the bad value: the error line is escaped too.
    data["status"] = f"x{osc52}"
    p.write_text(json.dumps(data))
    proc = cli("report", str(run))
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr and "\x1b" not in proc.stdout


def test_csv_never_creates_directories_nor_replaces_non_files(tmp_path: Path) -> None:
    run = _run(tmp_path)
    line = one_line(cli("report", str(run), "--csv", str(tmp_path / "no" / "such" / "x.csv")))
    assert "--csv" in line and "does not exist" in line and not (tmp_path / "no").exists()
    assert "directory" in one_line(cli("report", str(run), "--csv", str(tmp_path)))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "FIFO" in one_line(cli("report", str(run), "--csv", str(fifo)))
    assert fifo.exists() and not fifo.is_file()
    assert "device" in one_line(cli("report", str(run), "--csv", "/dev/null"))
    assert cli("report", str(run), "--csv", str(tmp_path / "ok.csv")).returncode == 0


def test_inputs_that_are_not_files_are_one_line_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "p.toml"
    os.mkfifo(fifo)
    assert "FIFO" in one_line(cli("run", str(fifo), "--headless", "--out", str(tmp_path / "o")))
    assert "device" in one_line(cli("run", "/dev/zero", "--headless", "--out", str(tmp_path / "o")))
    (tmp_path / "d.toml").mkdir()
    assert "directory" in one_line(cli("run", str(tmp_path / "d.toml"), "--headless", "--out", str(tmp_path / "o")))
    long = "/" + "x" * 5000
    assert "too long" in one_line(cli("run", long + ".toml", "--headless"))
    assert "too long" in one_line(cli("report", long))
    # A record that is a FIFO or a device: reported, the rest of the report still shown.
    run = _run(tmp_path)
    os.mkfifo(run / "records" / "mns999-tp1-pl300.json")
    os.symlink("/dev/zero", run / "records" / "mns998-tp1-pl300.json")
    proc = cli("report", str(run))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "FIFO" in proc.stderr and "device" in proc.stderr and "Configuration" in proc.stdout
    (run / "run.json").unlink()
    os.mkfifo(run / "run.json")
    assert "FIFO" in one_line(cli("report", str(run)))


def test_export_does_not_follow_symlinks_out_of_the_run_directory(tmp_path: Path) -> None:
    from mle_tui.core.export import export_run

    run = _run(tmp_path)
    secret = tmp_path / "secret.json"
    secret.write_text('{"password": "hunter2"}')
    os.symlink(secret, run / "records" / "mns777-tp1-pl300.json")
    os.symlink("/dev/zero", run / "records" / "mns778-tp1-pl300.json")
    inside = sorted((run / "records").glob("mns*.json"))[0]
    os.symlink(inside.name, run / "records" / "mns779-tp1-pl300.json")  # inside: fine
    dest = tmp_path / "out"
    (dest).mkdir()
    trap = tmp_path / "trap.txt"
    trap.write_text("keep")
    os.symlink(trap, dest / "pareto.csv")  # a symlink at the destination is replaced, not followed
    written, skipped = export_run(run, dest, "csv\n", "formulas\n")
    names = {p.name for p in written}
    assert "mns777-tp1-pl300.json" not in names and "mns778-tp1-pl300.json" not in names
    assert "mns779-tp1-pl300.json" in names and "run.json" in names
    assert len(skipped) == 2 and all("not exported" in s for s in skipped)
    assert "hunter2" not in "".join(p.read_text() for p in (dest / "records").iterdir())
    assert trap.read_text() == "keep" and (dest / "pareto.csv").read_text() == "csv\n"
    assert not (dest / "pareto.csv").is_symlink()


def test_headless_progress_lines_are_escaped() -> None:
    import io

    from mle_tui.tui.headless import ProgressPrinter

    out = io.StringIO()
    printer = ProgressPrinter(out)
    printer._line("server says \x1b]52;c;cHduZWQ=\x07hi\x1b[31m")
    assert out.getvalue() == "server says hi\n"


RACER = """
import sys, time
from pathlib import Path
from mle_tui.core.errors import InputError
from mle_tui.core.store import RunStore
run, tag = Path(sys.argv[1]), Path(sys.argv[2])


def say(suffix, text):  # write then rename: the parent polls for the file
    tmp = tag.parent / (tag.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(tag.parent / (tag.name + suffix))


try:
    with RunStore(run).lock():
        say(".held", "1")
        while not (run.parent / "release").exists():
            time.sleep(0.01)
except InputError as exc:
    say(".refused", exc.line())
"""


def test_two_runs_started_together_exactly_one_wins(tmp_path: Path) -> None:
    for rnd in range(8):
        base = tmp_path / f"r{rnd}"
        base.mkdir()
        run = base / "run"
        procs = [subprocess.Popen([sys.executable, "-c", RACER, str(run), str(base / n)]) for n in "ab"]
        deadline = time.monotonic() + 60
        while len(list(base.glob("*.held")) + list(base.glob("*.refused"))) < 2:
            assert time.monotonic() < deadline, "hang guard"
            assert not any(p.poll() not in (None, 0) for p in procs)
            time.sleep(0.01)
        held, refused = list(base.glob("*.held")), list(base.glob("*.refused"))
        assert len(held) == 1 and len(refused) == 1
        winner = procs["ab".index(held[0].name[0])]
        assert f"pid {winner.pid}" in refused[0].read_text() or "holder details" in refused[0].read_text()
        (base / "release").write_text("1")
        for p in procs:
            assert p.wait(timeout=60) == 0


def test_mle_tui_run_into_a_directory_a_sweep_holds_exits_2_and_loses_nothing(tmp_path: Path) -> None:
    """Through the runner: a sweep holding the directory (prepared, not finished) makes a
    second ``mle-tui run`` into it exit 2 naming the holder, and writes nothing."""
    import subprocess
    import sys

    from mle_tui.core.profile import load_profile
    from mle_tui.core.runner import SweepRunner

    run = tmp_path / "run"
    profile = load_profile(REPO / "profiles" / "demo.toml")
    first = SweepRunner(profile, run, profile_path=str(REPO / "profiles" / "demo.toml"))
    first.prepare()  # takes the run directory's lock
    before = sorted(p.name for p in run.rglob("*"))
    r = subprocess.run([sys.executable, "-m", "mle_tui.tui.cli", "run", str(REPO / "profiles" / "demo.toml"),
                        "--headless", "--out", str(run)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0] and str(os.getpid()) in lines[0]
    assert sorted(p.name for p in run.rglob("*")) == before
    summary = first.run()  # the holder goes on and finishes
    assert summary.completed == len(profile.configs())
