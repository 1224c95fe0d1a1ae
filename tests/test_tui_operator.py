"""What an operator sees (issue 15 §4): server log view, GPU health and diffusion batches in the
run screen, the header at 80 columns, charts in step with the header, the records browser."""

from __future__ import annotations

import time
from pathlib import Path

from textual.widgets import DataTable, Input, Log, Static

from mle_tui.core.config import Config
from mle_tui.core.events import (BatchSampleEvent, ConfigStarted, HealthSample, LogLine, PowerSample,
                                 RequestProgress, RunStarted)
from mle_tui.core.power.health import GpuProcess, HealthReading
from mle_tui.core.profile import load_profile
from mle_tui.tui.app import MleApp
from mle_tui.tui.charts import BatchChart, PowerChart
from mle_tui.tui.live import LiveState, fmt_latency
from mle_tui.tui.rundirs import load_run
from mle_tui.tui.screen_logs import LogScreen, filter_log_lines
from mle_tui.tui.screen_records import RecordsScreen, compare_warnings
from mle_tui.tui.screen_results import ResultsScreen, measured_gpus
from mle_tui.tui.screen_run import RunScreen
from record_factory import llm_record, write_run_dir
from tui_fakes import FakeRunner, FrozenClock, no_gpu_probe, write_profile
from tui_text import screen_text

POLL = 'INFO:     127.0.0.1:40312 - "GET /metrics HTTP/1.1" 200 OK'


def make_app(tmp_path: Path, **kw) -> MleApp:
    kw.setdefault("gpu_probe", no_gpu_probe)
    kw.setdefault("now_s", FrozenClock())
    kw.setdefault("runs_root", tmp_path / "runs")
    kw.setdefault("records_roots", [tmp_path / "runs"])
    kw.setdefault("cursor_blink", False)
    kw.setdefault("profiles", [])
    return MleApp(**kw)


async def until(pilot, cond, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {cond}"
        await pilot.pause(0.05)


def test_fmt_latency_adapts_its_unit():
    assert fmt_latency(0.000042) == "42 µs"
    assert fmt_latency(0.0123) == "12.3 ms"
    assert fmt_latency(0.250) == "250 ms"
    assert fmt_latency(3.5) == "3.50 s"
    assert fmt_latency(None) == "—"


def test_filter_drops_only_metrics_polls():
    lines = [POLL, "INFO 05-01 engine started", '"GET /v1/models HTTP/1.1" 200', POLL.replace("40312", "1")]
    kept, dropped = filter_log_lines(lines)
    assert kept == lines[1:3] and dropped == 2


async def test_server_log_view_from_results_follows_and_steps(tmp_path):
    profile = load_profile(write_profile(tmp_path))
    run_dir = tmp_path / "runs" / "a"
    FakeRunner(profile, run_dir, seed=1).run()
    keys = sorted(p.stem for p in (run_dir / "records").glob("*.json"))
    (run_dir / "logs").mkdir(exist_ok=True)
    for k in keys:
        (run_dir / "logs" / f"{k}.log").write_text(f"{k} starting\n" + (POLL + "\n") * 40 + f"{k} ready\n")
    app = make_app(tmp_path, run_dir=str(run_dir))
    async with app.run_test(size=(100, 30)) as pilot:
        res = app.screen
        assert isinstance(res, ResultsScreen)
        await pilot.pause()
        await pilot.press("l")
        logs = app.screen
        assert isinstance(logs, LogScreen)
        log = logs.query_one("#server-log", Log)
        key = logs.path.stem
        assert list(log.lines) == [f"{key} starting", f"{key} ready"]
        assert "40 GET /metrics poll lines hidden" in str(logs.query_one("#logs-status", Static).render())
        with open(logs.path, "a") as f:
            f.write(POLL + "\nnew line\npartial")
        logs.poll()
        assert list(log.lines)[-1] == "new line"  # the partial line waits for its newline
        await pilot.press("n")
        assert logs.path.stem != key and list(log.lines)[0] == f"{logs.path.stem} starting"
        await pilot.press("escape")
        assert app.screen is res


def _run_screen_app(tmp_path, live: LiveState):
    app = make_app(tmp_path)

    async def push(pilot):
        app.live = live
        screen = RunScreen(live, tick_s=3600)
        await app.push_screen(screen)
        await pilot.pause()
        return screen
    return app, push


async def test_run_screen_diffusion_batches_and_gpu_health(tmp_path):
    wall = [1000.0]
    live = LiveState(now_s=lambda: wall[0])
    live.started_at_s = 1000.0
    app, push = _run_screen_app(tmp_path, live)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await push(pilot)
        cfg = Config(batch_size=8, num_inference_steps=25)
        live.apply(RunStarted(run_id="d", run_dir=str(tmp_path / "nowhere"), configs=[cfg.key(), "next"],
                              skipped=[], power_source="nvml", simulated=False))
        live.apply(ConfigStarted(key=cfg.key(), index=0, total=2, config=cfg, label="B=8", num_requests=128,
                                 gpu_indices=[1]))
        live.batches_per_config = 5
        for i in range(40):
            live.apply(PowerSample(t_s=i * 0.1, per_gpu_w=[500.0], total_w=500.0))
            live.apply(BatchSampleEvent(t_s=i * 0.1, running=8.0 if i % 10 < 7 else 0.0, waiting=0.0))
        live.apply(LogLine(line="batch 0 (warm-up): 3.10 s, 2000 J"))
        live.apply(LogLine(line="batch 1: 2.50 s, 1600 J"))
        live.apply(HealthSample(t_s=4.0, gpus=[HealthReading(
            index=1, temperature_c=66, sm_clock_mhz=1710, utilisation_pct=99, throttle=["power cap"],
            processes=[], strangers=[GpuProcess(pid=4242, name="python")])]))
        wall[0] += 30.0
        screen.sync(force=True)
        await pilot.pause()
        text = screen_text(app)
        header = text.splitlines()[0]
        assert "batch 1/5 (8 img)" in header and "req" not in header
        assert "measured batch 1 of 5 · B=8 · 8 images · 200.0 J/image so far" in text
        assert "saturate" not in text
        assert "GPU1 66°C 1710MHz 99%" in text and "⚠ power cap" in text and "⚠ 1 other process" in text
        assert not screen.query_one("#batch", BatchChart).display  # no dipping batch chart


async def test_header_keeps_eta_at_80_columns_and_charts_follow_a_new_configuration(tmp_path):
    wall = [1000.0]
    live = LiveState(now_s=lambda: wall[0])
    live.started_at_s = 1000.0
    app, push = _run_screen_app(tmp_path, live)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await push(pilot)
        a, b = Config(max_num_seqs=256, power_limit_w=700), Config(max_num_seqs=512, power_limit_w=700)
        live.apply(RunStarted(run_id="a-very-long-run-identifier-20261129T120000Z", run_dir="/nowhere",
                              configs=[a.key(), b.key(), "c"], skipped=[], power_source="simulated",
                              simulated=True))
        live.apply(ConfigStarted(key=a.key(), index=0, total=3, config=a, label="B=256 700 W",
                                 num_requests=4096, power_limit_w=[700.0, 700.0]))
        for i in range(50):
            live.apply(PowerSample(t_s=i * 0.1, per_gpu_w=[300.0, 310.0], total_w=610.0))
        wall[0] += 10.0
        live.apply(RequestProgress(done=1024, total=4096, t_s=5.0))
        screen.sync(force=True)
        await pilot.pause()
        header = screen_text(app).splitlines()[0]
        assert "elapsed 10s ETA" in header
        assert "610" in str(screen.query_one("#power-legend", Static).render())
        # A new configuration: charts and legend switch in the same tick as the header, even
        # when the redraw interval has not come round yet.
        screen._last_chart_at = time.monotonic()
        live.apply(ConfigStarted(key=b.key(), index=1, total=3, config=b, label="B=512 700 W",
                                 num_requests=4096, power_limit_w=[700.0, 700.0]))
        screen.sync()
        await pilot.pause()
        assert "2/3 B=512" in screen_text(app).splitlines()[0]
        assert screen.query_one("#power", PowerChart).data.power_t is None
        assert "610" not in str(screen.query_one("#power-legend", Static).render())
        assert "B=512" in str(screen.query_one("#batch-legend", Static).render())


async def test_records_browser_status_filter_sort_and_path(tmp_path):
    profile = load_profile(write_profile(tmp_path))
    FakeRunner(profile, tmp_path / "runs" / "alpha", seed=1).run()
    other = tmp_path / "elsewhere"
    FakeRunner(profile, other / "beta", seed=2, finish_manifest=False).run()
    app = make_app(tmp_path, run_dir=str(tmp_path / "runs"))
    async with app.run_test(size=(140, 30)) as pilot:
        rs = app.screen
        assert isinstance(rs, RecordsScreen)
        table = rs.query_one("#runs", DataTable)
        await until(pilot, lambda: table.row_count == 1)
        assert str(table.get_cell(str((tmp_path / "runs" / "alpha").resolve()), "status")) == "finished"
        # Another directory through the path input.
        await pilot.press("p")
        inp = rs.query_one("#records-path", Input)
        inp.value = f"{tmp_path / 'runs'}, {other}"
        await pilot.press("enter")
        await until(pilot, lambda: table.row_count == 2)
        beta = str((other / "beta").resolve())
        # The fake runner's manifest names this (live) process: the writer is alive.
        assert str(table.get_cell(beta, "status")) in ("running", "stopped")
        names = lambda: [str(table.get_cell_at((i, 1))) for i in range(table.row_count)]  # noqa: E731
        rs.sort_by("run")
        assert names() == ["alpha", "beta"]
        rs.sort_by("run")
        assert names() == ["beta", "alpha"]
        await pilot.press("slash", *"alp")
        assert names() == ["alpha"]
        await pilot.press("escape")
        assert table.row_count == 2 and rs.focused is table


def test_compare_warns_about_hardware_power_source_and_runtime(tmp_path):
    sim = write_run_dir(tmp_path / "sim", [llm_record(8, 700, tpot_s=0.02, energy_j=10.0, simulated=True)])
    real = llm_record(8, 700, tpot_s=0.02, energy_j=10.0, simulated=False)
    real.hardware.gpu_names = ["NVIDIA H200"]
    nv = write_run_dir(tmp_path / "nv", [real])
    warn = compare_warnings([load_run(sim), load_run(nv)])
    assert [w.split(":")[0] for w in warn] == ["hardware differs", "power source differs", "runtime differs"]
    assert "simulated" in warn[1] and "NVML" in warn[1]
    assert compare_warnings([load_run(sim), load_run(sim)]) == []


def test_results_title_names_the_measured_gpus(tmp_path):
    r = llm_record(8, 700, tpot_s=0.02, energy_j=10.0, simulated=False)
    r.hardware.gpu_names, r.hardware.gpu_indices = ["NVIDIA H200"], [0]
    d = write_run_dir(tmp_path / "r", [r])
    info = load_run(d)
    from mle_tui.core.records import GpuInfo

    info.manifest.gpus = [GpuInfo(index=i, name="NVIDIA H200") for i in range(2)]
    assert measured_gpus(info) == "1× NVIDIA H200 (GPU 0 of 2)"
