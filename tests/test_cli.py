"""The mle-tui command, run as a subprocess: exit codes, one-line errors, report, headless demo."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mle_tui.core import __version__
from mle_tui.core import events as ev
from mle_tui.core.config import Config
from mle_tui.tui.cli import default_out_dir
from mle_tui.tui.headless import ProgressPrinter, fmt_eta
from record_factory import sample_records, write_run_dir

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "profiles" / "demo.toml"
DEMO_DIFFUSION = REPO / "profiles" / "demo-diffusion.toml"


def cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("CI", None)
    return subprocess.run([sys.executable, "-m", "mle_tui.tui.cli", *args], capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=timeout, env=env)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert lines[0].startswith("mle-tui: ")
    return lines[0]


def test_version():
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout == f"mle-tui {__version__}\n"


def test_profiles_lists_shipped_profiles():
    proc = cli("profiles")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["NAME", "TASK", "RUNTIME", "FILE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["demo"][1:4] == ["chat", "sim", "profiles/demo.toml"]
    assert rows["sd2.1-partiprompts"][1:3] == ["text-to-image", "diffusers"]
    assert rows["llama3.1-8b-chat"][2] == "vllm"
    assert {"code-humaneval", "demo-diffusion"} <= set(rows)


def test_bad_profile_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(DEMO.read_text().replace("num_requests = 256", 'num_requests = "lots"'))
    line = _one_error_line(cli("run", str(bad), "--headless", "--out", str(tmp_path / "out")))
    assert line == f"mle-tui: {bad}: dataset.num_requests: Expected int, got str"
    assert not (tmp_path / "out").exists()


def test_toml_syntax_error_and_missing_file(tmp_path):
    bad = tmp_path / "syntax.toml"
    bad.write_text('name = "x\n')
    assert f"mle-tui: {bad}: (syntax): " in _one_error_line(cli("run", str(bad), "--headless"))
    missing = tmp_path / "missing.toml"
    assert _one_error_line(cli("run", str(missing), "--headless")).startswith(f"mle-tui: {missing}: no such profile")


def test_argument_errors_are_one_line():
    assert _one_error_line(cli("report")).startswith("mle-tui: command line: ")
    assert "invalid choice" in _one_error_line(cli("run", str(DEMO), "--format", "xml"))
    assert _one_error_line(cli("frobnicate")).startswith("mle-tui: command line: ")


# --------------------------------------------------------------------------- report


@pytest.fixture
def run_dir(tmp_path):
    return write_run_dir(tmp_path / "run", sample_records(), profile_toml=DEMO.read_text())


def test_report_text_uses_the_profile_target(run_dir):
    proc = cli("report", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "target <= 100.0 ms" in out
    rec = next(line for line in out.splitlines() if "<- recommended" in line)
    assert "B=64 700 W" in rec  # lowest energy with TPOT <= 100 ms
    assert "SIMULATED" in out and "failed: server exited" in out


def test_report_json_target_and_metric(run_dir):
    proc = cli("report", str(run_dir), "--json", "--target", "50ms")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"frontier", "recommended", "savings_vs_fastest", "target_s", "metric", "rows",
                         "message", "simulated", "problems", "sweep", "with_margin"}
    assert data["recommended"]["key"] == "mns32-tp1-pl400"
    assert data["savings_vs_fastest"] == pytest.approx(0.6)
    assert data["target_s"] == pytest.approx(0.05) and data["metric"] == "tpot"
    e2e = json.loads(cli("report", str(run_dir), "--json", "--metric", "e2e", "--target", "7s").stdout)
    assert e2e["metric"] == "e2e" and e2e["recommended"]["key"] == "mns16-tp1-pl700"
    none = json.loads(cli("report", str(run_dir), "--json", "--target", "1ms").stdout)
    assert none["recommended"] is None and none["savings_vs_fastest"] is None
    assert "nothing meets" in none["message"]


def test_report_csv(run_dir, tmp_path):
    out = tmp_path / "table.csv"
    proc = cli("report", str(run_dir), "--csv", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.startswith("# mle-tui Pareto report")
    header = next(line for line in text.splitlines() if not line.startswith("#"))
    assert header.startswith("key,label,status,frontier,recommended")
    assert len([line for line in text.splitlines() if not line.startswith("#")]) == 1 + 8


def test_report_bad_input(run_dir, tmp_path):
    assert "--target" in _one_error_line(cli("report", str(run_dir), "--target", "soon"))
    assert "--metric" in _one_error_line(cli("report", str(run_dir), "--metric", "speed"))
    assert "no such run directory" in _one_error_line(cli("report", str(tmp_path / "nowhere")))
    (tmp_path / "empty").mkdir()
    assert "not a run directory" in _one_error_line(cli("report", str(tmp_path / "empty")))
    broken = run_dir / "records" / "mns8-tp1-pl700.json"
    broken.write_text(broken.read_text().replace('"status":"ok"', '"status":"great"'))
    # The good records are still reported; the bad one is named on stderr (exit 2), not counted.
    proc = cli("report", str(run_dir))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"mle-tui: {broken}: status: ") and "reruns" in lines[0]
    assert "B=16 700 W" in proc.stdout and "B=8 700 W" not in proc.stdout


# --------------------------------------------------------------------------- imports stay light


def test_headless_commands_do_not_import_textual_zeus_or_torch(run_dir, tmp_path):
    code = (
        "import sys\n"
        "from mle_tui.tui.cli import main\n"
        f"assert main(['--version']) == 0\n"
        f"assert main(['profiles']) == 0\n"
        f"assert main(['report', {str(run_dir)!r}, '--json']) == 0\n"
        f"assert main(['run', {str(DEMO_DIFFUSION)!r}, '--headless', '--out', {str(tmp_path / 'd')!r}]) == 0\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'textual', 'zeus', 'torch', 'transformers', 'vllm', 'diffusers'})\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


# --------------------------------------------------------------------------- headless runs


def test_demo_headless_run_then_report_json(tmp_path):
    out = tmp_path / "x"
    proc = cli("run", str(DEMO), "--headless", "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = sorted((out / "records").glob("*.json"))
    assert len(records) == 10
    # Not a terminal: one progress line per finished configuration.
    done_lines = [line for line in proc.stderr.splitlines() if line.startswith("[") and "] B=" in line]
    assert len(done_lines) == 10 and all(": ok" in line for line in done_lines)
    assert "<- recommended" in proc.stdout  # the report follows the run
    rep = cli("report", str(out), "--json")
    assert rep.returncode == 0, rep.stderr
    data = json.loads(rep.stdout)
    assert data["simulated"] is True and data["metric"] == "tpot"
    assert data["target_s"] == pytest.approx(0.1)
    assert len(data["rows"]) == 10 and all(r["status"] == "ok" for r in data["rows"])
    assert data["recommended"] is not None and data["recommended"]["latency_ms"] <= 100.0
    assert data["frontier"] and all(r["frontier"] for r in data["frontier"])
    # The recommendation is the lowest-energy row meeting the target.
    meets = [r for r in data["rows"] if r["latency_ms"] <= 100.0]
    assert data["recommended"]["energy_per_request_j"] == min(r["energy_per_request_j"] for r in meets)
    assert data["savings_vs_fastest"] is not None and data["savings_vs_fastest"] > 0


def test_rerun_resumes_without_rewriting(tmp_path):
    out = tmp_path / "d"
    first = cli("run", str(DEMO_DIFFUSION), "--headless", "--out", str(out), "--format", "msgpack")
    assert first.returncode == 0, first.stderr[-2000:]
    files = sorted((out / "records").glob("*.msgpack"))
    assert len(files) == 10
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = cli("run", str(DEMO_DIFFUSION), "--headless", "--out", str(out))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "10 already done" in again.stderr
    assert {f: f.stat().st_mtime_ns for f in files} == stamps
    follow = cli("attach", str(out), "--headless")
    assert follow.returncode == 0, follow.stderr
    assert "done: 10 ok" in follow.stderr or "run finished" in follow.stderr


# --------------------------------------------------------------------------- progress printer


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class TtyBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


def _started(n: int = 4, skipped: int = 0) -> ev.RunStarted:
    keys = [f"k{i}" for i in range(n)]
    return ev.RunStarted(run_id="r", run_dir="/tmp/r", configs=keys, skipped=keys[:skipped],
                         power_source="simulated", simulated=True)


def _cfg(i: int, n: int = 4) -> ev.ConfigStarted:
    return ev.ConfigStarted(key=f"k{i}", index=i, total=n, config=Config(max_num_seqs=8), label=f"B={8 << i}",
                            num_requests=100)


def _fin(i: int, status: str = "ok") -> ev.ConfigFinished:
    return ev.ConfigFinished(key=f"k{i}", status=status, reasons=[] if status == "ok" else ["server died"],
                             energy_per_request_j=12.34, latency_value_s=0.05, record_path="x")


def test_progress_pipe_prints_one_line_per_config():
    clock, out = FakeClock(), io.StringIO()
    p = ProgressPrinter(out, clock=clock)
    p(_started())
    for i in range(2):
        p(_cfg(i))
        for d in range(0, 101, 10):
            p(ev.RequestProgress(done=d, total=100, t_s=d))
            clock.t += 1.0
        p(_fin(i, "ok" if i == 0 else "failed"))
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 3
    assert lines[1].startswith("[1/4] B=8: ok  12.3 J/req  latency 50.0 ms  in 11.0s")
    assert "failed" in lines[2] and "(server died)" in lines[2]
    # Two of four configurations took 22 s: about 22 s left.
    assert lines[2].endswith("ETA 22s")


def test_progress_prints_the_runs_warnings_and_not_its_other_log_lines():
    """A live warning (the client falling behind vLLM's engine) reaches a headless or detached
    operator; the server's own log lines do not."""
    clock, out = FakeClock(), io.StringIO()
    p = ProgressPrinter(out, clock=clock)
    p(_started())
    p(_cfg(0))
    p(ev.LogLine(line="INFO: engine step"))
    p(ev.LogLine(line=f"{ev.WARNING_PREFIX}over the last 10 s the client received tokens 1.12x slower"))
    p(ev.LogLine(line=f"{ev.WARNING_PREFIX}\x1b[31mred", node="node-2"))
    lines = out.getvalue().splitlines()
    assert lines[1] == "mle-tui: warning: over the last 10 s the client received tokens 1.12x slower"
    assert lines[2].startswith("node-2: mle-tui: warning: ") and "\x1b" not in lines[2]
    assert not any("engine step" in line for line in lines)
    # what the app's toast shows: the warning without its prefix, its node first
    assert ev.LogLine(line=f"{ev.WARNING_PREFIX}slower", node="node-2").warning == "node-2: slower"
    assert ev.LogLine(line=f"{ev.WARNING_PREFIX}slower").warning == "slower"
    assert ev.LogLine(line="INFO: engine step").warning is None


def test_progress_tty_redraws_in_place_and_throttles():
    clock, out = FakeClock(), TtyBuffer()
    p = ProgressPrinter(out, clock=clock)
    p(_started())
    p(_cfg(0))
    for d in range(1, 51):
        p(ev.RequestProgress(done=d, total=100, t_s=d))
        clock.t += 0.01  # 100 events per second: throttled to 5 redraws per second
    text = out.getvalue()
    assert 1 <= text.count("\r[1/4]") <= 3
    clock.t += 1.0
    p(ev.RequestProgress(done=50, total=100, t_s=51))
    last = out.getvalue().split("\r")[-1]
    assert last.startswith("[1/4] B=8 |##########..........| 50/100 req")
    assert "ETA" in last
    p(_fin(0))
    assert out.getvalue().endswith("\n") and "[1/4] B=8: ok" in out.getvalue().splitlines()[-1]


def test_progress_counts_diffusion_batches_from_log_lines():
    clock, out = FakeClock(), TtyBuffer()
    p = ProgressPrinter(out, clock=clock, batches_per_config=6)
    p(_started())
    p(_cfg(0))
    for i, tag in enumerate([" (warm-up)", "", "", ""]):
        clock.t += 1.0
        p(ev.LogLine(line=f"batch {i}{tag}: 5.00 s, 2400 J"))
    p(ev.LogLine(line="power limit 400 W requested"))  # not a batch
    clock.t += 1.0
    p(ev.LogLine(line="a batch of nonsense"))
    assert out.getvalue().split("\r")[-1].startswith("[1/4] B=8 |#############.......| 4/6 batches")


def test_eta_format_and_default_out_dir():
    assert fmt_eta(None) == "--" and fmt_eta(5) == "5s" and fmt_eta(125) == "2m05s" and fmt_eta(7260) == "2h01m"
    assert default_out_dir("llama 3.1/8b", now=0).as_posix() == "runs/llama-3.1-8b-19700101T000000Z"
