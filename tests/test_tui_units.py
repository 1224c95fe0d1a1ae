"""Unit tests of the TUI's non-Textual parts: bounded series, event folding, form validation,
live.jsonl tailing, the results model on core.report, run-directory discovery and export."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest

from mle_tui.core.config import Config
from mle_tui.core.events import (ConfigFinished, ConfigStarted, LogLine, PowerSample, RequestProgress,
                                 RunFinished, RunStarted, SteadyUpdate, encode_event)
from mle_tui.core.profile import load_profile
from mle_tui.core.records import GpuInfo
from mle_tui.core.procgroup import pid_alive
from mle_tui.tui.attach import LiveTail
from mle_tui.tui.form import build_profile, estimate_s, field_values
from mle_tui.tui.gpus import GpuProbe
from mle_tui.tui.live import DONE, EARLIER, FAILED, PENDING, RUNNING, LiveState, fmt_duration
from mle_tui.tui.results_model import ResultsModel
from mle_tui.tui.rundirs import export_run, find_run_dirs, load_run
from mle_tui.tui.series import DecimatingSeries, decimate, steps
from tui_fakes import DEMO_TOML, DIFFUSION_TOML, FakeRunner, write_profile


# -- series --------------------------------------------------------------------------------
def test_series_memory_is_bounded_and_keeps_the_whole_hour():
    s = DecimatingSeries(3, capacity=1024)
    nbytes = s.nbytes()
    for i in range(36_000):
        s.append(i * 0.1, (100.0 + (i % 10), 1.0, 2.0))
    assert len(s) <= 1024
    assert s.nbytes() == nbytes  # no growth
    t, v = s.arrays()
    assert t[0] == 0.0 and t[-1] > 3500.0  # the whole hour is still drawn
    # Bucket means keep the mean power (hence the energy) of what was fed.
    assert abs(float(v[0].mean()) - 104.5) < 0.05
    assert s.count == 36_000


def test_decimate_caps_points_and_keeps_mean():
    t = np.arange(1001, dtype=float)
    v = np.vstack([np.arange(1001, dtype=float)])
    tt, vv = decimate(t, v, 100)
    assert len(tt) <= 101 and vv.shape[1] == len(tt)
    assert tt[0] == 0.0 and 980.0 <= tt[-1] <= 1000.0  # each point at its bucket start
    assert abs(vv[0].mean() - 500.0) < 10


def test_steps_hold_each_value_until_the_next_sample():
    xs, ys = steps(np.array([0.0, 1.0, 2.0]), np.array([5.0, 7.0, 9.0]), t_end=3.0)
    assert steps(np.array([0.0, 1.0, 2.0, 3.0]), np.array([5.0, 5.1, 9.0, 9.0]), quantum=1.0) == (
        [0.0, 2.0, 2.0, 3.0], [5.0, 5.0, 9.0, 9.0])  # flat runs collapse
    assert xs == [0.0, 1.0, 1.0, 2.0, 2.0, 3.0]
    assert ys == [5.0, 5.0, 7.0, 7.0, 9.0, 9.0]


# -- live state ------------------------------------------------------------------------------
def _started(keys, skipped=()):
    return RunStarted(run_id="r", run_dir="/tmp/r", configs=list(keys), skipped=list(skipped),
                      power_source="simulated", simulated=True)


def test_live_state_folds_a_configuration():
    wall = [100.0]
    live = LiveState(now_s=lambda: wall[0])
    c = Config(max_num_seqs=8)
    live.apply(_started(["a", "b", "c"], skipped=["c"]))
    assert [r.status for r in live.rows.values()] == [PENDING, PENDING, EARLIER]
    live.apply(ConfigStarted(key="a", index=0, total=3, config=c, label="B=8", num_requests=10))
    assert live.rows["a"].status == RUNNING and live.current == "a"
    for i in range(50):
        live.apply(PowerSample(t_s=i * 0.1, per_gpu_w=[100.0, 110.0], total_w=210.0, memory_w=40.0))
    assert live.gpu_count == 2 and live.has_memory and len(live.power) == 50
    live.apply(SteadyUpdate(start_s=1.0, end_s=None, mean_batch=7.9, gates={"window": False}))
    assert live.steady.start_s == 1.0 and live.steady_gates_text() == "window ✗"
    wall[0] += 4.9
    live.apply(RequestProgress(done=5, total=10, t_s=4.9))
    # Half the requests done in 4.9 s of wall time: ~4.9 s left of this one, then 1 pending of ~9.8 s.
    eta = live.eta_s()
    assert eta is not None and 14.0 < eta < 15.5
    live.apply(LogLine(line="hello"))
    assert list(live.log) == ["hello"] and live.log_count == 1
    live.apply(ConfigFinished(key="a", status="ok", reasons=[], energy_per_request_j=12.5,
                              latency_value_s=0.02, record_path="x"))
    assert live.rows["a"].status == DONE and live.rows["a"].energy_per_request_j == 12.5
    assert live.rows["a"].duration_s == pytest.approx(4.9)
    live.apply(ConfigStarted(key="b", index=1, total=3, config=c, label="B=8", num_requests=10))
    assert live.power is None and live.steady is None  # new configuration, fresh charts
    live.apply(ConfigFinished(key="b", status="failed", reasons=["skipped by user"],
                              energy_per_request_j=None, latency_value_s=None, record_path=""))
    assert live.rows["b"].status == FAILED
    live.apply(RunFinished(completed=1, failed=1, invalid=0, stopped=False))
    assert live.eta_s() == 0.0 and live.counts() == {DONE: 1, FAILED: 1, EARLIER: 1}
    # Elapsed is wall time and stops when the sweep ends.
    live.started_at_s = 100.0
    ended = live.elapsed_s()
    wall[0] += 60.0
    assert live.elapsed_s() == ended == pytest.approx(4.9)


def test_eta_when_attached_uses_the_wall_rate_and_diffusion_counts_batches():
    from mle_tui.core.events import BatchProgress

    wall = [1000.0]
    live = LiveState(now_s=lambda: wall[0])
    live.started_at_s = 900.0  # attached 100 s into the sweep
    live.apply(_started(["a", "b", "c", "d"]))
    for key in ("a", "b"):
        live.apply(ConfigFinished(key=key, status="ok", reasons=[], energy_per_request_j=1.0,
                                  latency_value_s=0.01, record_path=""))
    assert live.eta_s() == pytest.approx(100.0)  # 2 done in 100 s, 2 left
    d = Config(batch_size=4, num_inference_steps=25)
    live.apply(ConfigStarted(key="c", index=2, total=4, config=d, label="bs4", num_requests=32))
    assert live.diffusion
    live.batches_per_config = 5
    live.apply(LogLine(line="batch 0 (warm-up): 3.10 s, 2000 J"))
    live.apply(LogLine(line="batch 1: 2.50 s, 1600 J"))
    live.apply(LogLine(line="batch 2: 2.50 s, 1400 J"))
    bp = live.batch_progress
    assert (bp.done, bp.total, bp.batch_size) == (2, 5, 4)
    assert bp.energy_per_image_j == pytest.approx(3000 / 8)
    assert live.current_fraction() == pytest.approx(0.4)
    live.apply(BatchProgress(done=3, total=6, batch_size=4, energy_per_image_j=350.0))
    assert live.current_fraction() == pytest.approx(0.5)


def test_fmt_duration():
    assert fmt_duration(None) == "—"
    assert fmt_duration(59) == "59s"
    assert fmt_duration(61) == "1m01s"
    assert fmt_duration(3 * 3600 + 120) == "3h02m"


# -- form ----------------------------------------------------------------------------------
def test_form_validates_as_you_type(tmp_path):
    base = load_profile(write_profile(tmp_path))
    values = field_values(base)
    ok = build_profile(base, values)
    assert ok.ok and ok.num_configs == 6  # 8,16,32 x 400,700
    bad = build_profile(base, {**values, "max_num_seqs": "8..x"})
    assert not bad.ok and "cannot parse" in bad.errors["max_num_seqs"]
    assert "required" in build_profile(base, {**values, "max_num_seqs": ""}).errors["max_num_seqs"]
    assert "whole number" in build_profile(base, {**values, "num_requests": "ten"}).errors["num_requests"]
    assert "duration" in build_profile(base, {**values, "target": "fast"}).errors["target"]
    assert "positive integers" in build_profile(base, {**values, "power_limit_w": "0.5"}).errors["power_limit_w"]
    wider = build_profile(base, {**values, "max_num_seqs": "8..256 x2"})
    assert wider.ok and wider.num_configs == 12
    runtime = build_profile(base, {**values, "runtime": "diffusers"})
    assert not runtime.ok and "diffusers" in runtime.errors["runtime"]


def test_form_checks_power_limits_and_gpu_count_against_detected_gpus(tmp_path):
    base = load_profile(write_profile(tmp_path, DEMO_TOML.replace("simulated = true", "simulated = false")))
    values = {**field_values(base), "runtime": "vllm"}
    gpus = [GpuInfo(index=0, name="H100", min_power_limit_w=200, max_power_limit_w=700)]
    res = build_profile(base, {**values, "power_limit_w": "100, 700", "tensor_parallel": "1, 2"}, gpus=gpus)
    assert "outside the GPUs' range 200–700 W" in res.errors["power_limit_w"]
    assert "needs 2 GPUs, 1 detected" in res.errors["tensor_parallel"]


def test_estimate_is_labelled():
    from mle_tui.core.shipped import profiles_dir

    est, how = estimate_s(load_profile(profiles_dir() / "llama3.1-8b-chat.toml"))
    assert est is not None and est > 60 and "rough" in how
    assert estimate_s(load_profile(profiles_dir() / "demo.toml"))[0] is None


def test_gpu_probe_summary():
    p = GpuProbe(gpus=[GpuInfo(index=i, name="NVIDIA H200", power_limit_w=700, min_power_limit_w=200,
                                max_power_limit_w=700) for i in range(8)])
    assert p.summary() == "8 × NVIDIA H200 · power limit 200–700 W (now 700 W)"
    assert "No NVIDIA GPU" in GpuProbe(error="NVML: not found").summary()


# -- attach tail ------------------------------------------------------------------------------
def test_live_tail_reads_only_complete_lines_and_skips_garbage(tmp_path):
    path = tmp_path / "live.jsonl"
    tail = LiveTail(path)
    assert tail.read() == []
    line = encode_event(LogLine(line="a"))
    path.write_bytes(line + b"\n" + line[:5])
    assert [e.line for e in tail.read()] == ["a"]
    with open(path, "ab") as f:
        f.write(line[5:] + b"\nnot json\n")
    events = tail.read()
    assert [e.line for e in events] == ["a"] and tail.bad_lines == 1
    path.write_bytes(encode_event(LogLine(line="new")) + b"\n")  # truncated and rewritten
    assert [e.line for e in tail.read()] == ["new"]
    assert pid_alive(__import__("os").getpid()) and not pid_alive(None)


# -- results model on records from the fake runner ----------------------------------------------
@pytest.fixture(scope="module")
def fake_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("fakerun")
    profile = load_profile(write_profile(tmp))
    FakeRunner(profile, tmp / "runs" / "a", seed=1).run()
    return tmp / "runs" / "a"


def test_results_model_recommendation_follows_the_target(fake_run):
    info = load_run(fake_run)
    assert info.error is None and len(info.records) == 6
    m = ResultsModel(info.records, "tpot")
    loose = m.set_target(1.0).recommended
    tight = m.set_target(0.0125).recommended
    assert loose is not None and tight is not None and loose.key != tight.key
    assert tight.latency_ms <= 12.5
    assert m.set_target(0.001).recommended is None
    assert "nothing" in m.recommendation_line().lower() or "no " in m.recommendation_line().lower()
    m.set_target(0.02)
    line = m.recommendation_line()
    assert line.startswith("★ B=32 700 W") and "saves" in line and "at the target" not in line
    at = m.set_target(m.recommended.latency_ms / 1e3 * 1.02).recommended  # 2 % to spare: the line names one with 5 %
    alt = m.report.with_margin
    assert at.key == "mns32-tp1-pl700" and alt is not None and alt.latency_ms <= at.latency_ms / 1.02 * 0.95
    assert f"at the target (another GPU may miss it): {alt.label} keeps 5% spare at " in m.recommendation_line()
    m.set_target(0.02)
    assert "gCO2e/1k req" in m.cost_line()
    pts, front, rec = m.scatter()
    assert len(pts) == 6 and rec in [(p[1], p[2]) for p in pts] and front == sorted(front)
    copied = m.copy_text()
    assert "mns32-tp1-pl700" in copied and "nvidia-smi -i 0 -pl 700" in copied


def test_export_copies_records_and_writes_csv(fake_run, tmp_path):
    info = load_run(fake_run)
    m = ResultsModel(info.records, "tpot")
    m.set_target(0.02)
    written = export_run(fake_run, tmp_path / "out", m.to_csv(), m.formulas_text())
    names = sorted(p.name for p in (tmp_path / "out" / "records").iterdir())
    assert names == sorted(p.name for p in (fake_run / "records").iterdir())
    assert (tmp_path / "out" / "records" / names[0]).read_bytes() == (fake_run / "records" / names[0]).read_bytes()
    rows = list(csv.DictReader(io.StringIO("".join(
        l for l in (tmp_path / "out" / "pareto.csv").read_text().splitlines(True) if not l.startswith("#")))))
    assert len(rows) == 6 and sum(int(r["recommended"]) for r in rows) == 1
    assert (tmp_path / "out" / "run.json").exists() and len(written) == 6 + 3


def test_find_run_dirs(fake_run, tmp_path):
    (tmp_path / "x" / "nested").mkdir(parents=True)
    assert find_run_dirs([fake_run.parent, tmp_path]) == [fake_run.resolve()]
    bad = tmp_path / "bad"
    (bad / "records").mkdir(parents=True)
    (bad / "records" / "k.json").write_text("{not json")
    info = load_run(bad)
    assert info.error is not None and "k.json" in info.error


def test_diffusion_run_uses_images(tmp_path):
    profile = load_profile(write_profile(tmp_path, DIFFUSION_TOML, "d.toml"))
    assert profile.configs()[0].batch_size == 1


def test_eta_uses_wall_time_when_the_run_clock_is_virtual() -> None:
    """The sim runs hours of virtual time in seconds: the ETA must follow the wall clock."""
    from mle_tui.core.config import Config
    from mle_tui.core.events import BatchSampleEvent, ConfigFinished, ConfigStarted, RunStarted
    from mle_tui.tui.live import LiveState

    wall = [1000.0]
    st = LiveState(now_s=lambda: wall[0])
    keys = [f"c{i}" for i in range(4)]
    st.apply(RunStarted(run_id="r", run_dir="/tmp/r", configs=keys, skipped=[], power_source="simulated",
                        simulated=True))
    for i, key in enumerate(keys[:2]):
        st.apply(ConfigStarted(key=key, index=i, total=4, config=Config(max_num_seqs=8), label=key,
                               num_requests=100))
        st.apply(BatchSampleEvent(t_s=0.0, running=8, waiting=1))
        st.apply(BatchSampleEvent(t_s=600.0, running=0, waiting=0))  # 10 min of virtual time
        wall[0] += 2.0  # ... in 2 s of wall time
        st.apply(ConfigFinished(key=key, status="ok", reasons=[], energy_per_request_j=1.0,
                                latency_value_s=0.01, record_path=""))
    eta = st.eta_s()
    assert eta is not None and eta == pytest.approx(4.0, abs=0.5)  # 2 pending x 2 s, not 20 min


def test_braille_plot_holds_steps_keeps_spikes_and_fills_the_band():
    import numpy as np
    from rich.style import Style

    from mle_tui.tui.braille import Canvas, Plot

    p = Plot(10, 2, 0.0, 10.0)  # 20 x 8 dots, 1 s per cell
    # 0 W until t=5, then full scale, held to the right edge; a 1-sample spike at t=2.2.
    t = np.array([0.0, 2.2, 2.3, 5.0])
    y = np.array([0.0, 100.0, 0.0, 100.0])
    p.series(t, y, 100.0, Style(), hold_to=10.0)
    bottom = p.bits[1] & 0xC0  # the lowest dot row of the lower cells
    top = p.bits[0] & 0x09  # the highest dot row of the upper cells
    assert all(bottom[:5]) and not any(bottom[6:])
    assert all(top[5:]) and top[2]  # held to the edge; the spike survives a wide column
    assert not top[1] and not top[3]
    p.band(7.0, 10.0, "·", Style())
    canvas = Canvas(10, 2)
    p.blit(canvas, 0, 0)
    text = canvas.to_text().plain
    assert "│" in text  # band edge over the data
    empty = Plot(10, 2, 0.0, 10.0)
    empty.band(7.0, 10.0, "·", Style())
    c2 = Canvas(10, 2)
    empty.blit(c2, 0, 0)
    assert c2.to_text().plain.splitlines()[0] == "       │··"
